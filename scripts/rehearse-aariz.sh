#!/usr/bin/env bash
# The user's job rehearsed: the Aariz profile (profiles/aariz.yaml: download -> index -> variants ->
# public HRNet-W32 zero-shot + diagnosis -> AdaBN -> 19 -> 29 transfer + fine-tune -> calibrate ->
# evaluate -> compare -> MLflow), every rule executed, on local stand-ins of the Aariz release and of the
# public checkpoint, at the reduced sizes of profiles/rehearsal/aariz.yaml. Sets up .venv first.
#   scripts/rehearse-aariz.sh [--workdir DIR] [--cores N] [--interrupt-once] [-- SNAKEMAKE ARGS]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
VENV=$venv "$repo/scripts/setup-env.sh"
exec "$venv/bin/python" "$repo/scripts/rehearse_aariz.py" run "$@"
