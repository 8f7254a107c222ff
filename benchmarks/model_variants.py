"""Model variants: FP32 / FP16 / INT8 ONNX latency ratios on ONNX Runtime CPU, measured in interleaved rounds.

FP32 and INT8 are the shipped files (engines/firedetd.onnx, firedetd-int8.onnx). FP16 is converted on
the fly from FP32 with onnxconverter-common (inputs and outputs kept FP32); where that package or onnx
is missing (the Python 3.6 runtime venv) the FP16 row is skipped with a note. ONNX Runtime has no FP16
kernels on most CPUs, so FP16 is expected to be slower here: it is the TensorRT precision on a Jetson.

    .venv/bin/python benchmarks/model_variants.py [--rounds 5] [--iterations 200]
"""

import argparse
import hashlib
import os
import sys
import tempfile
import warnings
from dataclasses import replace

import harness

from firedetd.bench import engine_only, without_per_frame
from firedetd.modelspec import ModelFile


def fp16_model_file(fp32_path, directory):
    """Convert the FP32 model to FP16 (I/O kept FP32) in `directory`; return a ModelFile, or (None, why)."""
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError as e:
        return None, "FP16 skipped: onnx and onnxconverter-common are not installed (%s)" % e
    with warnings.catch_warnings():   # one warning per weight too small for FP16: expected, and many
        warnings.simplefilter("ignore")
        model = float16.convert_float_to_float16(onnx.load(fp32_path), keep_io_types=True)
    path = os.path.join(directory, "firedetd-fp16.onnx")
    onnx.save(model, path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return ModelFile(path=path, sha256=digest, precision="fp16"), None


def measure(rounds=5, iterations=200, threads=None, progress=True):
    """Alternate engine-only runs of each variant; return per-variant figures and latency ratios vs FP32."""
    config = harness.make_config()
    if threads:
        config = harness.with_model(config, threads=threads)
    spec = harness.shipped_spec(config)
    notes = []
    fp16, why = fp16_model_file(spec.files["fp32"].path, tempfile.mkdtemp(prefix="firedetd-fp16-"))
    if fp16 is not None:
        spec = replace(spec, files=dict(spec.files, fp16=fp16))
    else:
        notes.append(why)
    variants = [v for v in ("fp32", "fp16", "int8") if v in spec.files]
    runs = harness.interleaved(rounds, {
        v: _runner(spec, replace(config.model, variant=v), iterations) for v in variants
    }, progress, "model-variants")
    base = runs["fp32"]
    result = {"rounds": rounds, "iterations": iterations, "threads": config.model.threads, "notes": notes,
              "runs": runs, "by_variant": {}}
    for v in variants:
        rs = runs[v]
        result["by_variant"][v] = {
            "file_mib": round(os.path.getsize(spec.files[v].path) / 2.0 ** 20, 2),
            "fps": harness.median_of([r["fps"] for r in rs]),
            "latency_p50_ms": harness.median_of([r["latency_ms"]["p50"] for r in rs]),
            "latency_p99_ms": harness.median_of([r["latency_ms"]["p99"] for r in rs]),
            "cpu_ms_per_frame": harness.median_of([r["cpu_ms_per_frame"] for r in rs]),
            "latency_ratio_vs_fp32": harness.ratio_summary([r["latency_ms"]["p50"] for r in rs],
                                                           [r["latency_ms"]["p50"] for r in base]),
        }
    return result


def _runner(spec, model_config, iterations):
    return lambda: without_per_frame(engine_only(spec, model_config, 1, iterations, 20))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--iterations", type=int, default=200, help="timed calls per variant per round")
    args = parser.parse_args(argv)
    result = measure(args.rounds, args.iterations, args.threads)
    path = harness.write_result("model_variants", result, args.out)
    for note in result["notes"]:
        print(note)
    for v, r in result["by_variant"].items():
        ratio = r["latency_ratio_vs_fp32"]
        print("%s: %.2f MiB, p50 %.2f ms, p99 %.2f ms, %.1f FPS, %.2f CPU ms/frame; latency / FP32 %.3f "
              "(rounds %.3f..%.3f)" % (v, r["file_mib"], r["latency_p50_ms"], r["latency_p99_ms"], r["fps"],
                                       r["cpu_ms_per_frame"], ratio["median"], ratio["min"], ratio["max"]))
    print("-> %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
