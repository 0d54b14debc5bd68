"""The forgetting guards of a run: AdaBN before the probe, WiSE-FT after the epochs.

L2-SP, the third guard, acts inside the optimizer (`transfer_optimizer(..., l2_sp=)`),
so the runner only passes it on. These two act on the weights between the run's steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo_transfer.errors import BuildArgumentError
from zoo_transfer.job.config import WISE_FT_SWEEP, JobConfig
from zoo_transfer.job.evaluation import wise_ft_note

PROBE_MODEL = "probe.keras"  # the model right after the linear probe (with --wise-ft)


def _adabn(model: Any, splits: Any, verbose: int) -> None:
    """`--adabn`: BatchNorm statistics from the training images (in order, unaugmented)."""
    from zoo_transfer.guards import adapt_batchnorm

    names = adapt_batchnorm(model, splits)
    if verbose:
        print(
            f"AdaBN: moving statistics of {len(names)} BatchNorm layers re-estimated on "
            f"{splits.num_train} training images"
        )


def _wise_ft(
    config: JobConfig, model: Any, splits: Any, work: Path, verbose: int
) -> dict[str, Any]:
    """`--wise-ft`: `model` (the last epoch's weights) mixed with `probe.keras`'s.

    The fine-tuned end is the last epoch, as in WiSE-FT (Wortsman et al.), not the model
    `--final best` would pick: alpha 0 is the probe itself, so a sweep can still choose
    it, while an epoch that beat the probe on the validation images mid-run is not a
    candidate. A fixed alpha is applied and, with validation images, measured; `sweep` scores
    `guards.DEFAULT_ALPHAS` on them and keeps the best. Scored on a plain copy of the
    model, outside any distribution strategy, so every worker decides alone and alike.
    Returns what `metrics.json` records under `wise_ft`.
    """
    import keras

    from zoo_transfer.guards import DEFAULT_ALPHAS, wise_ft, wise_ft_sweep
    from zoo_transfer.saving import inference_copy

    reference = keras.saving.load_model(work / PROBE_MODEL, compile=False).get_weights()
    sweep = config.wise_ft == WISE_FT_SWEEP
    alphas = DEFAULT_ALPHAS if sweep else (float(config.wise_ft),)
    record: dict[str, Any] = {
        "chosen_by": "validation sweep" if sweep else "--wise-ft",
        "alpha": alphas[0],
        "fine_tuned": "last epoch",
    }
    if sweep and splits.val_images is None:
        raise BuildArgumentError(
            "--wise-ft sweep chooses alpha on the validation images, but this run has none. "
            "Give it validation images (--validation, --validation-split), or a fixed alpha "
            "such as --wise-ft 0.5."
        )
    if splits.val_images is not None:
        measured = wise_ft_sweep(inference_copy(model), reference, splits.val_images, alphas)
        record.update(measured.to_json())
    wise_ft(model, record["alpha"], reference=reference)
    if verbose:
        print(wise_ft_note(record))
    return record
