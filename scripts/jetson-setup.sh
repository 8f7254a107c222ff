#!/usr/bin/env bash
# A stock Jetson Nano (JetPack 4.6.x, Ubuntu 18.04, Python 3.6) from this checkout to a running service, in one
# command (docs/jetson.md follows it step by step):
#   sudo scripts/jetson-setup.sh             # do it
#   scripts/jetson-setup.sh --dry-run        # print every step, change nothing (works anywhere)
# Steps: JetPack's packages; the service user; the code in /opt/firedetd; a venv on the system Python that sees
# JetPack's TensorRT and GStreamer; the 3.6 pins; pycuda built against JetPack's CUDA; a config for the camera
# that is there; the TensorRT plan built once, outside the service's memory cap; the unit, enabled and started.
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=${FIREDETD_PREFIX:-/opt/firedetd}
CONFIG_DIR=/etc/firedetd
STATE_DIR=/var/lib/firedetd
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1

step() { echo; echo "== $*"; }
run() {
  echo "+ $*"
  if [ "$DRY" = 0 ]; then "$@"; fi
}

if [ "$DRY" = 0 ]; then
  if [ ! -f /etc/nv_tegra_release ]; then
    echo "jetson-setup: /etc/nv_tegra_release not found: this is not a Jetson with JetPack (use scripts/setup.sh," \
         "or --dry-run to see the steps)" >&2
    exit 2
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "jetson-setup: run it with sudo (it installs packages, a user and a systemd unit)" >&2
    exit 2
  fi
  echo "jetson-setup: $(head -1 /etc/nv_tegra_release)"
fi

step "1/8 JetPack's packages: TensorRT's Python bindings, GStreamer and python3-gi (system Python 3.6)"
run apt-get update
run apt-get install -y --no-install-recommends python3-libnvinfer python3-venv python3-dev python3-pip \
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gstreamer1.0-tools gstreamer1.0-plugins-good \
  gstreamer1.0-plugins-bad gstreamer1.0-libav build-essential rsync

step "2/8 the service user 'firedetd' (groups: video, for cameras and the GPU nodes)"
if [ "$DRY" = 1 ] || ! id firedetd >/dev/null 2>&1; then
  run useradd --system --user-group --groups video --home-dir "$STATE_DIR" --shell /usr/sbin/nologin firedetd
fi

step "3/8 the code in $PREFIX (engines/ and samples/ with it)"
run mkdir -p "$PREFIX"
run rsync -a --delete --exclude .git --exclude '.venv*' --exclude runs/ --exclude state/ "$SRC/" "$PREFIX/"

step "4/8 the venv: system Python 3.6 with its site-packages (TensorRT, python3-gi), the 3.6 pins"
# numpy's OpenBLAS misdetects the Cortex-A57 ("Illegal instruction"; numpy issues 18131, 18468)
export OPENBLAS_CORETYPE=ARMV8
run /usr/bin/python3 -m venv --system-site-packages "$PREFIX/.venv"
export PIP_CONSTRAINT="$PREFIX/constraints/py36.txt"
run "$PREFIX/.venv/bin/python" -m pip install -q "pip==21.3.1" "setuptools==59.6.0" "wheel==0.37.1"
run "$PREFIX/.venv/bin/python" -m pip install -q numpy
# pycuda compiles against JetPack's CUDA 10.2 (several minutes); firedetd falls back to ONNX Runtime, saying why,
# if it does not build
run env PATH="/usr/local/cuda/bin:$PATH" CPATH=/usr/local/cuda/include \
  "$PREFIX/.venv/bin/python" -m pip install -q -e "$PREFIX[trt,mqtt]"
run "$PREFIX/.venv/bin/python" -c "import tensorrt, pycuda.driver, firedetd; print('tensorrt', tensorrt.__version__, \
'firedetd', firedetd.__version__)"

step "5/8 the config: $CONFIG_DIR/firedetd.yaml (kept if it exists)"
CAMERA="file://$PREFIX/samples/furg_house6.mp4"
if [ -e /dev/video0 ] && systemctl is-active --quiet nvargus-daemon 2>/dev/null; then
  CAMERA="csi://0"
elif [ -e /dev/video0 ]; then
  CAMERA="v4l2:///dev/video0"
fi
run mkdir -p "$CONFIG_DIR"
if [ "$DRY" = 1 ] || [ ! -f "$CONFIG_DIR/firedetd.yaml" ]; then
  echo "+ write $CONFIG_DIR/firedetd.yaml (camera: $CAMERA)"
  if [ "$DRY" = 0 ]; then
    {
      echo "# written by scripts/jetson-setup.sh; every key: docs/config.md"
      echo "cameras:"
      echo "  - name: cam0"
      echo "    source:"
      echo "      uri: $CAMERA"
      [ "${CAMERA#file://}" != "$CAMERA" ] && echo "      loop: true   # no camera was found: the bundled sample"
      echo "model:"
      echo "  engine: auto"
      echo "# alerts:"
      echo "#   webhooks: [{url: https://alerts.example/firedetd, secret_env: FIREDETD_WEBHOOK_SECRET}]"
    } > "$CONFIG_DIR/firedetd.yaml"
    chgrp firedetd "$CONFIG_DIR" "$CONFIG_DIR/firedetd.yaml"
    chmod 0750 "$CONFIG_DIR"
    chmod 0640 "$CONFIG_DIR/firedetd.yaml"
  fi
fi
run "$PREFIX/.venv/bin/firedetd" check-config -c "$CONFIG_DIR/firedetd.yaml" --state-dir "$STATE_DIR"

step "6/8 the state directory $STATE_DIR (outbox, TensorRT plans), owned by the service user"
run install -d -o firedetd -g firedetd -m 0750 "$STATE_DIR"

step "7/8 the TensorRT plan, built once as the service user, outside the service's MemoryMax (minutes on a Nano)"
run sudo -u firedetd env OPENBLAS_CORETYPE=ARMV8 "$PREFIX/.venv/bin/firedetd" build-engine \
  -c "$CONFIG_DIR/firedetd.yaml" --state-dir "$STATE_DIR"

step "8/8 the systemd unit, enabled and started"
run install -m 0644 "$PREFIX/systemd/firedetd.service" /etc/systemd/system/firedetd.service
run systemctl daemon-reload
run systemctl enable --now firedetd
echo
echo "jetson-setup: done. Status: systemctl status firedetd; log: journalctl -u firedetd -f;"
echo "health: curl -s 127.0.0.1:9108/healthz; status page: http://127.0.0.1:9108/ (docs/service.md)"
