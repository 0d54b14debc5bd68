"""Running what a user runs: the installed `zoo-transfer` script and fresh interpreters."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def zoo_transfer_script() -> str:
    """The console script installed beside this interpreter (as `pip install -e .` puts it)."""
    beside = Path(sys.executable).with_name("zoo-transfer")
    found = str(beside) if beside.exists() else shutil.which("zoo-transfer")
    if found is None:
        pytest.fail("the zoo-transfer console script is not installed: run pip install -e .")
    return found


def shell(*args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `zoo-transfer ARGS...` in a new process; fail the test with its output if it fails."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [zoo_transfer_script(), *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check:
        assert proc.returncode == 0, f"zoo-transfer {' '.join(args)}:\n{proc.stderr[-3000:]}"
    return proc


def python(code: str, *args: str, timeout: int = 300) -> str:
    """Run `code` in a fresh interpreter; return its stdout, fail with its stderr."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
