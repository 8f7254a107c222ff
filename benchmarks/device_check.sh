#!/usr/bin/env bash
# The GPU checks of docs/benchmarks.md, as one short script for a lent GPU machine (no network there; its
# python3 has numpy, onnxruntime, opencv-python-headless, PyYAML, prometheus-client, requests, pytest and
# cuda-bindings, the cuda-python runtime API). Run from the repository root:
#
#   bash benchmarks/device_check.sh [OUT_DIR]          # OUT_DIR defaults to $OUT, then ./device-check
#
# It runs, and writes into OUT_DIR:
#   - nvidia-smi.txt: the GPU, its driver and memory;
#   - gpu-tests.txt: the tests marked `gpu` (the TensorRT runner's CUDA side through cuda-python: page-locked
#     host buffers, device buffers, one stream, async copies, bytes round-tripped through the GPU) and `tensorrt`
#     (skipped unless TensorRT is installed, which no machine here has);
#   - bench-{cpu,cuda}-b{1,8}.json: `firedetd bench --mode engine` on the shipped model with ONNX Runtime's CPU
#     provider and, where that onnxruntime has it, its CUDA execution provider, batch 1 and 8, in one run
#     (the JSON's engine.provider says which provider really ran: CPU where the CUDA one is missing).
# Nothing here asserts a speed; the figures go into docs/benchmarks.md by hand, with the machine and the date.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-device-check}}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >> "$out/nvidia-smi.txt"
"$py" -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())' \
    > "$out/providers.txt" 2>&1

echo "== gpu and tensorrt tests"
"$py" -m pytest -q -p no:cacheprovider -m "gpu or tensorrt" -rs tests/inference/test_tensorrt.py \
    > "$out/gpu-tests.txt" 2>&1
tail -n 5 "$out/gpu-tests.txt"

for batch in 1 8; do
  for provider in cpu cuda; do
    cuda=false; [ "$provider" = cuda ] && cuda=true
    config="$out/bench-$provider.yaml"
    printf 'model:\n  engine: onnxruntime\n  cuda: %s\n  max_batch: %s\nhttp:\n  enabled: false\n' "$cuda" "$batch" \
        > "$config"
    echo "== bench: ONNX Runtime $provider, batch $batch"
    "$py" -m firedetd bench -c "$config" --mode engine --batch "$batch" --iterations 500 --json \
        --state-dir "$out/state" > "$out/bench-$provider-b$batch.json" 2> "$out/bench-$provider-b$batch.log"
    tail -n 1 "$out/bench-$provider-b$batch.log"
  done
done
rm -rf "$out/state" "$out"/bench-*.yaml
echo "device check: results in $out"
