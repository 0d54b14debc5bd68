#!/usr/bin/env bash
# Run every benchmark in benchmarks/ one after another (not gpu_check.py, which is for
# a lent GPU machine on the JAX backend, nor defaults_sweep.py, the 12-minute sweep the
# training defaults come from, nor rank.py and forgetting.py, the issue-15 side-by-side
# runs of 10-20 minutes each; see BENCHMARKS.md), then print each one's ratio line
# again as a summary. About 16 minutes on 2 CPU cores (accuracy.py takes 8).
#
#     bash benchmarks/run_all.sh            # from the repository root, project venv active
#     LOG_DIR=/tmp/bench bash benchmarks/run_all.sh   # keep the full outputs there
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
log_dir="${LOG_DIR:-$(mktemp -d -t zoo_benchmarks.XXXXXX)}"
mkdir -p "$log_dir"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"

failed=0
summary=()
start_all=$SECONDS
for script in "$here"/*.py; do
    name="$(basename "$script" .py)"
    case "$name" in gpu_check | defaults_sweep | rank | forgetting | _*) continue ;; esac
    echo "=== $name"
    start=$SECONDS
    # Keep stdout (the results); stderr (TensorFlow's and Keras' log lines) goes to the log.
    if "$python" "$script" 2>"$log_dir/$name.err" | tee "$log_dir/$name.out"; then
        status="ok"
    else
        status="FAILED (stderr: $log_dir/$name.err)"
        tail -n 20 "$log_dir/$name.err"
        failed=1
    fi
    took=$((SECONDS - start))
    echo "--- $name: $status in ${took} s"
    ratio="$(grep -E '^ratio' "$log_dir/$name.out" | head -n 1)"
    summary+=("$(printf '%-18s %4d s  %s' "$name" "$took" "${ratio:-no ratio line}")")
done

echo
echo "=== summary ($((SECONDS - start_all)) s in all; outputs in $log_dir)"
printf '%s\n' "${summary[@]}"
exit "$failed"
