#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run (what produced benches/results/gpu_*.txt):
#   1. benches/gpu_attention.py: loader batches against each sequence alone, every backend;
#   2. `seqpack bench --gpu`: the cost model measured on the device and the budget sweep.
# Usage: benches/run_gpu_checks.sh OUT_DIR   (with seqpack importable, torch + transformers)
set -uo pipefail
out=${1:?usage: run_gpu_checks.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"
timeout "${ATTENTION_TIMEOUT:-240}" python3 benches/gpu_attention.py --device cuda \
    --dtypes bfloat16,float16,float32 --out "$out/gpu_attention.json" 2>&1 | tee "$out/gpu_attention.log"
attention=${PIPESTATUS[0]}
timeout "${BENCH_TIMEOUT:-240}" python3 -m seqpack bench --tokens-per-step 16384 --gpu \
    --out "$out/bench" 2>&1 | tee "$out/bench.log"
bench=${PIPESTATUS[0]}
rm -f "$out"/bench/*.png
echo "attention exit $attention, bench exit $bench"
[ "$attention" = 0 ] && [ "$bench" = 0 ]
