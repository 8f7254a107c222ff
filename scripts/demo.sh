#!/usr/bin/env bash
# Set up a virtualenv and run the daemon on its embedded default (the shipped model on the bundled
# sample video), with a local demo receiver that prints every alert it gets. Extra arguments go to
# `firedetd run` (e.g. --source test://?pattern=ball, --loop, --duration 60).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh .venv "${PYTHON:-python3}" mqtt
PORT=${PORT:-8765}
.venv/bin/firedetd demo-receiver --port "$PORT" &
receiver=$!
trap 'kill $receiver 2>/dev/null || true' EXIT
sleep 1
echo "demo: metrics on http://127.0.0.1:9108/metrics, alerts printed below by the receiver on port $PORT"
.venv/bin/firedetd run --webhook "http://127.0.0.1:$PORT/alerts" "$@"
sleep 2   # let the receiver print the last deliveries
