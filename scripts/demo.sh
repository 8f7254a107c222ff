#!/usr/bin/env bash
# Set up a virtualenv and run the daemon on its embedded default (the shipped model on the bundled sample
# video, played at its own frame rate and looped, until Ctrl-C), with a local demo receiver that prints every
# alert it gets. Extra arguments go to `firedetd run`; with --source or -c they say what to watch instead
# (e.g. --source "test://?pattern=ball", --duration 60).
#   PORT (8765): the receiver's port; METRICS_ADDR (127.0.0.1:9108): status page and metrics;
#   VENV (.venv); SKIP_SETUP=1: use an existing $VENV as it is (no pip run).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ "${SKIP_SETUP:-0}" != 1 ] || [ ! -x "$VENV/bin/firedetd" ]; then
  scripts/setup.sh "$VENV" "${PYTHON:-python3}" mqtt
fi
PORT=${PORT:-8765}
METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:9108}

# the sample lasts 30 s; as fast as the CPU decodes it would be over before the status page is open
watch=(--loop --realtime)
what="the bundled sample (a house fire, 30 s, looped at its own rate)"
for arg in "$@"; do
  case "$arg" in
    --source|--source=*|-c|--config|--config=*) watch=(); what="what the arguments name" ;;
  esac
done

"$VENV/bin/firedetd" demo-receiver --port "$PORT" &
receiver=$!
trap 'kill $receiver 2>/dev/null || true' EXIT
sleep 1
echo "demo: firedetd watches $what until Ctrl-C"
echo "demo: status page http://$METRICS_ADDR/  metrics http://$METRICS_ADDR/metrics"
echo "demo: alerts are printed below by the receiver on port $PORT"
# Ctrl-C reaches firedetd too: it stops cleanly and the script goes on to let the receiver finish
"$VENV/bin/firedetd" run --webhook "http://127.0.0.1:$PORT/alerts" --metrics-addr "$METRICS_ADDR" \
  ${watch[@]+"${watch[@]}"} "$@" || status=$?
sleep 2   # let the receiver print the last deliveries
exit "${status:-0}"
