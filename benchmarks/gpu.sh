#!/usr/bin/env bash
# Training-engine benchmark on one GPU (about 5-8 min on an H200; hard limit 8 min).
#   bash benchmarks/gpu.sh            -> benchmarks/results/gpu-<date>.json
#   bash benchmarks/gpu.sh --smoke    -> tiny CPU run (what the test suite exercises)
# Extra arguments go to benchmarks/bench_train.py (e.g. --batch-sizes 4 8 --steps 10).
# Measures: AMP (bf16) training steps of HRNet-W32 at 768x768 with batch 4/8/16/32 (images/s,
# ms/step, peak memory; OOM recorded), fp32 reference steps, bf16-vs-fp32 loss agreement,
# inference images/s, and whether the data loader keeps up with the training step.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
mkdir -p benchmarks/results
stamp="$(date -u +%Y%m%d-%H%M%S)"
if [[ " $* " == *" --smoke "* ]]; then
  out="benchmarks/results/smoke-${stamp}.json"
  exec timeout 300 "$PY" benchmarks/bench_train.py --device cpu --out "${OUT:-$out}" "$@"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'CUDA not available: run with --smoke on CPU')"
timeout 480 "$PY" benchmarks/bench_train.py --device cuda --out "${OUT:-benchmarks/results/gpu-${stamp}.json}" "$@"
