"""`zoo-transfer list` wall time as a ratio to `python -c "import tensorflow"`.

Both are measured in this one run, alternating, on the same machine; the ratio of
medians is printed (target <= 0.10), with each side's peak RSS.

    python benchmarks/cli_latency.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def run_once(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of `cmd`."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    exe = shutil.which("zoo-transfer")
    ours = [exe, "list"] if exe else [sys.executable, "-m", "zoo_transfer", "list"]
    theirs = [sys.executable, "-c", "import tensorflow"]
    run_once(ours), run_once(theirs)  # warm the file cache for both
    t_ours, t_theirs, rss_ours, rss_theirs = [], [], [], []
    for _ in range(args.repeat):
        t, r = run_once(ours)
        t_ours.append(t), rss_ours.append(r)
        t, r = run_once(theirs)
        t_theirs.append(t), rss_theirs.append(r)
    a, b = statistics.median(t_ours), statistics.median(t_theirs)
    for label, t, rss in (("zoo-transfer list", a, rss_ours), ("import tensorflow", b, rss_theirs)):
        print(f"{label:<22} median {t * 1000:7.1f} ms  peak RSS {max(rss) / 1024:6.1f} MiB")
    ratio = a / b
    print(f"ratio {ratio:.3f} (target <= 0.10: {'met' if ratio <= 0.10 else 'MISSED'})")


if __name__ == "__main__":
    main()
