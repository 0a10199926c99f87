#!/usr/bin/env bash
# The test command: set up the environment (if needed), then run the test suite offline.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
VENV=$venv "$repo/scripts/setup-env.sh"
export HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 MPLBACKEND=Agg
cd "$repo"
# lint first (scripts/lint.sh: the pre-commit hooks + mypy); CEPHALO_SKIP_LINT=1 skips it for quick local runs
if [ "${CEPHALO_SKIP_LINT:-0}" != 1 ]; then
  VENV=$venv "$repo/scripts/lint.sh"
fi
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
