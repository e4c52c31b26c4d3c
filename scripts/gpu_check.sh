#!/usr/bin/env bash
# One short GPU check: the `gpu`-marked tests, the step-cost timing benchmark, then the unlearning
# step-cost benchmark (benchmarks/bench_step_cost.py --quick on CUDA: same tables as `make bench`).
# Results go to $OUT (if set) or to benchmarks/results/. Usage: scripts/gpu_check.sh [python]
set -uo pipefail
PY="${1:-${PYTHON:-.venv/bin/python}}"
[ -x "$PY" ] || PY=python3
OUTDIR="${OUT:-benchmarks/results}"
mkdir -p "$OUTDIR"
"$PY" - <<'PYEOF' > "$OUTDIR/gpu_env.txt" 2>&1
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0))
PYEOF
cat "$OUTDIR/gpu_env.txt"
"$PY" -m pytest -q -m gpu tests --junitxml="$OUTDIR/gpu_tests.xml" 2>&1 | tee "$OUTDIR/gpu_tests.txt"
status=${PIPESTATUS[0]}
# BENCH_ARGS overrides the model size (e.g. BENCH_ARGS="--device cpu --width 64 --depth 2 --batch 32" for a smoke run)
BENCH_ARGS="${BENCH_ARGS:---width 1024 --depth 4 --batch 512 --repeats 20}"
for dt in float32 bfloat16; do
  # shellcheck disable=SC2086
  "$PY" benchmarks/gpu_timing.py --dtype "$dt" $BENCH_ARGS \
    --out "$OUTDIR/gpu_timing_${dt}.json" 2>&1 | tee "$OUTDIR/gpu_timing_${dt}.txt"
done
"$PY" -m benchmarks.bench_step_cost --quick --device cuda --threads 0 --out "$OUTDIR" 2>&1 \
  | tee "$OUTDIR/step_cost.txt"
exit "$status"
