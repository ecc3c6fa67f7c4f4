#!/usr/bin/env bash
# The prepared GPU session (one call of the device tool, about 8 minutes):
#   1. `optimize` at N = 65536 (target: under 30 s warm), default settings, then
#      with 256 random repulsion partners (default 128 above 4096 neurons);
#   2. the JAX layout methods at N = 16384 (bench/layouts.py, no peers);
#   3. the demo end to end (bench/demo_time.py, one run).
# Logs go to $OUT (the device tool's output folder) or bench/out/gpu.
#
#   bash bench/gpu_run.sh                 # on the GPU machine
#   bash bench/gpu_run.sh 2048 1024 0     # CPU dry run: N, layout sizes, demo 0/1
set -u
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
N=${1:-65536}
SIZES=${2:-16384}
DEMO=${3:-1}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null
$PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
timeout 170 $PY bench/optimize_gpu.py --n "$N" --repeats 2 2>&1 | tee "$OUT/optimize_$N.log"
timeout 100 $PY bench/optimize_gpu.py --n "$N" --negatives 256 --repeats 1 2>&1 | tee "$OUT/optimize_${N}_neg256.log"
timeout 170 $PY bench/layouts.py --sizes "$SIZES" --methods optimize,umap,tsne,som,umap+swarm \
    --peers none --warm-runs 2 --timeout 80 --json "$OUT/layouts.json" 2>&1 | tee "$OUT/layouts.log"
if [ "$DEMO" = 1 ]; then
    timeout 90 $PY bench/demo_time.py --runs 1 2>&1 | tee "$OUT/demo.log"
fi
