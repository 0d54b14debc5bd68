"""A training job: data source -> recipe -> `fit` with the callbacks -> an out folder.

The out folder is the unit of work. It holds everything needed to use, judge and rerun
the run, and nothing in it is ever overwritten by accident:

| file | what |
|------|------|
| `config.json` | the resolved `JobConfig`: `zoo-transfer train --config`-free rerun |
| `labels.json` | class names, in the order of the model's outputs |
| `history.json` | one record per finished epoch (metrics, image size, trainable params) |
| `best.keras`, `final.keras` | best validation accuracy, and the last epoch (labels inside) |
| `probe.keras` | the model right after the linear probe, with `--wise-ft` (its reference) |
| `backup/` | training state of the last two epochs (`zoo_transfer.backup`): `--resume` |
|           | goes on from the last good one; a finished run resumed with more `--epochs` |
|           | trains on |
| `report.html` + PNGs | curves with unfreeze/resize markers, confusion matrix, mistakes |

An existing out folder is refused unless `resume=True` (continue it) or
`overwrite=True` (replace a previous zoo-transfer run; a folder that is not one is never
deleted). Ctrl-C saves `interrupted.keras` and raises `TrainingInterrupted`, whose
message names the resume command; a kill -9 loses at most the running epoch.

```python
from zoo_transfer.job import JobConfig, run
result = run(JobConfig("mobilenet_v3_small", "photos/", epochs=5,
                       progressive=[128, 160, 224], unfreeze={4: "stage4"}), "runs/photos")
print(result.val_accuracy)
```

The package, one concept a module:

| module | owns |
|--------|------|
| `config` | `JobConfig`, `JobResult`, the allowed values, the CLI text parsers |
| `outfolder` | the out folder's safety: refusal rules, lock, manifest, setting an earlier |
|             | run aside and restoring it, whole-file JSON writes, write-error messages |
| `model` | MODEL: a zoo name, or a local keras-hub preset folder (its card, measured) |
| `distribution` | `--strategy`, the chief worker, Keras' multi-worker fixes |
| `runner` | `run`: the steps of a run, its callbacks, the probe, `final.keras` |
| `evaluation` | the final model on the validation images, `metrics.json`, the report |

Importing it imports neither Keras nor TensorFlow; they load when a run starts.
"""

from zoo_transfer.job.config import (
    EMBEDDED_DATA,
    FINAL_CHOICES,
    PRECISIONS,
    RECIPE_NAMES,
    STRATEGIES,
    WISE_FT_SWEEP,
    JobConfig,
    JobResult,
    parse_lr_mult,
    parse_sizes,
    parse_unfreeze,
    parse_wise_ft,
    progressive_schedule,
)
from zoo_transfer.job.distribution import make_strategy
from zoo_transfer.job.evaluation import _confusion as _confusion
from zoo_transfer.job.model import is_model_folder, model_card
from zoo_transfer.job.outfolder import (
    LOCK,
    MANIFEST,
    RUN_OUTPUTS,
    drop_earlier_run,
    prepare_out,
    restore_earlier_run,
    set_aside_earlier_run,
)
from zoo_transfer.job.outfolder import _write_failure as _write_failure
from zoo_transfer.job.outfolder import _write_json as _write_json
from zoo_transfer.job.runner import _as_lists as _as_lists
from zoo_transfer.job.runner import _events as _events
from zoo_transfer.job.runner import check_out, run

# The underscore names imported `as` themselves above are internal helpers the tests
# import from here; they are not part of the API.
__all__ = [
    "EMBEDDED_DATA",
    "FINAL_CHOICES",
    "LOCK",
    "MANIFEST",
    "PRECISIONS",
    "RECIPE_NAMES",
    "RUN_OUTPUTS",
    "STRATEGIES",
    "WISE_FT_SWEEP",
    "JobConfig",
    "JobResult",
    "check_out",
    "drop_earlier_run",
    "is_model_folder",
    "make_strategy",
    "model_card",
    "parse_lr_mult",
    "parse_sizes",
    "parse_unfreeze",
    "parse_wise_ft",
    "prepare_out",
    "progressive_schedule",
    "restore_earlier_run",
    "run",
    "set_aside_earlier_run",
]
