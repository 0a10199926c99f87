#!/usr/bin/env bash
# GPU check on one GPU, at most 8 min (hard limits 200 + 200 + 60 s, + start-up):
#   bash benchmarks/gpu.sh            -> benchmarks/results/gpu-<date>.json, .md (the report), -rehearsal.json,
#                                        -memory.json
#   bash benchmarks/gpu.sh --smoke    -> phase 1 (and phase 2 where the real data are) tiny on CPU (what the
#                                        test suite exercises); OUT=FILE.json puts phase 1 there
# Phase 0, scripts/rehearse_aariz.py: the Aariz profile's rehearsal (every rule, stand-ins of the release and
#   of the public checkpoint) on CUDA with AMP (train.mixed_precision auto -> bf16 where supported).
# Phase 1, benchmarks/bench_train.py (synthetic data; extra arguments go to it): AMP (bf16) training steps of
#   HRNet-W32 at 768x768 with batch 4/8/16 (images/s, ms/step, peak memory; OOM recorded), fp32 reference
#   steps, bf16-vs-fp32 loss agreement (finite, within benchmarks/bench_train.py AMP_TOLERANCE), inference
#   images/s, and the data loader's rate against the training step (idle fraction in the report).
# Then benchmarks/bench_memory.py (the same batches' estimated peak, from CPU-measured activations) and
#   benchmarks/gpu_report.py (the Markdown report, with the date and the device, from the JSON files).
# Phase 2 (GPU_FINETUNE=1), benchmarks/gpu_finetune.py (real data: $CEPHALO_SHARED/data/hamedan): the
#   user's recipe through cephalo's CLI for a 150 s budget (public HRNet-W32 init: CEPHALO_HRNET_CKPT=
#   /path/best_model.pth, else a same-format stand-in); it adds about 4.5 min beyond the 8.
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
  "$PY" benchmarks/gpu_report.py --engine "$out" --out "${out%.json}.md" >/dev/null
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
# phase 0: the user's job rehearsed on this GPU (device auto -> cuda, mixed_precision auto -> bf16)
work=$(mktemp -d)
timeout 200 "$PY" scripts/rehearse_aariz.py run --workdir "$work" --cores "$(nproc)" \
  --summary "${out%.json}-rehearsal.json" || { rc=$?; echo "gpu.sh: the rehearsal failed (rc $rc)" >&2; }
# phase 1: HRNet-W32 at 768, batch 4/8/16: throughput, peak memory, loader, bf16 vs fp32
timeout 200 "$PY" benchmarks/bench_train.py --device cuda --batch-sizes 4 8 16 --out "$out" "$@" || rc=$?
[[ $rc == 0 ]] || echo "gpu.sh: a phase failed or ran out of time (rc $rc)" >&2
# the memory the same batches were estimated to need (activations measured on this machine's CPU)
timeout 60 "$PY" benchmarks/bench_memory.py --out "${out%.json}-memory.json" >/dev/null || true
[[ -f "$out" ]] && "$PY" benchmarks/gpu_report.py --engine "$out" --rehearsal "${out%.json}-rehearsal.json" \
  --memory "${out%.json}-memory.json" --out "${out%.json}.md"
# phase 2 (optional, GPU_FINETUNE=1): a short real fine-tune on the Hamedan images (benchmarks/gpu_finetune.py)
if [[ "${GPU_FINETUNE:-0}" == 1 ]] && has_data; then
  # shellcheck disable=SC2086
  timeout 270 "$PY" benchmarks/gpu_finetune.py --out "benchmarks/results/gpu-finetune-${stamp}.json" \
    --engine-json "$out" ${FINETUNE_ARGS:-} || rc=$?
fi
exit $rc
