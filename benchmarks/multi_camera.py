"""Multi-camera: 1, 2 and 4 cameras on the shipped model: total FPS, per-camera FPS and fairness.

Every camera watches its own copy of the source. The default source is the bundled video read as
fast as the pipeline takes it (back-pressure: every frame is decided), which measures throughput and
how batching across cameras pays; `--live` uses live test:// sources at 30 fps instead, where the
engine cannot keep up with 4 x 30 fps on these cores and the latest-frame queues drop: there fairness
shows whether the runner's round-robin shares the engine evenly.

Fairness: min/max of per-camera FPS and Jain's index (1 = even). Runs alternate (1 2 4 4 2 1 ...).

    .venv/bin/python benchmarks/multi_camera.py [--rounds 3] [--counts 1 2 4] [--live] [--seconds 20]
"""

import argparse
import sys

import harness

from firedetd.bench import end_to_end, without_per_frame

LIVE_URI = "test://?pattern=ball&fps=30&width=640&height=480"


def measure(rounds=3, counts=(1, 2, 4), live=False, seconds=20.0, frames_per_camera=0, threads=None,
            progress=True):
    """Alternate runs with each camera count; return per-round figures and per-count medians."""
    runners = {}
    spec = None
    for count in counts:
        config = harness.make_config(LIVE_URI if live else None, cameras=count)
        if threads:
            config = harness.with_model(config, threads=threads)
        spec = spec or harness.shipped_spec(config)
        runners[str(count)] = _runner(config, spec, count, live, seconds, frames_per_camera)
    runs = harness.interleaved(rounds, runners, progress, "multi-camera")
    base = runs[str(counts[0])]
    result = {"source": LIVE_URI if live else harness.sample_uri(), "live": live, "rounds": rounds,
              "seconds": seconds if live else None, "runs": runs, "by_count": {}}
    for count in counts:
        rs = runs[str(count)]
        result["by_count"][str(count)] = {
            "total_fps": harness.median_of([r["fps"] for r in rs]),
            "per_camera_fps": {name: harness.median_of([r["cameras"][name]["fps"] for r in rs])
                               for name in sorted(rs[0]["cameras"])},
            "fairness_min_over_max": harness.median_of([r["fairness"]["min_over_max"] for r in rs]),
            "fairness_jain": harness.median_of([r["fairness"]["jain"] for r in rs]),
            "latency_p50_ms": harness.median_of([r["latency_ms"]["p50"] for r in rs]),
            "latency_p99_ms": harness.median_of([r["latency_ms"]["p99"] for r in rs]),
            "dropped": harness.median_of([r["dropped"] for r in rs]),
            "scaling_vs_%d" % counts[0]: harness.ratio_summary([r["fps"] for r in rs], [r["fps"] for r in base]),
        }
    return result


def _runner(config, spec, count, live, seconds, frames_per_camera):
    frames = frames_per_camera * count
    duration = seconds if live else 0.0
    return lambda: without_per_frame(end_to_end(config, spec, frames=frames, duration_s=duration))


def format_result(result):
    lines = ["%s, %s" % (result["source"], "live" if result["live"] else "as fast as the pipeline takes it")]
    for count, r in sorted(result["by_count"].items(), key=lambda kv: int(kv[0])):
        scaling = [v for k, v in r.items() if k.startswith("scaling_vs_")][0]
        lines.append("%s camera(s): total %.1f FPS (x%.2f), per camera %s; fairness min/max %.3f, Jain %.3f; "
                     "latency p50 %.1f ms p99 %.1f ms; dropped %d" % (
                         count, r["total_fps"], scaling["median"],
                         " ".join("%.1f" % v for v in r["per_camera_fps"].values()), r["fairness_min_over_max"],
                         r["fairness_jain"], r["latency_p50_ms"], r["latency_p99_ms"], r["dropped"]))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    harness.add_common_arguments(parser, rounds=3)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4], help="camera counts (default 1 2 4)")
    parser.add_argument("--live", action="store_true", help="live test:// cameras at 30 fps instead of the video")
    parser.add_argument("--seconds", type=float, default=20.0, help="--live: seconds per run (default 20)")
    parser.add_argument("--frames", type=int, default=0, help="frames per camera per run (default: whole video)")
    args = parser.parse_args(argv)
    result = measure(args.rounds, tuple(args.counts), args.live, args.seconds, args.frames, args.threads)
    name = "multi_camera_live" if args.live else "multi_camera"
    path = harness.write_result(name, result, args.out)
    print(format_result(result))
    print("-> %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
