"""`--strategy multiworker`: two real worker processes on localhost, TensorFlow's runtime."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_train_one_epoch_and_the_chief_writes_the_outputs(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "run"
    args = [
        sys.executable, "-m", "zoo_transfer", "train", "digitnet", "--data", "zoo:digits",
        "--epochs", "1", "--image-size", "32", "--batch-size", "16", "--augment", "none",
        "--strategy", "multiworker", "--out", str(out), "--quiet",
    ]  # fmt: skip
    procs = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TMPDIR": str(tmp_path),
        }
        procs.append(
            subprocess.Popen(
                args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    try:
        results = [p.communicate(timeout=420) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]
    prints = [
        next(line for line in out_.splitlines() if line.startswith("weights fingerprint"))
        for out_, _ in results
    ]
    assert prints[0] == prints[1]  # gradients were all-reduced across the two workers

    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1]
    assert 0.0 <= history[0]["val_accuracy"] <= 1.0
    for name in ("final.keras", "config.json", "labels.json", "report.html"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["strategy"] == "multiworker"
    # the other worker wrote nothing into the out folder and cleaned its scratch folder
    assert not list(out.glob(".worker*"))
    assert not list(tmp_path.glob("zoo-transfer-worker-*"))
