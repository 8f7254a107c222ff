#!/usr/bin/env bash
# The converter venv for firedetd-micro (docs/micro.md): torch 2.13.0 CPU + litert-torch 0.10.0, apart from .venv
# because litert-torch brings its own converter stack (litert-converter, torchao, jax). Needed only to rebuild
# engines/micro/ (`firedetd export-micro`), never by the daemon or the tests.
#   scripts/micro-converter.sh [VENV_DIR] [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-micro}
PY=${2:-$(command -v python3.11 || command -v python3)}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip -q --disable-pip-version-check "$@"; }
pip install --upgrade pip
# torch first, pinned: litert-torch accepts torch <2.15 and would otherwise resolve the newest (CUDA) build
pip install "torch==2.13.0"
pip install -c constraints/micro-converter.txt "torch==2.13.0" litert-torch ai-edge-litert tflite-micro
pip install -c constraints/micro-converter.txt --no-deps -e .
pip install -c constraints/micro-converter.txt tqdm opencv-python-headless pyyaml
echo "micro converter: $VENV ready ($("$VENV/bin/python" -c 'import litert_torch, torch; print("litert-torch", litert_torch.__version__, "torch", torch.__version__)'))"
