"""The training report: `report.html` beside the PNGs it shows.

`write_report` draws the loss and accuracy curves with a marker at every training event
(unfreezing a stage, a new image size), the confusion matrix and a grid of misclassified
validation images, then writes a self-contained HTML page that shows them with a table
of final and best metrics, the event list and the resolved config.

Epochs follow Keras: an event's `epoch` is the 0-based index of the epoch it takes effect
in (the key of a `GradualUnfreezing` or `ProgressiveResizing` schedule), while the plots
count epochs from 1, as `fit` prints them. An event at epoch `e` therefore sits at
`x = e + 0.5`, between the last epoch before it and the first epoch it affects.

Matplotlib draws on its Agg canvas directly (no `pyplot`), so writing a report never
changes the caller's matplotlib backend. Nothing here imports TensorFlow.

Modules: `content` (the files, event markers and the checks of the arguments),
`figures` (the PNGs), `page` (the HTML).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo_transfer.errors import ReportArgumentError
from zoo_transfer.report.content import (
    CONFUSION_PNG,
    CURVES_PNG,
    MANIFEST_JSON,
    MAX_MISCLASSIFIED,
    MISCLASSIFIED_PNG,
    REPORT_FILES,
    REPORT_HTML,
    EventMarker,
    _check_confusion,
    _check_history,
    _check_misclassified,
    _config_json,
    _n_epochs,
    event_markers,
)
from zoo_transfer.report.figures import (
    _confusion_figure,
    _curves_figure,
    _misclassified_figure,
    _save,
)
from zoo_transfer.report.page import _html

__all__ = ["REPORT_FILES", "EventMarker", "event_markers", "write_report"]


def write_report(
    out_dir: str | os.PathLike,
    *,
    history: Mapping[str, Sequence[float]] | Any,
    events: Iterable[Mapping[str, Any]] = (),
    confusion: Sequence[Sequence[int]] | Any | None = None,
    class_names: Sequence[str] = (),
    misclassified: Iterable[tuple[Any, str, str]] = (),
    config: Mapping[str, Any] | Any | None = None,
    title: str = "zoo-transfer training report",
    probe: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    model_choice: Mapping[str, Any] | None = None,
) -> Path:
    """Write `report.html` and its PNGs into `out_dir` and return the HTML file's path.

    Files written: `curves.png` (loss and accuracy per epoch, train and validation, a
    vertical marker and label per event, one style per event kind), `confusion.png`
    (only when `confusion` is given), `misclassified.png` (an image grid, or a small
    image saying there are none), `report.html` (relative links to the PNGs, a table of
    final and best metrics, the events, the config as HTML-escaped JSON) and
    `report.json`, a manifest listing the files written. Existing files of those names
    are replaced. A 1-epoch history, missing `val_*` keys and no events are all fine.

    Args:
        out_dir: folder to write into; created when missing.
        history: Keras-style `{"loss": [...], "val_loss": [...], "accuracy": [...], ...}`,
            one value per epoch, or a `keras.callbacks.History` (its `.history` is used).
            Extra keys such as `image_size` or `trainable_params` go into the table.
        events: dicts `{"epoch": 2, "kind": "unfreeze", "detail": "stage4"}`; `epoch`
            is 0-based, the epoch the event takes effect in (see `event_markers`).
        confusion: square array-like of counts, rows = true class, columns = predicted.
        class_names: names of the classes, in confusion-matrix order; defaults to
            `"0"`, `"1"`, ... when empty.
        misclassified: `(image, true_name, pred_name)` items; `image` is HxWx3 (or HxW)
            uint8 or float in 0-255. The first 36 are drawn.
        config: the resolved training config (a dict or a dataclass), shown as JSON;
            values that JSON cannot hold are shown with `str`.
        title: page and figure title.
        probe: the linear probe that started the run (`{"val_accuracy": 0.87, "l2": 1e-3,
            "seconds": 2.1}`): shown beside the final validation accuracy, so the
            report says what the epochs added to a converged head on frozen features.
        notes: more lines for the metrics section (e.g. what test-time flips gave).
        model_choice: what `zoo-transfer rank --format json` measured (`{"models":
            [{"model", "weights", "logme", "leep", "seconds", ...}]}`) and `"trained"`,
            the model this run trained: a "Model choice" section ranks the candidates.

    Returns:
        The path of `report.html`.

    ```python
    from zoo_transfer.report import write_report
    path = write_report(
        "runs/report",
        history={"loss": [1.2, 0.8, 0.5], "val_loss": [1.1, 0.9, 0.7],
                 "accuracy": [0.4, 0.7, 0.8], "val_accuracy": [0.5, 0.6, 0.7]},
        events=[{"epoch": 1, "kind": "unfreeze", "detail": "stage4"}],
        confusion=[[5, 1], [2, 4]], class_names=["cat", "dog"],
        config={"model": "resnet50", "epochs": 3},
    )
    ```
    """
    hist = _check_history(history)
    markers = event_markers(events)
    matrix, names = _check_confusion(confusion, class_names)
    images = _check_misclassified(misclassified)
    config_json = _config_json(config)
    probe_line = _probe_line(probe, hist)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    _save(_curves_figure(hist, markers, title), out / CURVES_PNG)
    written.append(CURVES_PNG)
    if matrix is not None:
        _save(_confusion_figure(matrix, names), out / CONFUSION_PNG)
        written.append(CONFUSION_PNG)
    _save(_misclassified_figure(images[:MAX_MISCLASSIFIED], len(images)), out / MISCLASSIFIED_PNG)
    written.append(MISCLASSIFIED_PNG)

    written += [REPORT_HTML, MANIFEST_JSON]
    page = _html(
        title=title,
        hist=hist,
        markers=markers,
        matrix=matrix,
        names=names,
        n_misclassified=len(images),
        config_json=config_json,
        written=written,
        probe_line=probe_line,
        notes=[str(n) for n in notes],
        model_choice=_check_model_choice(model_choice),
    )
    (out / REPORT_HTML).write_text(page, encoding="utf-8")
    manifest = {"title": title, "epochs": _n_epochs(hist), "files": written}
    (out / MANIFEST_JSON).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out / REPORT_HTML


def _delta(value: float, reference: float) -> str:
    return f"{round(float(value) - float(reference), 4) + 0.0:+.4f}"  # no "-0.0000"


def _probe_line(probe: Mapping[str, Any] | None, hist: Mapping[str, list[float]]) -> str:
    """'linear probe 0.8700 -> final 0.8900 (+0.0200) ...', or '' without a probe."""
    if not probe:
        return ""
    acc = probe.get("val_accuracy")
    if acc is None:
        return (
            "Linear probe (converged head on frozen features, L2 chosen on a held-out "
            "fifth of the training images): no validation images to score it on."
        )
    line = f"Linear probe (converged head on frozen features): val_accuracy {float(acc):.4f}"
    epochs = [v for v in hist.get("val_accuracy") or [] if v is not None]
    if epochs:
        best = max(epochs)
        line += (
            f"; the epochs after it: last {epochs[-1]:.4f} ({_delta(epochs[-1], acc)}), "
            f"best {best:.4f} ({_delta(best, acc)}) at epoch {epochs.index(best) + 1}"
        )
    if probe.get("final_from"):
        line += f"; final.keras holds the {probe['final_from']}'s weights"
    return line + "."


def _check_model_choice(choice: Mapping[str, Any] | None) -> list[tuple[str, ...]] | None:
    """Rows `(rank, model, weights, LogME, LEEP, seconds, trained?)` of a rank result."""
    if choice is None:
        return None
    models = choice.get("models") if isinstance(choice, Mapping) else None
    if not isinstance(models, list) or not all(isinstance(m, Mapping) for m in models):
        raise ReportArgumentError(
            'Expected model_choice as the JSON of `zoo-transfer rank --format json` ({"models":'
            f" [...]}}). Received: {str(choice)[:200]}"
        )

    def num(value: Any, digits: int) -> str:
        return "-" if value is None else f"{float(value):.{digits}f}"

    trained = choice.get("trained")
    rows = []
    for m in models:
        rows.append(
            (
                "-" if m.get("rank") is None else str(m["rank"]),
                str(m.get("model", "?")),
                str(m.get("weights", "")),
                num(m.get("logme"), 4) if m.get("error") is None else "not ranked",
                num(m.get("leep"), 4),
                num(m.get("seconds"), 1),
                "yes" if m.get("model") == trained and m.get("weights") != "random" else "",
            )
        )
    return rows
