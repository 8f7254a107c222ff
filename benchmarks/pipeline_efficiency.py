"""Pipeline efficiency: end-to-end FPS / engine-only FPS, same model, backend and run.

Each round runs, in alternating order, in one process:
- engine-only: the engine on a synthetic batch at the model's shape (the ceiling);
- end-to-end: the daemon's pipeline on the bundled video, decoded as fast as the pipeline takes it;
- no-inference: the same pipeline with an engine that returns at once, which prices decoding,
  scaling and the pipeline's own per-frame work (CPU ms per frame).

On a 2-core machine the decoder competes with the engine for the cores, so the efficiency cannot
reach 1 unless the engine leaves a core idle; the bound printed beside it is engine / (engine + decode)
with both as CPU time per frame, i.e. what is left when nothing overlaps.

    .venv/bin/python benchmarks/pipeline_efficiency.py [--rounds 5] [--frames N] [--threads 2 1]

Each is run with 2 and 1 ONNX Runtime intra-op threads (2 is the config's default).

Goal: >= 0.9.
"""

import argparse
import sys

import harness

from firedetd.bench import end_to_end, engine_only, without_per_frame

GOAL = 0.9


class NoInferenceEngine(object):
    """An engine that answers 'none' at once: what the pipeline costs without inference."""

    name = "none"
    provider = "no inference"
    max_batch = 64

    def __init__(self, classes=3):
        self.classes = classes

    def infer(self, batch):
        import numpy as np

        out = np.zeros((len(batch), self.classes), np.float32)
        out[:, -1] = 1.0
        return out

    def close(self):
        pass


def measure(rounds=5, frames=0, iterations=200, threads=(2, 1), progress=True, config_raw=None):
    """Alternate engine-only and end-to-end runs for each ONNX Runtime thread count, and no-inference runs; return
    per-round figures and, per thread count, the efficiency and its no-overlap bound."""
    base = harness.make_config(raw=config_raw)
    spec = harness.shipped_spec(base)
    runners = {}
    for t in threads:
        config = harness.with_model(base, threads=t)
        runners["engine_only_%dt" % t] = _engine_runner(spec, config, iterations)
        runners["end_to_end_%dt" % t] = _pipeline_runner(spec, config, frames)
    no_inference = lambda: NoInferenceEngine(len(spec.labels))  # noqa: E731
    runners["no_inference"] = _pipeline_runner(spec, base, frames, no_inference)
    # the snapshot branch is the largest part of the pipeline's own cost: priced separately
    runners["no_inference_no_snapshots"] = _pipeline_runner(spec, _without_snapshots(base), frames, no_inference)
    runs = harness.interleaved(rounds, runners, progress, "pipeline-efficiency")
    bare = runs["no_inference"]
    result = {"frames": frames, "iterations": iterations, "rounds": rounds, "goal": GOAL, "runs": runs,
              "no_inference_cpu_ms_per_frame": harness.median_of([b["cpu_ms_per_frame"] for b in bare]),
              "no_inference_no_snapshots_cpu_ms_per_frame": harness.median_of(
                  [b["cpu_ms_per_frame"] for b in runs["no_inference_no_snapshots"]]),
              "by_threads": {}}
    for t in threads:
        engine, e2e = runs["engine_only_%dt" % t], runs["end_to_end_%dt" % t]
        # the no-overlap bound per round: engine CPU / (engine CPU + the pipeline's CPU without inference)
        bounds = [e["cpu_ms_per_frame"] / (e["cpu_ms_per_frame"] + b["cpu_ms_per_frame"]) for e, b in zip(engine, bare)]
        result["by_threads"][str(t)] = {
            "engine_only_fps": harness.median_of([r["fps"] for r in engine]),
            "end_to_end_fps": harness.median_of([r["fps"] for r in e2e]),
            "engine_only_cpu_ms_per_frame": harness.median_of([r["cpu_ms_per_frame"] for r in engine]),
            "end_to_end_cpu_ms_per_frame": harness.median_of([r["cpu_ms_per_frame"] for r in e2e]),
            "end_to_end_latency_p50_ms": harness.median_of([r["latency_ms"]["p50"] for r in e2e]),
            "end_to_end_latency_p99_ms": harness.median_of([r["latency_ms"]["p99"] for r in e2e]),
            "engine_only_cores_used": harness.median_of([r["cpu_cores_used"] for r in engine]),
            "end_to_end_cores_used": harness.median_of([r["cpu_cores_used"] for r in e2e]),
            "engine_busy_in_pipeline": harness.median_of([r["engine_busy"] for r in e2e]),
            "efficiency": harness.ratio_summary([r["fps"] for r in e2e], [r["fps"] for r in engine]),
            # the share of the pipeline's CPU per frame that is inference: robust where wall time is not
            "cpu_efficiency": harness.ratio_summary([r["cpu_ms_per_frame"] for r in engine],
                                                    [r["cpu_ms_per_frame"] for r in e2e]),
            "no_overlap_bound": {"median": harness.median_of(bounds), "rounds": [round(b, 3) for b in bounds]},
        }
    return result


def _without_snapshots(config):
    from dataclasses import replace

    detection = config.detection
    return replace(config, detection=replace(detection, snapshot=replace(detection.snapshot, enabled=False)))


def _engine_runner(spec, config, iterations):
    return lambda: without_per_frame(engine_only(spec, config.model, 1, iterations, 20))


def _pipeline_runner(spec, config, frames, engine_factory=None):
    return lambda: without_per_frame(end_to_end(config, spec, frames=frames, engine_factory=engine_factory))


def format_result(result):
    """One line per thread count: FPS, CPU per frame, efficiency and its bound."""
    lines = ["no inference: %.2f CPU ms/frame (decode, scale, convert, snapshot, queue, postprocess); %.2f without "
             "the snapshot branch" % (result["no_inference_cpu_ms_per_frame"],
                                      result["no_inference_no_snapshots_cpu_ms_per_frame"])]
    for t, r in sorted(result["by_threads"].items()):
        e, c = r["efficiency"], r["cpu_efficiency"]
        lines.append("threads %s: engine-only %.1f FPS (%.2f CPU ms/frame, %.2f cores), end-to-end %.1f FPS (%.2f CPU "
                     "ms/frame, %.2f cores)" % (
                         t, r["engine_only_fps"], r["engine_only_cpu_ms_per_frame"], r["engine_only_cores_used"],
                         r["end_to_end_fps"], r["end_to_end_cpu_ms_per_frame"], r["end_to_end_cores_used"]))
        lines.append("  efficiency %.3f (rounds %.3f..%.3f; goal >= %.1f); CPU-time efficiency %.3f (rounds "
                     "%.3f..%.3f), no-overlap bound %.3f; engine busy %.3f of the pipeline's time" % (
                         e["median"], e["min"], e["max"], GOAL, c["median"], c["min"], c["max"],
                         r["no_overlap_bound"]["median"], r["engine_busy_in_pipeline"]))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--out", help="write results here instead of benchmarks/results/pipeline_efficiency/")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="ONNX Runtime intra-op thread "
                                                                               "counts to compare (default: 2 1)")
    parser.add_argument("--frames", type=int, default=0, help="frames per end-to-end run (default: whole video)")
    parser.add_argument("--iterations", type=int, default=200, help="engine-only calls per round (default 200)")
    args = parser.parse_args(argv)
    result = measure(args.rounds, args.frames, args.iterations, tuple(args.threads))
    path = harness.write_result("pipeline_efficiency", result, args.out)
    print(format_result(result))
    print("-> %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
