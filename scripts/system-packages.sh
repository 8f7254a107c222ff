#!/usr/bin/env bash
# The system packages the tests use (Debian/Ubuntu): GStreamer and its introspection files (real capture
# pipelines, the loopback RTSP server), the compilers PyGObject builds with, mosquitto (MQTT), Chromium and its
# driver (the status page), Prometheus (promtool), systemd (systemd-analyze) and openssl.
#   scripts/system-packages.sh           # install them (as root, or with sudo)
#   scripts/system-packages.sh --list    # only print them
set -euo pipefail
PACKAGES="gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  gir1.2-gst-rtsp-server-1.0 libgirepository1.0-dev libcairo2-dev pkg-config gcc
  mosquitto chromium chromium-driver prometheus systemd openssl"
if [ "${1:-}" = "--list" ]; then
  echo $PACKAGES
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "system-packages: no apt-get here; install the equivalents of: $(echo $PACKAGES)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo"
  else
    echo "system-packages: not root and no passwordless sudo; tests that need these will skip:" \
         "$(echo $PACKAGES)" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
