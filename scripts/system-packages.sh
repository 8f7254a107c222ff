#!/usr/bin/env bash
# The system packages the tests use (Debian/Ubuntu), and what skips without each:
#   scripts/system-packages.sh            # install the missing ones (as root, or with password-less sudo)
#   scripts/system-packages.sh --list     # print them all
#   scripts/system-packages.sh --missing  # print the ones not installed (nothing: all there)
# Without root it installs nothing and says, in one list, what is missing and which tests will skip.
set -euo pipefail
# package|what skips without it
TABLE="gstreamer1.0-tools|GStreamer pipelines (capture, files, the loopback RTSP server)
gstreamer1.0-plugins-base|GStreamer pipelines
gstreamer1.0-plugins-good|GStreamer pipelines (MP4, RTP)
gstreamer1.0-plugins-bad|GStreamer pipelines (H.264 parsing)
gstreamer1.0-plugins-ugly|H.264 test files (x264enc)
gstreamer1.0-libav|H.264 decoding (avdec_h264)
gir1.2-gstreamer-1.0|PyGObject's view of GStreamer: every GStreamer test
gir1.2-gst-plugins-base-1.0|PyGObject's view of GStreamer: every GStreamer test
gir1.2-gst-rtsp-server-1.0|the loopback RTSP server tests
libgirepository1.0-dev|building PyGObject in the venvs: every GStreamer test
libcairo2-dev|building pycairo for PyGObject
pkg-config|building PyGObject
gcc|building PyGObject and pycairo
mosquitto|the MQTT sink, Home Assistant discovery and sensor tests
chromium|the status page in a real browser
chromium-driver|the status page in a real browser
prometheus|promtool checks of the alerting rules and the scrape
systemd|systemd-analyze checks of the unit
openssl|the HTTPS receiver test"
PACKAGES=$(echo "$TABLE" | cut -d'|' -f1)

missing() {
  for package in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || echo "$package"
  done
}

case "${1:-}" in
  --list) echo $PACKAGES; exit 0 ;;
  --missing) command -v dpkg-query >/dev/null && missing | tr '\n' ' ' | sed 's/ $//'; echo; exit 0 ;;
esac

if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
  echo "system-packages: not a Debian/Ubuntu machine; install the equivalents of: $(echo $PACKAGES)" >&2
  exit 0
fi
todo=$(missing)
[ -z "$todo" ] && exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo"
  else
    echo "system-packages: not root and no password-less sudo; missing, and what will skip without each:" >&2
    for package in $todo; do
      echo "  $package: $(echo "$TABLE" | grep "^$package|" | cut -d'|' -f2)" >&2
    done
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $todo >/dev/null
