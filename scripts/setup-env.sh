#!/usr/bin/env bash
# Create (or reuse) cephalo's virtual environment and install the project into it.
#   VENV   where the environment lives (default: .venv in the repository)
# Versions come from envs/constraints.txt (the pins used in development and CI):
# torch 2.14.1 with torchvision 0.29.1 (timm imports torchvision), albumentations 2.0.8.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$repo/.venv}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
stamp="$venv/.cephalo-installed"
want=$(cat "$repo/pyproject.toml" "$repo/envs/constraints.txt" | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import cephalo" 2>/dev/null; then
  # an environment shared by several clones (CI caches it outside the clone, keyed by the pins) imports
  # the clone that last installed into it: point its editable install at this one (no downloads)
  here=$("$venv/bin/python" -c "import cephalo, os; print(os.path.realpath(os.path.dirname(cephalo.__file__)))")
  if [ "$here" != "$(realpath "$repo/src/cephalo")" ]; then
    echo "cephalo: environment $venv imported $here; installing this project ($repo) into it instead" >&2
    "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$repo"
  fi
  echo "cephalo: environment $venv is up to date" >&2
  exit 0
fi
echo "cephalo: creating environment in $venv (first time: several minutes, torch is large)" >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$venv/bin/python" -m pip install -q -c "$repo/envs/constraints.txt" -e "$repo[test,pipeline,onnx,rar,cluster]"
echo "$want" > "$stamp"
