"""What `rank` returns: one row per candidate, best first, as a table, JSON or a plot.

```python
result = rank("photos/", ["mobilenet.a025_224", "digitnet"], stages=True)
print(result.to_table()); print(result.stage_table())
result.plot_stages("stages.png")
```
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo_transfer.errors import ReportArgumentError

RANDOM = "random"  # what a row's `weights` says for random weights (`weights=None`)


@dataclass
class RankRow:
    """One candidate's scores.

    Args:
        model: the card's name (`arch.tag`).
        weights: `"imagenet"`, a weights file's path, or `"random"` (a control).
        logme: LogME of the pooled features (higher is better), or None on error.
        features: what LogME scored: `"head"` (the default head's input: the last three
            stages, average and max pooled) or `"trunk"` (the feature layer's average).
        standardized: whether LogME scored those features centred and scaled to unit
            variance (`rank`'s default) or as they are.
        leep: LEEP of the source head's probabilities, or None without a source head
            (random weights, weights without the classifier).
        seconds: the time it took: build, forward pass and scores.
        feature_size: `D`, the length of the pooled feature vector.
        n_images: images scored.
        image_size: the side the images were resized to.
        stage_accuracy: `{stage: held-out linear-probe accuracy}` in stage order, with
            `stages=True`; else None.
        error: why the model could not be scored (its weights are missing offline, ...),
            naming the model and the fix; None when it was scored.
    """

    model: str
    weights: str
    logme: float | None = None
    leep: float | None = None
    seconds: float = 0.0
    feature_size: int | None = None
    n_images: int = 0
    image_size: int | None = None
    stage_accuracy: dict[str, float] | None = None
    error: str | None = None
    features: str = "trunk"
    standardized: bool = True

    @property
    def label(self) -> str:
        """The model, with `(random)` for a control or the weights file's name."""
        if self.weights == "imagenet":
            return self.model
        if self.weights == RANDOM:
            return f"{self.model} (random)"
        return f"{self.model} ({Path(self.weights).name})"


@dataclass
class RankResult:
    """What `rank` measured: `rows` best first (by LogME), failed models last.

    `class_names` and `n_images` describe the scored images; `source` says what was read.
    """

    rows: list[RankRow]
    class_names: list[str]
    n_images: int
    source: str = ""
    stages: bool = False

    @property
    def best(self) -> RankRow | None:
        """The top-ranked row that was scored, or None when none was."""
        return next((r for r in self.rows if r.error is None), None)

    @property
    def failed(self) -> list[RankRow]:
        """Rows of the models that could not be scored."""
        return [r for r in self.rows if r.error is not None]

    def to_dict(self) -> dict[str, Any]:
        """Plain data: `{"source", "n_images", "classes", "models": [row, ...]}`.

        Each row: `{"rank"` (1 = best; None for a failed model), `"model", "weights",
        "logme", "leep", "seconds", "feature_size", "n_images", "image_size",
        "stage_accuracy", "error", "features", "standardized"}`; missing values are None.
        """
        models = []
        for i, row in enumerate(self.rows, start=1):
            models.append({"rank": i if row.error is None else None, **asdict(row)})
        return {
            "source": self.source,
            "n_images": self.n_images,
            "classes": list(self.class_names),
            "models": models,
        }

    def to_json(self) -> str:
        """`to_dict()` as JSON (NaN and infinities become null)."""
        return json.dumps(_finite(self.to_dict()), indent=1)

    def to_table(self) -> str:
        """A text table, best first; with `stages`, the accuracy by stage below it."""
        head = ["RANK", "MODEL", "LOGME", "LEEP", "FEATURES", "SIZE", "SECONDS"]
        lines = []
        for i, row in enumerate(self.rows, start=1):
            if row.error is not None:
                continue
            lines.append(
                [
                    str(i),
                    row.label,
                    _num(row.logme, 4),
                    _num(row.leep, 4),
                    f"{row.feature_size} {row.features}{'' if row.standardized else ' raw'}",
                    str(row.image_size),
                    f"{row.seconds:.1f}",
                ]
            )
        text = _columns(head, lines)
        text += (
            f"\n{self.n_images} images, {len(self.class_names)} classes; LogME and LEEP: "
            "higher is better; FEATURES: how many LogME scored, and which (head: what "
            "train's default head reads; trunk: the feature layer's average; standardised "
            "unless marked raw)"
        )
        for row in self.failed:
            text += f"\nnot ranked: {row.error}"
        if self.stages:
            text += "\n\n" + self.stage_table()
        return text

    def stage_table(self) -> str:
        """Held-out linear-probe accuracy by stage, one row per model."""
        scored = [r for r in self.rows if r.stage_accuracy]
        if not scored:
            return "no stage accuracies (rank with stages=True)"
        stages: list[str] = []
        for row in scored:
            stages += [s for s in row.stage_accuracy if s not in stages]
        lines = [
            [row.label, *(_num(row.stage_accuracy.get(s), 3) for s in stages)] for row in scored
        ]
        title = "Linear-probe accuracy by stage (held-out fifth of each class):"
        return title + "\n" + _columns(["MODEL", *(s.upper() for s in stages)], lines)

    def plot_stages(self, path: str | os.PathLike) -> Path:
        """Write the accuracy by stage as a PNG line plot at `path`; returns the path.

        Matplotlib draws on its Agg canvas (no `pyplot`), so the caller's backend is
        left alone.
        """
        scored = [r for r in self.rows if r.stage_accuracy]
        if not scored:
            raise ReportArgumentError(
                "There are no stage accuracies to plot: call rank(..., stages=True) "
                "(zoo-transfer rank --stages)."
            )
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.5, 4.2), dpi=100, facecolor="white")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        longest: list[str] = []
        for row in scored:
            names = list(row.stage_accuracy)
            longest = names if len(names) > len(longest) else longest
            style = ":" if row.weights == RANDOM else "-"
            ax.plot(
                range(len(names)), list(row.stage_accuracy.values()), style, marker="o",
                label=row.label,
            )  # fmt: skip
        ax.set_xticks(range(len(longest)), longest)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("stage (the probe reads its globally average-pooled map)")
        ax.set_ylabel("held-out accuracy")
        ax.set_title(
            f"Linear probe by stage: {self.n_images} images, {len(self.class_names)} classes"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", facecolor="white")
        return out


# ---------------------------------------------------------------------- formatting
def _num(value: float | None, digits: int) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _columns(head: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    for line in lines:
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return "\n".join(out)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
