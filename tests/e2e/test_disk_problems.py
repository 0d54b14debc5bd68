"""A full disk and a read-only folder: one clear error naming the folder, nothing earlier lost.

The disk is a small tmpfs mounted for the test, so it really fills up (and really becomes
read-only). Mounting needs root with CAP_SYS_ADMIN, as on the project's machines and
CI; elsewhere these tests skip and say so. `test_job_write_errors.py` checks the same
messages in-process on any machine.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from user_shell import shell

TRAIN = ["train", "digitnet", "--batch-size", "8", "--quiet", "--epochs", "1"]


@pytest.fixture
def small_disk(tmp_path):
    """Mount a fresh tmpfs; `remount(options)` changes it (`ro`, `size=...`)."""
    mount = tmp_path / "disk"
    mount.mkdir()

    def run(*args):
        return subprocess.run(args, capture_output=True, text=True)

    made = run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount))
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {made.stderr}")

    def remount(options: str) -> None:
        done = run("mount", "-o", f"remount,{options}", str(mount))
        assert done.returncode == 0, done.stderr

    yield mount, remount
    run("umount", "-l", str(mount))


def _fill(mount: Path, leave_kib: int) -> None:
    """Write a filler file until only about `leave_kib` KiB are free on `mount`."""
    import os

    stat = os.statvfs(mount)
    free = stat.f_bavail * stat.f_frsize
    (mount / "filler").write_bytes(b"\0" * max(0, free - leave_kib * 1024))


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def data(make_folder, tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("disk") / "data", per_class=12, classes=3)


@pytest.mark.early
def test_a_full_disk_and_a_read_only_folder_are_clear_errors_that_keep_the_run(small_disk, data):
    mount, remount = small_disk
    out = mount / "run"
    shell(*TRAIN, "--data", str(data), "--out", str(out))
    before = _digests(out)
    backups = {k: v for k, v in before.items() if k.startswith("backup/")}

    # a full disk: room for the config files, not for a backup
    _fill(mount, leave_kib=300)
    replaced = shell(*TRAIN, "--data", str(data), "--out", str(out), "--overwrite", check=False)
    assert replaced.returncode == 2
    assert f"Cannot write in {out}: the disk is full" in replaced.stderr
    assert "Traceback" not in replaced.stderr and "Segmentation" not in replaced.stderr
    assert _digests(out) == before  # the earlier run is back, byte for byte
    more = shell(
        *TRAIN, "--data", str(data), "--out", str(out), "--resume", "--epochs", "2", check=False
    )
    assert more.returncode == 2 and "the disk is full" in more.stderr
    assert "--resume" in more.stderr  # what to do once there is room
    assert not list((out / "backup").glob(".*partial"))
    after = {k: v for k, v in _digests(out).items() if k.startswith("backup/")}
    assert after == backups  # the backups it would resume from are untouched
    (mount / "filler").unlink()

    # a read-only folder
    remount("ro")
    for extra in (["--resume", "--epochs", "2"], ["--overwrite"]):
        proc = shell(*TRAIN, "--data", str(data), "--out", str(out), *extra, check=False)
        assert proc.returncode == 2, proc.stderr
        assert f"Cannot write in {out}" in proc.stderr and "read-only" in proc.stderr
        assert "Traceback" not in proc.stderr
    remount("rw")
    assert {k: v for k, v in _digests(out).items() if k.startswith("backup/")} == backups

    # room and write access again: the same command goes on from the kept epoch
    shell(*TRAIN, "--data", str(data), "--out", str(out), "--resume", "--epochs", "2")
    assert len(json.loads((out / "history.json").read_text())) == 2
