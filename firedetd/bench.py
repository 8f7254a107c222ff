"""`firedetd bench`: engine-only and end-to-end speed, latency and memory, measured side by side in one run.

- engine-only: a synthetic batch at the model's input shape, a warm-up, then N timed engine calls:
  FPS and latency median/p90/p99. This is the ceiling the pipeline is measured against.
- end-to-end: the daemon's real pipeline (capture thread, latest-frame queue, engine runner,
  postprocessor, outbox; no sinks) on a source, by default the bundled video decoded as fast as the
  pipeline takes it: FPS, capture->decision latency p50/p99, drops, peak RSS. `--cameras N` watches N
  copies of the source and adds per-camera FPS and fairness.

Shared machines are noisy: compare the ratios printed here (pipeline efficiency = end-to-end FPS /
engine-only FPS), measured in one run, rather than absolute times from different runs.
benchmarks/ builds its figures from the functions below (docs/benchmarks.md).
"""

import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace

from .clock import monotonic_ns

log = logging.getLogger(__name__)

DEFAULT_ENDLESS_DURATION_S = 10.0   # a camera or test:// source never ends by itself
DEFAULT_WARMUP_FRAMES = 20          # end-to-end: first decisions (engine first runs, preroll) left out
PROGRESS_INTERVAL_S = 0.5
PROGRESS_LOG_INTERVAL_S = 10.0      # stderr not a terminal (a log, a CI job): a whole line this often
PER_FRAME_KEYS = ("latencies_ms", "decided_s", "engine_ms_per_frame")


# ------------------------------------------------------------------------------------------- figures

def percentile(values, q):
    """The q-th percentile (0..100, linear interpolation) of a non-empty sequence."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def latency_summary(values_ms):
    """{count, mean, p50, p90, p99, max} of latencies in ms (zeros when there are none)."""
    if not values_ms:
        return {"count": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    return {"count": len(values_ms), "mean": round(sum(values_ms) / len(values_ms), 3),
            "p50": round(percentile(values_ms, 50), 3), "p90": round(percentile(values_ms, 90), 3),
            "p99": round(percentile(values_ms, 99), 3), "max": round(max(values_ms), 3)}


def jain_index(values):
    """Jain's fairness index of per-camera rates: 1 = perfectly even, 1/n = one camera gets everything."""
    values = [float(v) for v in values]
    squares = sum(v * v for v in values)
    return (sum(values) ** 2) / (len(values) * squares) if squares > 0 else 0.0


def process_memory_mib(pid="self"):
    """{"rss": current, "peak": high-water mark} resident memory of a process in MiB, from /proc/PID/status
    (Linux); the peak falls back to getrusage for this process where /proc is missing."""
    fields = {}
    try:
        with open("/proc/%s/status" % pid, "r") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    fields[name] = int(value.split()[0]) / 1024.0  # kB
    except OSError:
        if pid != "self":
            raise
    if "VmHWM" not in fields and pid == "self":
        import resource

        fields["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    return {"rss": round(fields.get("VmRSS", 0.0), 1), "peak": round(fields.get("VmHWM", 0.0), 1)}


def machine_info():
    """What a figure was measured on: CPU, cores, load, Python, ONNX Runtime, date."""
    info = {"nproc": os.cpu_count(), "cpu": _cpu_model(), "machine": platform.machine(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    try:
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def _cpu_model():
    try:
        with open("/proc/cpuinfo", "r") as f:
            for line in f:
                if line.startswith(("model name", "Model", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Progress(object):
    """Progress on stderr, silent when disabled. On a terminal, one line overwritten at most every
    PROGRESS_INTERVAL_S; elsewhere (a file, a pipe, the journal) whole lines without carriage returns or escape
    codes, which would garble a log: a phase's first step, one every PROGRESS_LOG_INTERVAL_S, and its last."""

    def __init__(self, enabled=True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.overwrite = _is_terminal(self.stream)
        self._last = 0.0
        self._shown = False
        self._pending = ""   # a line-mode step not written yet, written by done() as the phase's last

    def show(self, text, force=False):
        if not self.enabled:
            return
        now = time.time()
        interval = PROGRESS_INTERVAL_S if self.overwrite else PROGRESS_LOG_INTERVAL_S
        if not force and now - self._last < interval:
            self._pending = text
            return
        self._last = now
        self._shown = True
        self._pending = ""
        self.stream.write(("\r\033[Kbench: %s" if self.overwrite else "bench: %s\n") % text)
        self.stream.flush()

    def done(self):
        if self.enabled and self._shown:
            if self.overwrite:
                self.stream.write("\n")
            elif self._pending:
                self.stream.write("bench: %s\n" % self._pending)
            self.stream.flush()
        self._shown = False
        self._pending = ""
        self._last = 0.0   # the next phase announces itself at once, however soon it starts


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False


# ------------------------------------------------------------------------------------------- engine-only

def synthetic_batch(spec, batch):
    """A preprocessed (batch, 3, H, W) float32 batch of random pixels at the model's input shape."""
    import numpy as np

    from .inference.preprocess import Preprocessor

    pixels = np.random.RandomState(0).randint(0, 256, (batch, spec.input.height, spec.input.width, 3), np.uint8)
    return Preprocessor(spec.input)(pixels)


def time_engine(engine, batch, iterations, warmup, progress=None):
    """Latencies in ms of `iterations` engine.infer(batch) calls after `warmup` untimed ones."""
    progress = progress or Progress(False)
    for i in range(warmup):
        engine.infer(batch)
        progress.show("engine-only warm-up %d/%d" % (i + 1, warmup))
    latencies = []
    for i in range(iterations):
        started = monotonic_ns()
        engine.infer(batch)
        latencies.append((monotonic_ns() - started) / 1e6)
        progress.show("engine-only %d/%d" % (i + 1, iterations))
    return latencies


def engine_only(spec, model_config, batch=1, iterations=200, warmup=20, state_dir=None, progress=None,
                engine_factory=None):
    """Load the engine, time it on synthetic input; return {fps, latency_ms, batch, iterations, engine, ...}."""
    from .inference import create_engine

    model_config = replace(model_config, max_batch=max(batch, model_config.max_batch))
    engine = engine_factory() if engine_factory else create_engine(spec, model_config, state_dir)
    try:
        if batch > engine.max_batch:
            from .errors import EngineError

            raise EngineError("--batch %d exceeds what the engine takes (%d)" % (batch, engine.max_batch))
        cpu_before, started = process_cpu_s(), monotonic_ns()
        latencies = time_engine(engine, synthetic_batch(spec, batch), iterations, warmup, progress)
        cpu_s, elapsed_s = process_cpu_s() - cpu_before, (monotonic_ns() - started) / 1e9
        name, provider = engine.name, engine.provider
    finally:
        engine.close()
    total_s = sum(latencies) / 1000.0
    return {"engine": name, "provider": provider, "variant": model_config.variant, "threads": model_config.threads,
            "batch": batch, "iterations": iterations, "warmup": warmup,
            "fps": round(batch * iterations / total_s, 2) if total_s > 0 else 0.0,
            "cpu_ms_per_frame": round(cpu_s * 1000.0 / (batch * (iterations + warmup)), 3),
            "cpu_cores_used": round(cpu_s / elapsed_s, 3) if elapsed_s > 0 else 0.0,
            "latency_ms": latency_summary(latencies), "latencies_ms": latencies}


# ------------------------------------------------------------------------------------------- end-to-end

class DecisionRecorder(object):
    """The postprocessor's live-view hook: records (camera, decided_ns, latency_ms, engine_ms) of every decided
    frame and passes the call on to the daemon's own live view, if any."""

    def __init__(self, inner=None):
        self.inner = inner
        self.decisions = []   # list.append is atomic: the postprocessor thread writes, the bench thread reads len()

    def update(self, prediction, tracker):
        frame = prediction.frame
        self.decisions.append((frame.camera, prediction.decided_ns, (prediction.decided_ns - frame.captured_ns) / 1e6,
                               prediction.engine_ms))
        if self.inner is not None:
            self.inner.update(prediction, tracker)


def bench_cameras(source_uri, count, queue_size=1):
    """`count` cameras named cam0.. all watching `source_uri` (file:// read as fast as the pipeline takes it)."""
    from .config import CameraConfig, SourceConfig

    return tuple(CameraConfig(name="cam%d" % i, source=SourceConfig(uri=source_uri), queue_size=queue_size)
                 for i in range(count))


def source_is_endless(config):
    """True when some camera never ends by itself (a camera, a stream, a looped file, an endless test://)."""
    from .sources.uri import parse_test_uri

    for camera in config.active_cameras:
        source = camera.source
        if source.scheme == "file" and not source.loop:
            continue
        if source.scheme == "test" and parse_test_uri(source.uri, source).frames:
            continue
        return True
    return False


def end_to_end(config, spec, frames=0, duration_s=0.0, warmup_frames=DEFAULT_WARMUP_FRAMES, progress=None,
               engine_factory=None):
    """Run the daemon's pipeline (sinks off) until the sources end, `frames` decisions or `duration_s`; return
    {fps, latency_ms, frames, dropped, peak_rss_mib, cameras: {name: {frames, fps}}, fairness, ...}."""
    from .pipeline import Pipeline
    from .status import create_live_view

    progress = progress or Progress(False)
    if not duration_s and not frames and source_is_endless(config):
        duration_s = DEFAULT_ENDLESS_DURATION_S
    state_dir = tempfile.mkdtemp(prefix="firedetd-bench-")
    run_config = _without_sinks(config, state_dir)
    recorder = DecisionRecorder(create_live_view(run_config, spec))
    pipeline = Pipeline(run_config, spec, engine_factory=engine_factory, sink_factory=lambda cfg: [],
                        live_view=recorder)
    started = monotonic_ns()
    try:
        pipeline.start()
        running_since = monotonic_ns()
        stopped_by, cpu_ms = _wait_for_end(pipeline, recorder, frames, duration_s, running_since, warmup_frames,
                                           progress)
    finally:
        pipeline.stop(10.0)
        progress.done()
        shutil.rmtree(state_dir, ignore_errors=True)
    if pipeline.fatal_error is not None:
        raise pipeline.fatal_error
    result = summarize_decisions(recorder.decisions, [c.name for c in run_config.active_cameras], warmup_frames)
    result.update({
        "engine": pipeline.runner.engine.name if pipeline.runner and pipeline.runner.engine else None,
        "provider": pipeline.runner.engine.provider if pipeline.runner and pipeline.runner.engine else None,
        "variant": run_config.model.variant, "threads": run_config.model.threads,
        "sources": [c.source.uri for c in run_config.active_cameras],
        "stopped_by": stopped_by, "cpu_ms_per_frame": cpu_ms,
        # how much of the machine the run got: on a shared host a run's share depends on its neighbours
        "cpu_cores_used": round(cpu_ms * result["fps"] / 1000.0, 3),
        "startup_s": round((running_since - started) / 1e9, 3),
        "captured": sum(c.seq for c in pipeline.captures.values()),
        "dropped": sum(q.dropped for q in (pipeline.frame_queues.get(n) for n in pipeline.captures) if q is not None),
        "bad_frames": sum(c.frames_lost for c in pipeline.captures.values()),
        "peak_rss_mib": process_memory_mib()["peak"],
    })
    return result


def _without_sinks(config, state_dir):
    # Alerts still go through the outbox (as in the daemon), into a throw-away state dir; TensorRT plans keep
    # their usual cache so a bench on the Jetson does not rebuild the engine every time.
    cache_dir = config.model.tensorrt.cache_dir or os.path.join(config.state_dir, "engines")
    model = replace(config.model, tensorrt=replace(config.model.tensorrt, cache_dir=cache_dir))
    return replace(config, state_dir=state_dir, model=model,
                   alerts=replace(config.alerts, webhooks=(), mqtt=None, log=False))


def _wait_for_end(pipeline, recorder, frames, duration_s, started_ns, warmup_frames, progress):
    """Poll until a stop condition; return (why it stopped, process CPU ms per decided frame after the warm-up)."""
    start = (process_cpu_s(), 0)
    warm = None   # (process CPU seconds, decisions) once the warm-up frames are decided
    while True:
        time.sleep(0.05)
        decided = len(recorder.decisions)
        if warm is None and decided >= warmup_frames:
            warm = (process_cpu_s(), decided)
        elapsed_s = (monotonic_ns() - started_ns) / 1e9
        progress.show("end-to-end %d frames decided, %.0f s" % (decided, elapsed_s))
        stopped_by = _stop_reason(pipeline, decided, frames, duration_s, elapsed_s)
        if stopped_by:
            # a run too short to see past its warm-up is priced whole, start-up included
            mark = warm if warm is not None and decided > warm[1] else start
            counted = decided - mark[1]
            return stopped_by, round((process_cpu_s() - mark[0]) * 1000.0 / counted, 3) if counted > 0 else 0.0


def _stop_reason(pipeline, decided, frames, duration_s, elapsed_s):
    if pipeline.fatal_error is not None:
        return "error"
    if frames and decided >= frames:
        return "frames"
    if duration_s and elapsed_s >= duration_s:
        return "duration"
    if pipeline.finished_sources() and pipeline.drained():
        return "end of sources"
    return None


def process_cpu_s():
    """User + system CPU seconds of this process, all threads (GStreamer's and ONNX Runtime's included)."""
    times = os.times()
    return times[0] + times[1]


def summarize_decisions(decisions, cameras, warmup_frames=DEFAULT_WARMUP_FRAMES):
    """FPS, latency and per-camera figures from [(camera, decided_ns, latency_ms, engine_ms)], leaving out the first
    `warmup_frames` decisions. Per-camera FPS is counted over the window in which every camera was still
    delivering, so a camera whose file ended early does not look slow."""
    ordered = sorted(decisions, key=lambda d: d[1])
    steady = ordered[warmup_frames:] if len(ordered) > warmup_frames + 1 else ordered
    result = {"frames": len(ordered), "warmup_frames": len(ordered) - len(steady),
              "latency_ms": latency_summary([d[2] for d in steady]), "latencies_ms": [d[2] for d in steady],
              "decided_s": [round((d[1] - steady[0][1]) / 1e9, 4) for d in steady],
              "engine_ms_per_frame": [d[3] for d in steady]}
    result["fps"] = round(_rate(steady), 2)
    result["window_s"] = round((steady[-1][1] - steady[0][1]) / 1e9, 3) if len(steady) > 1 else 0.0
    # the share of the window the engine was computing: near 1 means the pipeline keeps the engine fed
    engine_s = sum(d[3] for d in steady[1:]) / 1000.0
    result["engine_ms"] = latency_summary([d[3] for d in steady])
    result["engine_busy"] = round(engine_s / result["window_s"], 3) if result["window_s"] > 0 else 0.0
    result["cameras"] = per_camera_rates(steady, cameras)
    rates = [c["fps"] for c in result["cameras"].values()]
    result["fairness"] = {"min_over_max": round(min(rates) / max(rates), 3) if rates and max(rates) > 0 else 0.0,
                          "jain": round(jain_index(rates), 3) if rates else 0.0}
    return result


def _rate(decisions):
    if len(decisions) < 2:
        return 0.0
    span_ns = decisions[-1][1] - decisions[0][1]
    return (len(decisions) - 1) * 1e9 / span_ns if span_ns > 0 else 0.0


def per_camera_rates(decisions, cameras):
    """{camera: {frames, fps}} over the common window [first decision, the earliest camera's last decision]."""
    if not decisions:
        return {name: {"frames": 0, "fps": 0.0} for name in cameras}
    last_of = {}
    for decision in decisions:
        last_of[decision[0]] = decision[1]
    start = decisions[0][1]
    end = min(last_of.get(name, start) for name in cameras)
    rates = {}
    for name in cameras:
        count = sum(1 for d in decisions if d[0] == name and d[1] <= end)
        span_s = (end - start) / 1e9
        rates[name] = {"frames": sum(1 for d in decisions if d[0] == name),
                       "fps": round(count / span_s, 2) if span_s > 0 else 0.0}
    return rates


# ------------------------------------------------------------------------------------------- command line

def add_arguments(parser):
    parser.add_argument("-c", "--config", help="YAML config whose model and detection settings are benched "
                                               "(default: built-in defaults, the shipped model)")
    parser.add_argument("--mode", choices=("both", "engine", "end-to-end"), default="both",
                        help="what to measure (default: both, side by side)")
    from .inference import ENGINE_CHOICES

    parser.add_argument("--engine", choices=ENGINE_CHOICES, help="inference backend")
    parser.add_argument("--variant", help="model file of the spec ONNX Runtime loads (fp32, int8, ...)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: the config's)")
    parser.add_argument("--batch", type=int, default=1, help="engine-only batch size (default 1)")
    parser.add_argument("--iterations", type=int, default=200, help="engine-only timed calls (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="engine-only untimed calls first; end-to-end: "
                                                               "first decisions left out (default 20)")
    parser.add_argument("--source", metavar="URI", help="end-to-end source (default: the bundled video, decoded "
                                                        "as fast as the pipeline takes it)")
    parser.add_argument("--cameras", type=int, default=1, metavar="N", help="watch N copies of the source")
    parser.add_argument("--frames", type=int, default=0, metavar="N", help="end-to-end: stop after N decisions")
    parser.add_argument("--duration", type=float, default=0.0, metavar="SECONDS",
                        help="end-to-end: stop after this long (default: at the end of a file; %d s for endless "
                             "sources)" % DEFAULT_ENDLESS_DURATION_S)
    parser.add_argument("--no-snapshots", action="store_true", help="leave out the snapshot branch (as "
                                                                    "detection.snapshot.enabled: false)")
    parser.add_argument("--state-dir", help="where a TensorRT plan cache is kept (default: the config's)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")


def bench_config(args):
    """The Config to bench: the YAML's (or the defaults), with the command line's model and source choices."""
    from .config import build_config, read_yaml
    from .errors import ConfigError
    from .paths import sample_video_path

    raw = read_yaml(args.config) if args.config else {}
    raw = dict(raw or {})
    model = dict(raw.get("model") or {})
    for key, value in (("engine", args.engine), ("variant", args.variant), ("threads", args.threads)):
        if value is not None:
            model[key] = value
    raw["model"] = model
    if args.state_dir:
        raw["state_dir"] = args.state_dir
    if args.no_snapshots:
        detection = dict(raw.get("detection") or {})
        detection["snapshot"] = dict(detection.get("snapshot") or {}, enabled=False)
        raw["detection"] = detection
    if args.cameras < 1:
        raise ConfigError("--cameras: must be at least 1")
    config = build_config(raw)
    source = args.source or (config.active_cameras[0].source.uri if args.config else "file://" + sample_video_path())
    return replace(config, cameras=bench_cameras(source, args.cameras))


def run_bench(config, mode="both", batch=1, iterations=200, warmup=20, frames=0, duration_s=0.0, progress=None):
    """Both measurements in one process, one after the other; returns the report dict (see format_report)."""
    from .modelspec import load_spec

    spec = load_spec(config.model.spec)
    report = {"model": {"name": spec.name, "version": spec.version, "spec": spec.spec_path},
              "machine": machine_info()}
    if mode in ("both", "engine"):
        report["engine_only"] = engine_only(spec, config.model, batch, iterations, warmup,
                                            state_dir=config.state_dir, progress=progress)
        if progress is not None:
            progress.done()
    if mode in ("both", "end-to-end"):
        report["end_to_end"] = end_to_end(config, spec, frames, duration_s, warmup_frames=warmup, progress=progress)
    if "engine_only" in report and "end_to_end" in report and report["engine_only"]["fps"] > 0:
        report["efficiency"] = round(report["end_to_end"]["fps"] / report["engine_only"]["fps"], 3)
    report["peak_rss_mib"] = process_memory_mib()["peak"]
    return report


def without_samples(report):
    """The report without the per-frame lists (for printing; benchmarks keep them for plots)."""
    slim = dict(report)
    for key in ("engine_only", "end_to_end"):
        if key in slim:
            slim[key] = without_per_frame(slim[key])
    return slim


def without_per_frame(result):
    """One measurement's dict without its per-frame lists (PER_FRAME_KEYS)."""
    return {k: v for k, v in result.items() if k not in PER_FRAME_KEYS}


def format_report(report):
    """The human-readable table."""
    lines = ["model %s %s on %s (%s cores, %s), load %s" % (
        report["model"]["name"], report["model"]["version"], report["machine"]["cpu"], report["machine"]["nproc"],
        report["machine"]["machine"], " ".join("%.2f" % x for x in report["machine"].get("loadavg", [])))]
    lines.append("%-12s %-32s %8s  %-28s %s" % ("mode", "engine", "FPS", "latency ms p50 / p90 / p99", "notes"))
    eo = report.get("engine_only")
    if eo:
        lat = eo["latency_ms"]
        lines.append("%-12s %-32s %8.1f  %-28s %s" % (
            "engine-only", _engine_label(eo), eo["fps"], "%.1f / %.1f / %.1f" % (lat["p50"], lat["p90"], lat["p99"]),
            "batch %d, %d iterations after %d warm-up" % (eo["batch"], eo["iterations"], eo["warmup"])))
    e2e = report.get("end_to_end")
    if e2e:
        lat = e2e["latency_ms"]
        lines.append("%-12s %-32s %8.1f  %-28s %s" % (
            "end-to-end", _engine_label(e2e), e2e["fps"], "%.1f / %.1f / %.1f" % (lat["p50"], lat["p90"], lat["p99"]),
            "capture->decision; %d frames (%d warm-up), %d dropped, peak RSS %.0f MiB" % (
                e2e["frames"], e2e["warmup_frames"], e2e["dropped"], e2e["peak_rss_mib"])))
        if len(e2e["cameras"]) > 1:
            lines.append("  per camera: %s; fairness min/max %.3f, Jain %.3f" % (
                ", ".join("%s %.1f FPS" % (name, c["fps"]) for name, c in sorted(e2e["cameras"].items())),
                e2e["fairness"]["min_over_max"], e2e["fairness"]["jain"]))
    if "efficiency" in report:
        lines.append("pipeline efficiency (end-to-end FPS / engine-only FPS, this run): %.3f" % report["efficiency"])
    return "\n".join(lines)


def _engine_label(result):
    return "%s %s %s %dt" % (result["engine"], (result["provider"] or "").replace("ExecutionProvider", ""),
                             result["variant"], result["threads"])


def run(args):
    """Entry point of `firedetd bench`."""
    from .cli import setup_logging

    if getattr(args, "import_error", None):
        from .errors import FiredetdError

        raise FiredetdError("bench cannot run: %s" % args.import_error)
    setup_logging("warning", args.debug)
    config = bench_config(args)
    progress = Progress(enabled=not args.quiet)
    report = run_bench(config, args.mode, args.batch, args.iterations, args.warmup, args.frames, args.duration,
                       progress)
    slim = without_samples(report)
    print(json.dumps(slim, indent=2, sort_keys=True) if args.json else format_report(slim))
    return 0
