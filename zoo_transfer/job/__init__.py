"""A training job: data source -> recipe -> `fit` with the callbacks -> an out folder.

Step one of splitting the former `zoo_transfer/job.py` by concept: the module moved
whole to `zoo_transfer/job/runner.py`; this re-exports the names other code uses.
"""

from zoo_transfer.job.runner import (
    EMBEDDED_DATA,
    FINAL_CHOICES,
    LOCK,
    MANIFEST,
    PRECISIONS,
    RECIPE_NAMES,
    RUN_OUTPUTS,
    STRATEGIES,
    JobConfig,
    JobResult,
    drop_earlier_run,
    make_strategy,
    parse_lr_mult,
    parse_sizes,
    parse_unfreeze,
    prepare_out,
    progressive_schedule,
    restore_earlier_run,
    run,
    set_aside_earlier_run,
)
from zoo_transfer.job.runner import _as_lists as _as_lists
from zoo_transfer.job.runner import _confusion as _confusion
from zoo_transfer.job.runner import _events as _events
from zoo_transfer.job.runner import _write_failure as _write_failure
from zoo_transfer.job.runner import _write_json as _write_json

__all__ = [
    "EMBEDDED_DATA",
    "FINAL_CHOICES",
    "LOCK",
    "MANIFEST",
    "PRECISIONS",
    "RECIPE_NAMES",
    "RUN_OUTPUTS",
    "STRATEGIES",
    "JobConfig",
    "JobResult",
    "drop_earlier_run",
    "make_strategy",
    "parse_lr_mult",
    "parse_sizes",
    "parse_unfreeze",
    "prepare_out",
    "progressive_schedule",
    "restore_earlier_run",
    "run",
    "set_aside_earlier_run",
]
