#!/usr/bin/env bash
# Lint: ruff (rules in pyproject.toml [tool.ruff]) on the whole repository, then mypy on the library
# (src/cephalo, settings in [tool.mypy]). Exit status non-zero if either finds something.
#   scripts/lint.sh            # uses $VENV (default .venv) for both tools
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
cd "$repo"
status=0
"$venv/bin/ruff" check . || status=1
"$venv/bin/mypy" || status=1
exit $status
