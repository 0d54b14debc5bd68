"""What a training report holds: its files, the event markers, and its checked inputs.

`write_report`'s arguments are checked here (each error names the argument and the
fix) and turned into plain data (`EventMarker`s, a history of float lists, a confusion
matrix), which the figures and the HTML page then draw.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
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


def _n_epochs(hist: Mapping[str, list[float]]) -> int:
    return max((len(v) for v in hist.values()), default=0)


def _accuracy_key(hist: Mapping[str, list[float]]) -> str | None:
    for key in _ACCURACY_KEYS:
        if key in hist or f"val_{key}" in hist:
            return key
    return None
