#!/usr/bin/env bash
# GPU check on one GPU, two phases, at most 8 min on an H200 (3.5 + 4.5 min hard limits):
#   bash benchmarks/gpu.sh            -> benchmarks/results/gpu-<date>.json           (phase 1)
#                                        benchmarks/results/gpu-finetune-<date>.json  (phase 2)
#   bash benchmarks/gpu.sh --smoke    -> both phases tiny on CPU (what the test suite exercises);
#                                        OUT=FILE.json puts phase 1 there and phase 2 in FILE-finetune.json
# Phase 1, benchmarks/bench_train.py (synthetic data; extra arguments go to it, e.g. --batch-sizes 4 8):
#   AMP (bf16) training steps of HRNet-W32 at 768x768 with batch 4/8/16/32 (images/s, ms/step, peak
#   memory; OOM recorded), fp32 reference steps, bf16-vs-fp32 loss agreement, inference images/s, and
#   whether the data loader keeps up with the training step.
# Phase 2, benchmarks/gpu_finetune.py (real data: $CEPHALO_SHARED/data/hamedan, default ../shared):
#   the user's recipe through cephalo's CLI -- index, preprocess letterbox768, evaluate the init,
#   train --init <public HRNet-W32> --image_size 768 768 --batch_size 4 --lr 1e-5 --mixed_precision bf16
#   for a 150 s budget, evaluate best.pt -- images/s per epoch, peak GPU memory and utilisation
#   (nvidia-smi), validation MRE / SDR@2mm before and after. The public best_model.pth cannot be
#   downloaded there: CEPHALO_HRNET_CKPT=/path/best_model.pth (else a same-format stand-in is used and
#   the JSON says init.public false). FINETUNE_ARGS="..." adds arguments (e.g. --epochs 20).
#   Phase 2 is skipped, with a message, where the real data are absent. A GPU machine that cannot see
#   ../shared: copy the images it reads into the checkout first (benchmarks/README.md) and set
#   CEPHALO_FT_DATA to that folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
mkdir -p benchmarks/results
stamp="$(date -u +%Y%m%d-%H%M%S)"
data_dir="${CEPHALO_FT_DATA:-${CEPHALO_SHARED:-../shared}/data/hamedan}"
has_data() { [[ -d "$data_dir/pictures" ]]; }
if [[ " $* " == *" --smoke "* ]]; then
  out="${OUT:-benchmarks/results/smoke-${stamp}.json}"
  timeout 300 "$PY" benchmarks/bench_train.py --device cpu --out "$out" "$@"
  if has_data; then
    # shellcheck disable=SC2086
    timeout 300 "$PY" benchmarks/gpu_finetune.py --smoke --out "${out%.json}-finetune.json" ${FINETUNE_ARGS:-}
  else
    echo "gpu.sh: phase 2 skipped: no real data at $data_dir" >&2
  fi
  exit 0
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'CUDA not available: run with --smoke on CPU')"
out="${OUT:-benchmarks/results/gpu-${stamp}.json}"
rc=0
timeout 210 "$PY" benchmarks/bench_train.py --device cuda --out "$out" "$@" || rc=$?
[[ $rc == 0 ]] || echo "gpu.sh: phase 1 failed or ran out of time (rc $rc); phase 2 still runs" >&2
if has_data; then
  # shellcheck disable=SC2086
  timeout 270 "$PY" benchmarks/gpu_finetune.py --out "benchmarks/results/gpu-finetune-${stamp}.json" \
    --engine-json "$out" ${FINETUNE_ARGS:-} || rc=$?
else
  echo "gpu.sh: phase 2 skipped: no real data at $data_dir" >&2
fi
exit $rc
