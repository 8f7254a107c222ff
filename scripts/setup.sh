#!/usr/bin/env bash
# Create (or update) a virtualenv with firedetd installed from this checkout (editable).
#   scripts/setup.sh [VENV_DIR] [PYTHON] [EXTRAS]
# Python 3.6 (JetPack 4.6) gets the pins in constraints/py36.txt. GStreamer capture (PyGObject) is
# installed when the system has GStreamer's introspection files; otherwise firedetd uses OpenCV.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY=${2:-python3}
EXTRAS=${3:-mqtt,notify,test}
PIP_QUIET=${PIP_QUIET:--q}

if [ ! -x "$VENV/bin/python" ]; then
  if [ -f /etc/nv_tegra_release ]; then
    # a Jetson: TensorRT, pycuda and GStreamer's python3-gi come from JetPack's system packages
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
# numpy's OpenBLAS misdetects the Jetson's Cortex-A57 ("Illegal instruction" on import; numpy issues 18131, 18468)
[ -f /etc/nv_tegra_release ] && export OPENBLAS_CORETYPE=ARMV8
pyver=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pip() { "$VENV/bin/python" -m pip $PIP_QUIET --disable-pip-version-check "$@"; }

if [ "$pyver" = "3.6" ]; then
  # pip 21.3 is the last for 3.6 (and the first with editable installs of pyproject projects);
  # the index does not filter by requires-python for it, so everything is pinned
  export PIP_CONSTRAINT="$PWD/constraints/py36.txt"
  pip install "pip==21.3.1" "setuptools==59.6.0" "wheel==0.37.1"
else
  pip install --upgrade pip
fi

if pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null; then
  if [ "$pyver" = "3.6" ]; then
    # PyGObject/pycairo build from source against the system's GLib; their build needs old setuptools
    pip install --no-build-isolation pycairo
    pip install --no-build-isolation PyGObject
  elif pkg-config --exists girepository-2.0 2>/dev/null; then
    pip install PyGObject
  else
    pip install "PyGObject<3.50"   # 3.50+ needs girepository-2.0 (absent on Debian 12 / Ubuntu 22.04)
  fi
else
  echo "setup: GStreamer introspection files not found; capture falls back to OpenCV" \
       "(apt-get install libgirepository1.0-dev libcairo2-dev gir1.2-gstreamer-1.0 for GStreamer)" >&2
fi

pip install -e ".[$EXTRAS]"
echo "setup: $VENV ready (Python $pyver): $("$VENV/bin/firedetd" --version)"
