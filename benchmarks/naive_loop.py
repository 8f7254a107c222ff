"""Speed-up of the daemon's pipeline over the naive loop, on the same video and model, in the same run.

The naive loop is the shape of a typical camera script (and of the original study's): one thread does
cv2.VideoCapture.read -> cv2.resize -> cv2.cvtColor -> normalise -> session.run, frame after frame, so
decoding and inference never overlap. It uses the same ONNX model, intra-op thread count and
normalisation (from the model spec) as the daemon, and ONNX Runtime's other defaults, as a script
would; a second variant also takes the daemon's session settings (no spinning threads), so that only
the loop's structure differs.
The two run alternately (A B B A ...) in one process; the ratio is the median of the per-round ratios.

    .venv/bin/python benchmarks/naive_loop.py [--rounds 5] [--frames N] [--video FILE]

Goal: >= 1.3x on a 2-core machine.
"""

import argparse
import os
import sys

import harness

from firedetd.bench import DEFAULT_WARMUP_FRAMES, end_to_end, latency_summary, process_cpu_s, without_per_frame
from firedetd.clock import monotonic_ns

GOAL = 1.3


def naive_loop(video, spec, threads=2, frames=0, warmup=DEFAULT_WARMUP_FRAMES, spinning=True):
    """Run the naive single-thread loop over `video` (at most `frames` frames); return {fps, latency_ms, ...}.
    spinning=True keeps ONNX Runtime's default (idle threads spin), as a script would; False uses the daemon's
    session settings, so that only the loop's structure differs."""
    import cv2
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(spec.files["fp32"].path, sess_options=options, providers=["CPUExecutionProvider"])
    size = (spec.input.width, spec.input.height)
    mean = np.asarray(spec.input.mean, np.float32)
    std = np.asarray(spec.input.std, np.float32)
    capture = cv2.VideoCapture(video)
    decisions = []   # (read started ns, decided ns)
    cpu_at_warm = None
    try:
        while not frames or len(decisions) < frames:
            if len(decisions) == warmup:
                cpu_at_warm = process_cpu_s()
            started = monotonic_ns()
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(cv2.resize(bgr, size), cv2.COLOR_BGR2RGB)
            x = ((rgb.astype(np.float32) * spec.input.scale - mean) / std).transpose(2, 0, 1)[np.newaxis]
            logits = session.run(None, {spec.input.name: np.ascontiguousarray(x)})[0]
            np.exp(logits - logits.max())  # the script's softmax, for its decision
            decisions.append((started, monotonic_ns()))
    finally:
        capture.release()
    steady = decisions[warmup:]
    span_ns = steady[-1][1] - steady[0][1] if len(steady) > 1 else 0
    cpu_ms = (process_cpu_s() - cpu_at_warm) * 1000.0 / len(steady) if cpu_at_warm is not None and steady else 0.0
    return {"frames": len(decisions), "fps": round((len(steady) - 1) * 1e9 / span_ns, 2) if span_ns else 0.0,
            "latency_ms": latency_summary([(b - a) / 1e6 for a, b in steady]), "cpu_ms_per_frame": round(cpu_ms, 3)}


def compare(rounds=5, frames=0, video=None, threads=None, progress=True):
    """Alternate the naive loop and the pipeline on the same video; return the figures and the speed-up."""
    config = harness.make_config("file://" + os.path.abspath(video) if video else None)
    if threads:
        config = harness.with_model(config, threads=threads)
    spec = harness.shipped_spec(config)
    video_path = video or harness.sample_video_path()
    runs = harness.interleaved(rounds, {
        "naive": lambda: naive_loop(video_path, spec, config.model.threads, frames),
        "naive_daemon_session": lambda: naive_loop(video_path, spec, config.model.threads, frames, spinning=False),
        "pipeline": lambda: without_per_frame(end_to_end(config, spec, frames=frames)),
    }, progress, "naive-loop")
    naive, same_session, pipeline = runs["naive"], runs["naive_daemon_session"], runs["pipeline"]
    return {
        "video": os.path.relpath(video_path, harness.REPO), "threads": config.model.threads, "frames": frames,
        "rounds": rounds, "goal": GOAL,
        "speedup": harness.ratio_summary([p["fps"] for p in pipeline], [n["fps"] for n in naive]),
        "cpu_per_frame_ratio": harness.ratio_summary([n["cpu_ms_per_frame"] for n in naive],
                                                     [p["cpu_ms_per_frame"] for p in pipeline]),
        # the loop's structure alone: the naive loop with the daemon's ONNX Runtime session settings
        "speedup_same_session": harness.ratio_summary([p["fps"] for p in pipeline], [n["fps"] for n in same_session]),
        "cpu_per_frame_ratio_same_session": harness.ratio_summary([n["cpu_ms_per_frame"] for n in same_session],
                                                                  [p["cpu_ms_per_frame"] for p in pipeline]),
        "naive": naive, "naive_daemon_session": same_session, "pipeline": pipeline,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--frames", type=int, default=0, help="frames per run (default: the whole video)")
    parser.add_argument("--video", help="video file (default: the bundled sample)")
    args = parser.parse_args(argv)
    result = compare(args.rounds, args.frames, args.video, args.threads)
    path = harness.write_result("naive_loop", result, args.out)
    s, same = result["speedup"], result["speedup_same_session"]
    print("naive loop %s FPS, with the daemon's session settings %s FPS, pipeline %s FPS (medians of %d rounds)" % (
        harness.median_of([r["fps"] for r in result["naive"]]),
        harness.median_of([r["fps"] for r in result["naive_daemon_session"]]),
        harness.median_of([r["fps"] for r in result["pipeline"]]), args.rounds))
    print("speed-up over the naive loop: %.3f (rounds %.3f..%.3f; goal >= %.1f); over the naive loop with the "
          "daemon's session settings: %.3f (rounds %.3f..%.3f) -> %s"
          % (s["median"], s["min"], s["max"], GOAL, same["median"], same["min"], same["max"], path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
