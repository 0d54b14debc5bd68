"""The run's decisions from measurements, before any training: the domain, the situation.

- **The domain.** Unless `--similar` or `--different` says it, the run measures whether
  the images look like the model's pretraining data (`zoo_transfer.domain`): the source
  head's confidence on them against its own accuracy. Where it cannot (random weights,
  weights without the classifier, a card without a top-1 accuracy), it says why and
  counts the data as similar, 0.1's default.
- **The situation** (`--recipe situation`): the four-situation table of the README, by
  the number of training images and the domain. For different data the cut is where a
  converged linear probe on each stage's pooled features peaks (`zoo_transfer.rank`,
  held-out accuracy by stage), not a fixed "stage before the last".

Each decision comes back as plain data with a `reason`, for the log, `config.json`'s
resolved copy in the report, and `JobResult.domain`.
"""

from __future__ import annotations

import os
from typing import Any

from zoo_transfer.errors import (
    ArgumentError,
    WeightsCorruptError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from zoo_transfer.job.config import EMBEDDED_DATA, JobConfig
from zoo_transfer.job.model import model_card

_CANNOT_MEASURE = (
    ArgumentError,
    WeightsUnavailableError,
    WeightsMismatchError,
    WeightsCorruptError,
)


def decide_domain(config: JobConfig, splits: Any, weights: Any) -> dict[str, Any]:
    """`{"similar": bool, "measured": bool, "reason": str, ...}` for this run."""
    if config.similar is not None:
        flag = "--similar" if config.similar else "--different"
        return {"similar": config.similar, "measured": False, "reason": f"given: {flag}."}
    if weights is None:
        return {
            "similar": False,
            "measured": False,
            "reason": "random weights (--weights none): nothing pretrained to be similar to.",
        }
    from zoo_transfer.domain import measure_domain

    data = config.data
    source = (
        data
        if isinstance(data, str) and data != EMBEDDED_DATA and os.path.isdir(data)
        else splits  # the embedded digits, tfds: the training images as loaded
    )
    try:
        name = model_card(config.model).name
        measure = measure_domain(name, source, weights=weights, seed=config.seed)
    except _CANNOT_MEASURE as exc:
        return {
            "similar": True,
            "measured": False,
            "reason": f"not measured ({exc}); counted as similar. Pass --similar or "
            "--different to say it.",
        }
    return {"measured": True, **measure.to_dict()}


def situation(
    config: JobConfig, splits: Any, weights: Any, similar: bool, side: int
) -> dict[str, Any]:
    """The situation recipe: `{"recipe", "cut", "stage_accuracy", "reason"}`."""
    from zoo_transfer.recipes import SMALL_DATASET, suggest

    size = "small" if splits.num_train < SMALL_DATASET else "large"
    kind = "similar" if similar else "different"
    recipe = f"{size}_{kind}"
    why = f"{splits.num_train} training images ({size}: < {SMALL_DATASET:,} is small), {kind} data"
    if similar or weights is None:
        suggest(splits.num_train, similar)  # the table's own answer, validated
        return {"recipe": recipe, "cut": None, "stage_accuracy": None, "reason": why + "."}
    import dataclasses

    from zoo_transfer.rank import rank

    # the probe sees the training images only: the validation images stay unseen
    train_only = dataclasses.replace(splits, val=None, val_images=None, num_val=0)
    # only the accuracy by stage is read: LogME on the trunk's features, the cheaper one
    name = model_card(config.model).name
    row = rank(train_only, [name], weights=weights, image_size=side, stages=True,
               progress=False, seed=config.seed, features="trunk").rows[0]  # fmt: skip
    if row.error or not row.stage_accuracy:
        return {
            "recipe": recipe,
            "cut": None,
            "stage_accuracy": None,
            "reason": f"{why}; the stage probe failed ({row.error}), so the cut is the "
            "stage before the last.",
        }
    accuracy = row.stage_accuracy
    best = max(accuracy.values())
    cut = next(stage for stage in reversed(list(accuracy)) if accuracy[stage] == best)
    suggest(splits.num_train, similar, cut=cut)  # validated by the table
    shown = ", ".join(f"{s} {a:.3f}" for s, a in accuracy.items())
    return {
        "recipe": recipe,
        "cut": cut,
        "stage_accuracy": accuracy,
        "reason": f"{why}; a linear probe on each stage's features peaks at {cut} "
        f"({shown}), so the model is cut there.",
    }
