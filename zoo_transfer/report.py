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
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo_transfer.errors import ReportArgumentError

CURVES_PNG = "curves.png"
CONFUSION_PNG = "confusion.png"
MISCLASSIFIED_PNG = "misclassified.png"
REPORT_HTML = "report.html"
MANIFEST_JSON = "report.json"
REPORT_FILES = (REPORT_HTML, MANIFEST_JSON, CURVES_PNG, CONFUSION_PNG, MISCLASSIFIED_PNG)

# At most this many misclassified images go into the grid; the page says how many exist.
MAX_MISCLASSIFIED = 36
# Above this many classes the confusion matrix cells are too small for their counts.
MAX_ANNOTATED_CLASSES = 30

# Logged by the callbacks beside the metrics: shown in the table, but "best" means nothing.
_INFO_KEYS = frozenset(
    {"image_size", "val_image_size", "trainable_params", "lr", "learning_rate", "epoch"}
)
_LOWER_IS_BETTER = ("loss", "error", "mse", "mae")
_ACCURACY_KEYS = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy")

# (colour, line style) per event kind; kinds not listed take the next spare style.
_KIND_STYLES = {
    "unfreeze": ("tab:red", "--"),
    "resize": ("tab:purple", ":"),
}
_SPARE_STYLES = (
    ("tab:green", "-."),
    ("tab:brown", (0, (5, 2, 1, 2))),
    ("tab:olive", (0, (1, 3))),
    ("tab:cyan", (0, (8, 3))),
)


@dataclasses.dataclass(frozen=True)
class EventMarker:
    """Where and how one training event is drawn on the curves.

    Args:
        x: position on the 1-based epoch axis: `epoch + 0.5`.
        epoch: the event's 0-based epoch, as given.
        kind: the event kind (`"unfreeze"`, `"resize"`, ...).
        label: the text drawn beside the marker: `"kind: detail"`.
        row: 0 for the first event at this `x`, 1 for the next, ... so that labels of
            events in the same epoch do not overlap.
    """

    x: float
    epoch: int
    kind: str
    label: str
    row: int = 0


def event_markers(events: Iterable[Mapping[str, Any]]) -> list[EventMarker]:
    """Marker positions and labels for training events, sorted by epoch.

    Pure function: no plotting. Events in the same epoch keep their given order and get
    rows 0, 1, ... so their labels stack instead of overlapping.

    Args:
        events: dicts with `epoch` (`int` >= 0, the 0-based epoch the event takes effect
            in), `kind` (non-empty `str`) and an optional `detail` (anything; shown as text).

    Returns:
        One `EventMarker` per event, sorted by epoch.

    ```python
    from zoo_transfer.report import event_markers
    event_markers([{"epoch": 2, "kind": "unfreeze", "detail": "stage4"}])
    # [EventMarker(x=2.5, epoch=2, kind='unfreeze', label='unfreeze: stage4', row=0)]
    ```
    """
    checked = [_check_event(i, event) for i, event in enumerate(events)]
    checked.sort(key=lambda item: item[0])  # stable: same-epoch events keep their order
    rows: dict[int, int] = {}
    markers = []
    for epoch, kind, detail in checked:
        row = rows.get(epoch, 0)
        rows[epoch] = row + 1
        label = f"{kind}: {detail}" if detail else kind
        markers.append(EventMarker(x=epoch + 0.5, epoch=epoch, kind=kind, label=label, row=row))
    return markers


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


# ---------------------------------------------------------------------- validation
def _check_event(index: int, event: Any) -> tuple[int, str, str]:
    if not isinstance(event, Mapping):
        raise ReportArgumentError(
            f"Expected each event as a dict like {{'epoch': 2, 'kind': 'unfreeze', "
            f"'detail': 'stage4'}}. Received: events[{index}]={event!r}"
        )
    epoch = event.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        try:
            import numpy as np

            ok = isinstance(epoch, np.integer) and epoch >= 0
        except ImportError:  # pragma: no cover - numpy is a dependency
            ok = False
        if not ok:
            raise ReportArgumentError(
                "Expected `epoch` of each event as an int >= 0 (the 0-based epoch it takes "
                f"effect in). Received: events[{index}]['epoch']={epoch!r}"
            )
    kind = event.get("kind")
    if not isinstance(kind, str) or not kind.strip():
        raise ReportArgumentError(
            "Expected `kind` of each event as a non-empty str such as 'unfreeze' or "
            f"'resize'. Received: events[{index}]['kind']={kind!r}"
        )
    detail = event.get("detail")
    return int(epoch), kind.strip(), "" if detail is None else str(detail)


def _check_history(history: Any) -> dict[str, list[float]]:
    if not isinstance(history, Mapping) and isinstance(getattr(history, "history", None), Mapping):
        history = history.history  # a keras.callbacks.History
    if not isinstance(history, Mapping):
        raise ReportArgumentError(
            "Expected `history` as a dict of per-epoch lists such as "
            f"{{'loss': [...], 'val_loss': [...]}} or a keras History. Received: {history!r}"
        )
    out: dict[str, list[float]] = {}
    for key, values in history.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ReportArgumentError(
                f"Expected history[{key!r}] as a list with one number per epoch. "
                f"Received: {values!r}"
            )
        try:
            out[str(key)] = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ReportArgumentError(
                f"Expected history[{key!r}] to hold numbers only. Received: {values!r}"
            ) from None
    return out


def _check_confusion(confusion: Any, class_names: Sequence[str]) -> tuple[Any, list[str]]:
    import numpy as np

    if confusion is None:
        return None, [str(n) for n in class_names]
    try:
        matrix = np.asarray(confusion, dtype=float)
    except (TypeError, ValueError):
        raise ReportArgumentError(
            f"Expected `confusion` as a square array of counts. Received: {confusion!r}"
        ) from None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ReportArgumentError(
            "Expected `confusion` as a square (n_classes, n_classes) array, rows = true, "
            f"columns = predicted. Received: shape {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)) or np.any(matrix < 0):
        raise ReportArgumentError(
            f"Expected `confusion` to hold counts >= 0. Received: {matrix.tolist()!r}"
        )
    n = matrix.shape[0]
    names = [str(name) for name in class_names] or [str(i) for i in range(n)]
    if len(names) != n:
        raise ReportArgumentError(
            f"Expected {n} class names for a {n}x{n} confusion matrix. "
            f"Received: class_names={list(class_names)!r} ({len(names)} names)"
        )
    return matrix, names


def _check_misclassified(items: Iterable[Any]) -> list[tuple[Any, str, str]]:
    import numpy as np

    out = []
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise ReportArgumentError(
                "Expected each misclassified item as (image, true_name, pred_name). "
                f"Received: misclassified[{i}]={item!r:.200}"
            )
        image, true_name, pred_name = item
        array = np.asarray(image)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
            raise ReportArgumentError(
                "Expected each misclassified image as HxWx3 (or HxW) pixels in 0-255. "
                f"Received: misclassified[{i}] image of shape {array.shape}"
            )
        if not np.issubdtype(array.dtype, np.number):
            raise ReportArgumentError(
                "Expected misclassified images as numbers in 0-255. "
                f"Received: misclassified[{i}] image of dtype {array.dtype}"
            )
        pixels = np.clip(np.nan_to_num(array.astype(float)), 0, 255).astype(np.uint8)
        out.append((pixels, str(true_name), str(pred_name)))
    return out


def _config_json(config: Any) -> str | None:
    if config is None:
        return None
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise ReportArgumentError(
            f"Expected `config` as a dict (or a dataclass instance). Received: {config!r}"
        )
    return json.dumps(dict(config), indent=2, default=str, ensure_ascii=False)


# ---------------------------------------------------------------------- figures
def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png", facecolor="white")


def _n_epochs(hist: Mapping[str, list[float]]) -> int:
    return max((len(v) for v in hist.values()), default=0)


def _accuracy_key(hist: Mapping[str, list[float]]) -> str | None:
    for key in _ACCURACY_KEYS:
        if key in hist or f"val_{key}" in hist:
            return key
    return None


def _kind_styles(markers: Sequence[EventMarker]) -> dict[str, tuple[str, Any]]:
    styles: dict[str, tuple[str, Any]] = {}
    spare = 0
    for marker in markers:
        if marker.kind in styles:
            continue
        if marker.kind in _KIND_STYLES:
            styles[marker.kind] = _KIND_STYLES[marker.kind]
        else:
            styles[marker.kind] = _SPARE_STYLES[spare % len(_SPARE_STYLES)]
            spare += 1
    return styles


def _curves_figure(hist: Mapping[str, list[float]], markers: Sequence[EventMarker], title: str):
    """The curves figure: one axis for loss, one for accuracy, each with every event line."""
    from matplotlib.lines import Line2D

    fig = _new_figure(11, 4.4)
    axes = fig.subplots(1, 2)
    acc = _accuracy_key(hist)
    panels = [("loss", "loss"), (acc, "accuracy" if acc is None else acc)]
    styles = _kind_styles(markers)
    n_epochs = _n_epochs(hist)
    for ax, (key, label) in zip(axes, panels, strict=True):
        plotted = False
        for name, colour in ((key, "tab:blue"), (f"val_{key}", "tab:orange")):
            values = hist.get(name) if key else None
            if values:
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, values, color=colour, marker="o", markersize=4, label=name)
                plotted = True
        if not plotted:
            ax.text(
                0.5,
                0.5,
                f"no {label} recorded",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="0.4",
            )
        for marker in markers:
            colour, style = styles[marker.kind]
            ax.axvline(marker.x, color=colour, linestyle=style, linewidth=1.5)
            # Upright along its line, so labels of neighbouring epochs never overlap;
            # same-epoch labels step right by one text height per row.
            ax.annotate(
                marker.label,
                xy=(marker.x, 0.97),
                xycoords=ax.get_xaxis_transform(),
                xytext=(2 + 10 * marker.row, 0),
                textcoords="offset points",
                rotation=90,
                ha="left",
                va="top",
                fontsize=8,
                color=colour,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5},
            )
        right = max([n_epochs + 0.5] + [m.x + 0.5 for m in markers])
        ax.set_xlim(0.5, max(right, 1.5))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        for kind, (colour, style) in styles.items():
            handles.append(Line2D([], [], color=colour, linestyle=style, linewidth=1.5))
            labels.append(f"event: {kind}")
        if handles:
            ax.legend(handles, labels, loc="best", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _confusion_figure(matrix: Any, names: Sequence[str]):
    import numpy as np

    n = matrix.shape[0]
    side = min(max(4.5, 0.55 * n + 2.5), 30.0)
    fig = _new_figure(side + 1.0, side)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, labels=names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = matrix.sum()
    accuracy = np.trace(matrix) / total if total else float("nan")
    ax.set_title(f"confusion matrix (accuracy {accuracy:.1%}, n={int(total)})")
    if n <= MAX_ANNOTATED_CLASSES:
        threshold = matrix.max() / 2 if matrix.max() else 1
        for i in range(n):
            for j in range(n):
                value = matrix[i, j]
                text = f"{int(value)}" if float(value).is_integer() else f"{value:.2f}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if value > threshold else "black",
                )
    fig.tight_layout()
    return fig


def _misclassified_figure(images: Sequence[tuple[Any, str, str]], total: int):
    if not images:
        fig = _new_figure(4, 1.2)
        fig.text(
            0.5,
            0.5,
            "No misclassified validation images",
            ha="center",
            va="center",
            fontsize=11,
        )
        return fig
    cols = min(6, len(images))
    rows = math.ceil(len(images) / cols)
    fig = _new_figure(2.4 * cols, 2.4 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= len(images):
            continue
        pixels, true_name, pred_name = images[index]
        ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_title(f"true: {true_name} / pred: {pred_name}", fontsize=8)
    shown = f"{len(images)} of {total}" if total > len(images) else f"{total}"
    fig.suptitle(f"misclassified validation images ({shown})", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- html
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1150px;
       color: #222; padding: 0 1rem; }
h1 { font-size: 1.6rem; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; }
pre { background: #f6f6f6; padding: .8rem; overflow-x: auto; }
.note { color: #666; }
""".strip()


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if value.is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4f}"


def _metric_rows(hist: Mapping[str, list[float]]) -> list[tuple[str, str, str, str]]:
    rows = []
    for key, values in hist.items():
        if not values:
            rows.append((key, "-", "-", "-"))
            continue
        final = _fmt(values[-1])
        finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
        if key in _INFO_KEYS or not finite:
            rows.append((key, final, "-", "-"))
            continue
        lower = any(word in key for word in _LOWER_IS_BETTER)
        best, at = (min if lower else max)(finite, key=lambda item: item[0])
        rows.append((key, final, _fmt(best), str(at + 1)))
    return rows


def _img(src: str, alt: str) -> str:
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">'


def _html(
    *,
    title: str,
    hist: Mapping[str, list[float]],
    markers: Sequence[EventMarker],
    matrix: Any,
    names: Sequence[str],
    n_misclassified: int,
    config_json: str | None,
    written: Sequence[str],
    probe_line: str = "",
    notes: Sequence[str] = (),
) -> str:
    esc = html.escape
    n_epochs = _n_epochs(hist)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="note">{n_epochs} epoch{"s" if n_epochs != 1 else ""}, '
        f"{len(markers)} event{'s' if len(markers) != 1 else ''}.</p>",
        "<h2>Training curves</h2>",
        _img(
            CURVES_PNG,
            "Training and validation loss and accuracy per epoch, with a "
            "vertical marker at each training event",
        ),
        "<h2>Metrics</h2>",
    ]
    if probe_line:
        parts.append(f'<p id="probe">{esc(probe_line)}</p>')
    parts += [f'<p class="note">{esc(note)}</p>' for note in notes]
    rows = _metric_rows(hist)
    if rows:
        parts.append('<table id="metrics">')
        parts.append(
            "<thead><tr><th>metric</th><th>final</th><th>best</th><th>best epoch</th>"
            "</tr></thead><tbody>"
        )
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</tbody></table>")
    else:
        parts.append('<p class="note">No metrics recorded.</p>')

    parts.append("<h2>Events</h2>")
    if markers:
        parts.append('<ol id="events">')
        for marker in markers:
            parts.append(f"<li>epoch {marker.epoch + 1}: {esc(marker.label)}</li>")
        parts.append("</ol>")
    else:
        parts.append('<p class="note">No events.</p>')

    parts.append("<h2>Confusion matrix</h2>")
    if matrix is not None:
        parts.append(
            _img(
                CONFUSION_PNG,
                "Confusion matrix of the validation set, rows true "
                "class, columns predicted class: " + ", ".join(names),
            )
        )
    else:
        parts.append('<p class="note">No confusion matrix given.</p>')

    parts.append("<h2>Misclassified validation images</h2>")
    shown = min(n_misclassified, MAX_MISCLASSIFIED)
    if n_misclassified:
        parts.append(f'<p class="note">{n_misclassified} misclassified, {shown} shown.</p>')
    parts.append(
        _img(
            MISCLASSIFIED_PNG,
            f"Grid of {shown} misclassified validation images with their true and predicted class"
            if shown
            else "No misclassified validation images",
        )
    )

    parts.append("<h2>Config</h2>")
    if config_json is not None:
        parts.append(f'<pre id="config">{esc(config_json)}</pre>')
    else:
        parts.append('<p class="note">No config given.</p>')

    parts.append('<h2>Files</h2><ul id="files">')
    parts += [f"<li>{esc(name)}</li>" for name in written]
    parts += ["</ul>", "</body>", "</html>", ""]
    return "\n".join(parts)
