"""The main job in one call: transfer vs the same model trained from scratch.

`zoo-transfer demo` runs the whole path offline on what a pip install brings:
registry card -> `build` with pretrained weights -> progressive resizing ->
gradual unfreezing -> evaluation -> saved models and report. Then it trains the same
architecture from random weights on the same images and prints both held-out
accuracies, so the gain from transfer is a number, not a claim.

The offline default is the project's own `digitnet` backbone, pretrained on digits 0-4
(weights shipped in the package) and transferred to digits 5-9 from a few images per
class. On a connected machine the same path runs on real ImageNet weights:
`zoo-transfer demo --model mobilenet_v3_small --data tfds:tf_flowers`.

```python
from zoo_transfer.demo import demo
result = demo(out="demo-run")
assert result.transfer > result.scratch
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo_transfer.job import EMBEDDED_DATA, JobConfig, JobResult, run

DEFAULT_MODEL = "digitnet"
DEFAULT_OUT = "zoo-transfer-demo"


@dataclass
class DemoResult:
    """Held-out accuracy of the transfer run and of the from-scratch run."""

    transfer: float
    scratch: float
    out: Path
    runs: tuple[JobResult, JobResult]


def free_out(base: str | Path = DEFAULT_OUT) -> Path:
    """`base`, or `base-2`, `base-3`... : the first that does not exist yet."""
    base = Path(base)
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def demo_configs(
    model: str = DEFAULT_MODEL, data: str = EMBEDDED_DATA, *, epochs: int = 8, seed: int = 0
) -> tuple[JobConfig, JobConfig]:
    """The transfer and the from-scratch configuration the demo compares."""
    from zoo_transfer.registry import get_card

    card = get_card(model)
    native = card.input_size[0]
    # Start at the pretraining size and grow: training below it on similar data
    # would damage the pretrained features (ProgressiveResizing warns about it).
    sizes = [native, int(round(native * 1.25 / 8)) * 8]
    last_stage = card.stages[-1].name
    common = dict(
        model=card.name,
        data=data,
        epochs=epochs,
        progressive=sizes,
        augment="none",
        batch_size=8,
        validation_split=0.2,
        seed=seed,
        # the held-out images are the demo's validation split: report the last epoch's
        # model, chosen by nothing, not the epoch that scored best on them
        final="last",
    )
    transfer = JobConfig(
        **common,
        recipe="small-similar",
        unfreeze={epochs // 2 + 1: last_stage},  # the second half (epochs count from 1)
        lr=3e-3,
        lr_mult=[0.1, 1.0],
    )
    # everything trains from random weights; the recipe keeps the same head
    scratch = JobConfig(**common, recipe="large-similar", weights="none", lr=3e-3)
    return transfer, scratch


def demo(
    model: str = DEFAULT_MODEL,
    data: str = EMBEDDED_DATA,
    *,
    out: str | Path | None = None,
    epochs: int = 8,
    seed: int = 0,
    verbose: int = 1,
    echo: Any = print,
) -> DemoResult:
    """Train with transfer and from scratch; return both held-out accuracies.

    Args:
        model: a zoo name; the default is the offline `digitnet` card.
        data: a data source; the default is the embedded digits 5-9.
        out: a new folder for both runs (default: `zoo-transfer-demo`, or the next free
            `zoo-transfer-demo-N`); it gets `transfer/` and `scratch/` run folders.
        epochs: epochs of each run.
    """
    out = free_out(DEFAULT_OUT) if out is None else Path(out)
    transfer_cfg, scratch_cfg = demo_configs(model, data, epochs=epochs, seed=seed)
    echo(f"zoo-transfer demo: {transfer_cfg.model} on {data}, {epochs} epochs, out: {out}")
    echo(
        f"1/2 transfer: pretrained weights, sizes {transfer_cfg.progressive}, "
        f"unfreeze {transfer_cfg.unfreeze}"
    )
    transfer = run(transfer_cfg, out / "transfer", verbose=verbose)
    echo("2/2 from scratch: the same architecture from random weights, all layers training")
    scratch = run(scratch_cfg, out / "scratch", verbose=verbose)
    a, b = _accuracy(transfer), _accuracy(scratch)
    echo(
        f"held-out accuracy: transfer {a:.3f} vs from scratch {b:.3f} ({a - b:+.3f} from transfer)"
    )
    echo(f"model: {out / 'transfer' / 'final.keras'}   report: {out / 'transfer' / 'report.html'}")
    return DemoResult(a, b, out, (transfer, scratch))


def _accuracy(result: JobResult) -> float:
    """Accuracy of the final model on the held-out split."""
    import json

    metrics = result.out / "metrics.json"
    if metrics.exists():
        return float(json.loads(metrics.read_text())["val_accuracy"])
    return float(result.val_accuracy)
