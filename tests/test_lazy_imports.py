"""`import zoo_transfer` and `zoo-transfer list|info` must not import TensorFlow or Keras."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from zoo_transfer.cli import cli
import zoo_transfer
zoo_transfer.list_models("resnet*")
zoo_transfer.get_card("resnet50").preprocessing.normalize([[[[0.0, 0.0, 0.0]]]])
cli.main({args!r}, standalone_mode=False)
heavy = sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize("args", [["list"], ["info", "resnet50"], ["list", "--format", "json"]])
def test_cli_and_import_do_not_load_tensorflow(args):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="
