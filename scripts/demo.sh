#!/usr/bin/env bash
# The main job on the embedded default data: set up the environment (if needed), then run the whole
# pipeline (synthetic demo data -> index -> preprocessing variants -> source model -> zero-shot diagnosis
# -> fine-tuning -> evaluation -> comparison) with Snakemake. Offline, CPU, about 10 minutes on 2 cores.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
VENV=$venv "$repo/scripts/setup-env.sh"
export PATH="$venv/bin:$PATH" HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true MPLBACKEND=Agg
cd "$repo"
snakemake --cores "${CORES:-2}" --resources gpu=1 "$@"
