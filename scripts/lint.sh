#!/usr/bin/env bash
# Lint: the hooks of .pre-commit-config.yaml on the whole tree (ruff check, ruff format --check,
# snakefmt --check, generated files up to date, the package's layers), then mypy on the library
# (src/cephalo, settings in [tool.mypy]). Exit status non-zero if any finds something.
# Without pre-commit in the environment: ruff check and ruff format --check only, then mypy.
#   scripts/lint.sh            # uses $VENV (default .venv) for every tool
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
cd "$repo"
status=0
if [ -x "$venv/bin/pre-commit" ]; then
  # the hooks are `language: system`: they run the tools (ruff, snakefmt, python) found on PATH
  PATH="$venv/bin:$PATH" "$venv/bin/pre-commit" run --all-files --show-diff-on-failure || status=1
else
  echo "lint: no pre-commit in $venv (pip install -e '.[test]'): ruff only" >&2
  "$venv/bin/ruff" check . || status=1
  "$venv/bin/ruff" format --check . || status=1
fi
"$venv/bin/mypy" || status=1
exit $status
