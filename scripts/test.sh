#!/usr/bin/env bash
# Set up and run every test: the runtime on Python 3.6 (the Jetson Nano's) when it is installed,
# everything (training included) on Python 3.11, plus ruff.
#   scripts/test.sh            # both Pythons
#   PY36=none scripts/test.sh  # skip 3.6
set -euo pipefail
cd "$(dirname "$0")/.."
PY311=${PY311:-$(command -v python3.11 || command -v python3)}
PY36=${PY36:-$( (pyenv root 2>/dev/null | sed 's|$|/versions/3.6.15/bin/python|') || true)}
export PYTHONDONTWRITEBYTECODE=1

echo "== system packages (GStreamer, mosquitto, Chromium, Prometheus, systemd, openssl)"
# SKIP_SYSTEM_PACKAGES=1 when they are installed already (a developer machine); without them, the tests that
# need one skip with the reason (scripts/system-packages.sh --list names them)
[ "${SKIP_SYSTEM_PACKAGES:-0}" = 1 ] || scripts/system-packages.sh
# with every system package there, a test that skips for a missing one fails instead (tests/conftest.py):
# a green run then means every test that can run on this machine ran
if [ -z "$(scripts/system-packages.sh --missing)" ]; then
  export FIREDETD_STRICT_SKIPS=${FIREDETD_STRICT_SKIPS:-1}
fi
echo "== setup: Python 3.11 ($PY311)"
# torch 2.13.0, the CPU build these machines keep on disk (PIP_FIND_LINKS). From the public index alone that
# version resolves to the CUDA build (about 20 nvidia packages, several GB): set TORCH_INDEX to PyTorch's CPU
# index (https://download.pytorch.org/whl/cpu) where it is reachable and the CPU build is wanted.
[ -x .venv/bin/python ] || "$PY311" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} \
  "torch==${TORCH_VERSION:-2.13.0}"
scripts/setup.sh .venv "$PY311" "mqtt,notify,test,train,federated,micro"
status=0

echo "== ruff"
.venv/bin/ruff check firedetd tests $(ls -d benchmarks 2>/dev/null) || status=1

echo "== tests: Python 3.11 (runtime)"
.venv/bin/python -m pytest -q -p no:cacheprovider --ignore=tests/training --ignore=tests/micro "$@" || status=1
# the micro interpreter in its own process too: tflite-micro's native code crashed (SIGSEGV) in a process that had
# loaded torch and GStreamer's PyGObject, as torch.onnx aborts beside PyGObject
echo "== tests: Python 3.11 (micro)"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/micro "$@" || status=1
# training in its own process: torch.onnx next to GStreamer's PyGObject aborts (tests/training/conftest.py)
echo "== tests: Python 3.11 (training)"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/training "$@" || status=1

if [ "$PY36" != "none" ] && [ -x "$PY36" ]; then
  echo "== setup: Python 3.6 ($PY36)"
  scripts/setup.sh .venv36 "$PY36" "mqtt,notify,test"
  echo "== tests: Python 3.6 (runtime; training needs 3.8+ and skips)"
  .venv36/bin/python -m pytest -q -p no:cacheprovider "$@" || status=1
else
  echo "== Python 3.6 not found (set PY36=/path/to/python3.6): runtime tests on 3.6 skipped" >&2
fi
exit $status
