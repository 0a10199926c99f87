#!/usr/bin/env bash
# Build the peer's environment, .venv-peer (gitignored), for benchmarks/peer_landmarker.py: the
# `landmarker` package (PyPI) with its own dependencies (scipy<1.16, monai, seaborn, ...), kept
# apart from cephalo's pinned environment. Same torch/torchvision pair as cephalo's .venv.
#   benchmarks/peer/setup.sh                 # creates ./.venv-peer with python3.11
#   PEER_VENV=/path PYTHON=python3.11 benchmarks/peer/setup.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
venv=${PEER_VENV:-$repo/.venv-peer}
python=${PYTHON:-python3.11}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
# torch first (the pair that cephalo's environment uses), then the peer at a fixed version.
# envs/constraints.txt is not applied: landmarker 0.4.1 requires scipy<1.16 (cephalo pins 1.17.1);
# the peer's other dependencies resolve freely (the report records landmarker, monai and torch).
"$venv/bin/python" -m pip install "torch==2.14.1" "torchvision==0.29.1"
"$venv/bin/python" -m pip install "landmarker==0.4.1"
"$venv/bin/python" -c "import landmarker, torch, scipy; print('landmarker', landmarker.__version__ if hasattr(landmarker, '__version__') else '0.4.1', 'torch', torch.__version__, 'scipy', scipy.__version__)"
