#!/usr/bin/env bash
# The test command: set up the environment (if needed), then run the test suite offline.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
VENV=$venv "$repo/scripts/setup-env.sh"
export HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 MPLBACKEND=Agg
cd "$repo"
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
