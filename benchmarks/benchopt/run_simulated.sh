#!/usr/bin/env bash
# One benchopt run of benchmark_bilevel, dataset `simulated` (dim_inner 10, dim_outer 5), comparing
# ofmu_opt's presets (through the plug-in solver_ofmu.py) with the benchmark's SOBA, SABA, AmIGO, BOME and
# F2SA, all in the same run. Offline: nothing is downloaded (the `simulated` dataset is generated).
# ofmu_opt entries: the three penalty presets at their defaults; gpbgd and ofmu with level_tol=1e-3 (the
# continuation's level tolerance, chosen on this problem from a 5-value grid, docs/performance.md §6); gpbgd
# with the per-oracle (unfused) adapter, to measure the fused oracles; `implicit` (ImplicitDiff with CG inner
# and adjoint solves and L-BFGS on x: not a penalty preset); `implicit (dense)` (the same with dense inner
# Hessians and Cholesky solves, preset implicit_dense: not a penalty preset either); `implicit (newton)` (the same with
# Newton steps on h(x) from the dense blocks of f and g, preset implicit_newton: not a penalty preset); our SABA.
#
# Usage: benchmarks/benchopt/run_simulated.sh BENCHMARK_DIR OUT_DIR [float32|float64] [TIMEOUT_S]
#   BENCHMARK_DIR  a checkout of benchopt/benchmark_bilevel
#   OUT_DIR        where the parquet result is copied (report.py turns it into a table and a plot)
# Needs: pip install benchopt "jax[cpu]" scikit-learn pyarrow (and ofmu_opt's own dependencies).
# benchmark_bilevel caches the generated matrices with joblib in ./__cache__ (relative to the working directory),
# keyed by the PRNG key but not by the dtype: a float64 run started where a float32 run has been would reuse the
# float32-generated dataset. benchopt therefore runs from a fresh temporary directory, so each run generates the
# dataset in its own dtype.
set -euo pipefail  # pipefail: a failing benchopt run fails the script despite the tee
BENCH=${1:?benchmark_bilevel directory}
OUT=${2:?output directory}
DTYPE=${3:-float64}
TIMEOUT=${4:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PLUGIN="$HERE/solver_ofmu.py"
if [ "$DTYPE" = "float64" ]; then export JAX_ENABLE_X64=1; else export JAX_ENABLE_X64=0; fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BENCH=$(cd "$BENCH" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
rm -f "$BENCH/outputs/simulated_$DTYPE.parquet"  # benchopt would otherwise write simulated_$DTYPE_1.parquet
benchopt run "$BENCH" \
  -d "simulated[dim_inner=10,dim_outer=5]" \
  -s "$PLUGIN[preset=gpbgd]" -s "$PLUGIN[preset=vpbgd]" -s "$PLUGIN[preset=ofmu]" \
  -s "$PLUGIN[preset=gpbgd,level_tol=0.001]" -s "$PLUGIN[preset=ofmu,level_tol=0.001]" \
  -s "$PLUGIN[preset=gpbgd,fused=False]" -s "$PLUGIN[preset=implicit]" -s "$PLUGIN[preset=implicit_dense]" \
  -s "$PLUGIN[preset=implicit_newton]" \
  -s "$PLUGIN[preset=saba,batch_size=64,step=0.1]" \
  -s SOBA -s SABA -s AmIGO -s BOME -s F2SA \
  -n 100 --timeout "$TIMEOUT" -r 1 --no-cache --no-plot --no-html --no-display \
  --output "simulated_$DTYPE" 2>&1 | tee "$OUT/simulated_$DTYPE.log"
cp "$BENCH/outputs/simulated_$DTYPE.parquet" "$OUT/"
echo "result: $OUT/simulated_$DTYPE.parquet"
