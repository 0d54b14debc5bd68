"""The report's figures: curves with event markers, the confusion matrix, mistakes.

Matplotlib draws on its Agg canvas directly (no `pyplot`), so writing a report never
changes the caller's matplotlib backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo_transfer.report.content import (
    MAX_ANNOTATED_CLASSES,
    EventMarker,
    _accuracy_key,
    _n_epochs,
)

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


# ---------------------------------------------------------------------- figures
def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png", facecolor="white")


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
