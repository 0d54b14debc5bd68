"""Errors writing the out folder become one `OutputWriteError` that names it (any machine;
`tests/e2e/test_disk_problems.py` fills a real disk where mounting is allowed)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from zoo_transfer.errors import OutputWriteError


def test_write_failures_name_the_folder_and_the_way_out(tmp_path):
    from zoo_transfer.job import _write_failure

    out = tmp_path / "run"
    (out / "backup" / "epoch-0002").mkdir(parents=True)
    (out / "backup" / "epoch-0002" / "state.json").write_text('{"epoch": 2}')
    full = _write_failure(OSError(errno.ENOSPC, "No space left on device"), out)
    assert full.startswith(f"Cannot write in {out}: the disk is full")
    assert "2 epoch(s)" in full and "--resume" in full
    read_only = _write_failure(OSError(errno.EROFS, "x", str(out / "history.json")), out)
    assert "read-only file system" in read_only and "--out" in read_only
    # an unreadable data file is not the out folder's problem; other errors pass through
    assert _write_failure(OSError(errno.EACCES, "x", str(tmp_path / "data" / "a.png")), out) == ""
    assert _write_failure(OSError(errno.ENOENT, "x"), out) == ""
    assert _write_failure(ValueError("x"), out) == ""


def test_a_full_disk_at_the_first_backup_keeps_the_earlier_run(tmp_path, monkeypatch):
    import zoo_transfer.backup
    from zoo_transfer.job import JobConfig, run

    config = JobConfig("digitnet", "zoo:digits", epochs=1, augment="none", batch_size=16)
    out = tmp_path / "run"
    run(config, out, verbose=0, report=False)
    earlier = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    (out / "notes.txt").write_text("mine")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zoo_transfer.backup, "save_backup", disk_full)
    with pytest.raises(OutputWriteError, match=r"the disk is full.*earlier run .* is kept"):
        run(config, out, overwrite=True, verbose=0, report=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == {
        **earlier,
        "notes.txt": b"mine",
    }
    assert json.loads((out / "history.json").read_text())[0]["epoch"] == 1
    assert not (Path(out) / ".zoo-transfer-replaced").exists()
