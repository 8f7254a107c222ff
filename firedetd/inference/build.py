"""Build TensorRT plans from the ONNX model, and keep them in a cache keyed by everything a plan depends on.

A plan (serialized engine) runs only on the TensorRT version and the GPU that built it: its kernels
were picked by timing them on that GPU, and its format changes between TensorRT releases. So the
cache key holds the TensorRT version, the GPU name and compute capability, the model's sha256, the
precision and the batch profile, and a JSON sidecar next to each `<key>.plan` repeats those fields
with the plan's own sha256. A plan is used only when all of them match; anything else (a plan from
another JetPack or board, a changed model, a truncated file, a missing sidecar) is rebuilt with one
warning. `firedetd build-engine` builds ahead of time into the same cache the daemon reads.

TensorRT API generations (feature-detected): workspace through `max_workspace_size` on 8.2, through
`set_memory_pool_limit(MemoryPoolType.WORKSPACE, n)` from 8.4 (10.x removed the former); build
progress through `IProgressMonitor` where it exists (10.x), else a heartbeat line while
`build_serialized_network` runs (minutes on a Nano, silent otherwise).
"""

import datetime
import glob
import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
import weakref
from dataclasses import dataclass, replace
from typing import Optional, Tuple

from ..errors import EngineError, ModelError
from ..modelspec import sha256_file, verify_model_file
from .calibrate import (
    Calibration,
    calibration_batches,
    default_calibration_path,
    list_calibration_images,
    make_entropy_calibrator,
    write_atomically,
)

log = logging.getLogger(__name__)

SIDECAR_FORMAT = "firedetd-tensorrt-plan/1"
NANO_INT8_MESSAGE = ("INT8 needs a GPU with INT8 tensor cores/DP4A (Xavier, Orin); the Jetson Nano (Maxwell) has "
                     "none: use fp16")
_ABSENT = "absent"
# fields that must match for a cached plan to be used, in the order a mismatch is reported
MATCH_FIELDS = ("trt_version", "gpu_name", "compute_capability", "model_sha256", "precision", "max_batch",
                "input_shape_chw", "calibration_sha256", "tactic_sources")
# sidecars written before a field existed hold what was then always true
_FIELD_DEFAULTS = {"tactic_sources": "all"}
# model.tensorrt.tactic_sources: "tensorrt" leaves out the tactic sources that are whole libraries. Loading and
# initialising them is most of TensorRT's memory beside the plan: "Init cuBLAS/cuBLASLt: CPU +159, GPU +182" and
# "Init cuDNN: CPU +240, GPU +241" MiB (NVIDIA/TensorRT#2217), cuDNN alone CPU +617, GPU +586 MiB on a Jetson
# Xavier NX (NVIDIA/TensorRT#3917); on a Jetson both columns are the same 4 GB.
LIBRARY_TACTIC_SOURCES = ("CUBLAS", "CUBLAS_LT", "CUDNN")
TACTIC_SOURCE_CHOICES = ("all", "tensorrt")


@dataclass(frozen=True)
class BuildReport:
    plan_path: str
    plan_sha256: str
    plan_bytes: int
    trt_version: str
    precision_requested: str
    precision_built: str        # fp32 when fp16 was asked of a GPU without fast fp16
    max_batch: int
    opt_batch: int
    seconds: float
    timing_cache_path: str      # "" when none
    timing_cache_loaded: bool   # an earlier timing cache was accepted (rebuilds are faster)
    warnings: Tuple[str, ...]


# ---------------------------------------------------------------------------------------------------------------
# TensorRT logger and progress


# TensorRT keeps one logger per process: while any Builder, Runtime or Refitter lives, a logger given to a new one is
# ignored ("TensorRT maintains only a single logger pointer at any given time, so the existing value ... will be
# used instead", TensorRT 8.0/8.2, NVIDIA/TensorRT issues 1475 and 1539). The engine holds a Runtime while it builds
# a plan, so a builder with a logger of its own saw its errors go to the Runtime's logger and reported "no reason
# given". Every TensorRT object of this process gets the same logger from process_logger().
_PROCESS_LOGGERS = weakref.WeakKeyDictionary()   # tensorrt module -> its logger (tests load several fake modules)
_PROCESS_LOGGERS_LOCK = threading.Lock()


def process_logger(trt):
    """The one logger this process gives every Builder, Runtime and OnnxParser of this tensorrt module."""
    with _PROCESS_LOGGERS_LOCK:
        logger = _PROCESS_LOGGERS.get(trt)
        if logger is None:
            logger = _PROCESS_LOGGERS[trt] = make_logger(trt)
        return logger


def make_logger(trt):
    """A trt.ILogger that forwards TensorRT's warnings and errors to Python logging and keeps the last error; use
    process_logger() for the one TensorRT actually calls."""
    severity = trt.ILogger.Severity
    errors = (severity.INTERNAL_ERROR, severity.ERROR)

    class FiredetdTensorRTLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self._last_error = ""
            self.quiet = False   # set while a failure is expected and reported by the caller in its own words

        def log(self, level, msg):
            if level in errors:
                self._last_error = msg
                log.log(logging.DEBUG if self.quiet else logging.ERROR, "TensorRT: %s", msg)
            elif level == severity.WARNING:
                log.info("TensorRT warning: %s", msg)   # TensorRT warns a lot during builds; none need action
            # INFO and VERBOSE are dropped here: a Python call per verbose line slows builds down

        def remember_error(self, msg):
            self._last_error = msg

        def forget_errors(self):
            """Called before an operation whose failure is reported with last_error(): the logger is shared, so
            an error of an earlier, handled operation must not be reported as this one's reason."""
            self._last_error = ""

        def last_error(self):
            return self._last_error

    return FiredetdTensorRTLogger()


def _progress_writer(progress):
    if callable(progress):
        return progress
    if not progress:
        return None
    lock = threading.Lock()

    def write(line):
        with lock:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
    return write


def _make_progress_monitor(trt, say):
    base = trt.IProgressMonitor

    class BuildProgress(base):
        """Reports top-level build phases and their steps; TensorRT calls it from several threads."""

        def __init__(self):
            base.__init__(self)
            self._steps = {}
            self._lock = threading.Lock()

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                self._steps[phase_name] = (num_steps, parent_phase is None)
            if parent_phase is None:
                say("TensorRT: %s (%d steps)" % (phase_name, num_steps))

        def step_complete(self, phase_name, step):
            num_steps, top = self._steps.get(phase_name, (0, False))
            if top:
                say("TensorRT: %s %d/%d" % (phase_name, step + 1, num_steps))
            return True   # False would cancel the build

        def phase_finish(self, phase_name):
            if self._steps.get(phase_name, (0, False))[1]:
                say("TensorRT: %s done" % phase_name)

    return BuildProgress()


class _Heartbeat(object):
    """A thread printing elapsed seconds while a build that reports nothing runs (TensorRT < 10)."""

    def __init__(self, say, interval_s):
        self._say = say
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trt-build-heartbeat")
        self._thread.daemon = True
        self.failures = 0

    def __enter__(self):
        self._started = time.monotonic()
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self._interval_s):
            try:
                self._say("TensorRT: building engine... %d s" % (time.monotonic() - self._started))
            except Exception:  # a broken stderr must not end the build
                self.failures += 1
                log.exception("build heartbeat failed")

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5.0)


class _NoProgress(object):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _build_progress(trt, config, say, heartbeat_s):
    if say is None:
        return _NoProgress(), None
    if hasattr(trt, "IProgressMonitor") and hasattr(config, "progress_monitor"):
        monitor = _make_progress_monitor(trt, say)
        config.progress_monitor = monitor
        return _NoProgress(), monitor   # the caller keeps the monitor alive while TensorRT uses it
    return _Heartbeat(say, heartbeat_s), None


# ---------------------------------------------------------------------------------------------------------------
# building


def trt_major(trt):
    """Major version of a tensorrt module (8 on JetPack 4.6)."""
    return int(str(trt.__version__).split(".")[0])


def _network_flags(trt):
    # explicit batch is a flag up to 8.x; 10.x made it the only mode and deprecated the flag
    if trt_major(trt) >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def _parse_onnx(trt, network, logger, onnx_path):
    parser = trt.OnnxParser(network, logger)
    try:
        with open(onnx_path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ModelError("%s: cannot read ONNX model (%s)" % (onnx_path, e.strerror or e))
    if parser.parse(data):
        return parser
    problems = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        node = error.node() if hasattr(error, "node") else -1
        problems.append("%s%s" % (error.desc(), " (node %d)" % node if node >= 0 else ""))
    raise EngineError("TensorRT %s cannot parse %s: %s" % (trt.__version__, onnx_path,
                                                           "; ".join(problems) or "no reason given"))


def _check_network_input(network, input_name, input_shape_chw, onnx_path):
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    names = [t.name for t in inputs]
    if input_name not in names:
        raise ModelError("%s: has inputs %s, the model spec names %r" % (onnx_path, names, input_name))
    shape = tuple(int(d) for d in inputs[names.index(input_name)].shape)
    if len(shape) != 4 or tuple(shape[1:]) != tuple(input_shape_chw):
        raise ModelError("%s: input %r has shape %s, the model spec says (N, %s)"
                         % (onnx_path, input_name, shape, ", ".join(str(d) for d in input_shape_chw)))


def _choose_precision(builder, precision):
    """The precision to build and the warnings it costs; INT8 on a GPU without fast INT8 is refused."""
    # 10.x deprecates platform_has_fast_*; where they are gone the GPU is new enough to have both
    fast_fp16 = getattr(builder, "platform_has_fast_fp16", True)
    fast_int8 = getattr(builder, "platform_has_fast_int8", True)
    if precision == "int8" and not fast_int8:
        raise EngineError(NANO_INT8_MESSAGE)
    if precision == "fp16" and not fast_fp16:
        message = "this GPU has no fast FP16; building an FP32 engine instead (slower, same results)"
        log.warning("TensorRT: %s", message)
        return "fp32", (message,)
    return precision, ()


def _set_workspace(config, trt, workspace_mib):
    limit = int(workspace_mib) << 20
    if hasattr(config, "set_memory_pool_limit") and hasattr(trt, "MemoryPoolType"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, limit)   # 8.4+
    else:
        config.max_workspace_size = limit   # 8.2 (JetPack 4.6)


def _add_profiles(builder, config, input_name, input_shape_chw, max_batch, opt_batch, calibration_batch):
    chw = tuple(int(d) for d in input_shape_chw)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (1,) + chw, (opt_batch,) + chw, (max_batch,) + chw)
    config.add_optimization_profile(profile)
    if calibration_batch and hasattr(config, "set_calibration_profile"):
        # calibration runs at one fixed shape: the calibrator's batch size
        calib = builder.create_optimization_profile()
        shape = (calibration_batch,) + chw
        calib.set_shape(input_name, shape, shape, shape)
        config.set_calibration_profile(calib)


def _load_timing_cache(config, path):
    """Attach a timing cache (read from path when it exists); True when an earlier one was accepted."""
    if not path or not hasattr(config, "create_timing_cache"):
        return False
    data = b""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            data = f.read()
    cache = config.create_timing_cache(data)
    if config.set_timing_cache(cache, False):
        return bool(data)
    log.info("timing cache %s belongs to another GPU or TensorRT version; starting an empty one", path)
    config.set_timing_cache(config.create_timing_cache(b""), False)
    return False


def _save_timing_cache(config, path):
    if not path or not hasattr(config, "get_timing_cache"):
        return
    cache = config.get_timing_cache()
    if cache is not None:
        write_atomically(path, bytes(memoryview(cache.serialize())))


def _check_int8_calibration(calibration):
    if calibration is None:
        raise EngineError("INT8 needs a calibration cache; write one with `firedetd build-engine --calibrate DIR` "
                          "on a machine with TensorRT and an INT8-capable GPU")
    if calibration.batches is None and not os.path.isfile(calibration.cache_path):
        raise EngineError("INT8 calibration cache %s not found; write it with `firedetd build-engine --calibrate "
                          "DIR` on a machine with TensorRT and an INT8-capable GPU" % calibration.cache_path)


def _set_tactic_sources(config, trt, tactic_sources):
    """"all": TensorRT's default; "tensorrt": only its own kernels, without cuBLAS, cuBLASLt and cuDNN."""
    if tactic_sources == "all":
        return
    sources = getattr(trt, "TacticSource", None)
    if sources is None or not hasattr(config, "set_tactic_sources"):
        raise EngineError("model.tensorrt.tactic_sources: TensorRT %s cannot choose tactic sources (7.2 and newer "
                          "can); use tactic_sources: all" % trt.__version__)
    library_bits = 0
    for name in LIBRARY_TACTIC_SOURCES:
        member = getattr(sources, name, None)   # TensorRT 10 has deprecated some of them; absent ones are off
        if member is not None:
            library_bits |= 1 << int(member)
    if not config.set_tactic_sources(config.get_tactic_sources() & ~library_bits):
        raise EngineError("TensorRT %s refused the tactic sources without cuBLAS, cuBLASLt and cuDNN"
                          % trt.__version__)


def _make_config(trt, builder, precision, workspace_mib, input_name, input_shape_chw, max_batch, opt_batch,
                 calibration, tactic_sources="all"):
    config = builder.create_builder_config()
    _set_workspace(config, trt, workspace_mib)
    _set_tactic_sources(config, trt, tactic_sources)
    calibrator = None
    if precision in ("fp16", "int8") and getattr(builder, "platform_has_fast_fp16", True):
        config.set_flag(trt.BuilderFlag.FP16)   # with INT8 too: layers without INT8 kernels fall back to FP16
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = make_entropy_calibrator(trt, calibration)
        config.int8_calibrator = calibrator
    _add_profiles(builder, config, input_name, input_shape_chw, max_batch, opt_batch,
                  calibration.batch_size if precision == "int8" else 0)
    return config, calibrator


def build_engine(onnx_path: str, plan_path: str, precision: str, workspace_mib: int, max_batch: int,
                 input_name: str, input_shape_chw: Tuple[int, int, int], calibration: Optional[Calibration] = None,
                 timing_cache_path: Optional[str] = None, progress: object = True, trt: object = None,
                 opt_batch: Optional[int] = None, heartbeat_s: float = 15.0,
                 tactic_sources: str = "all") -> BuildReport:
    """Build a plan from an ONNX file with a 1..max_batch batch profile and write it atomically to plan_path.

    opt_batch defaults to max_batch: TensorRT times its kernels at the opt shape, and the batch of all
    cameras is the one that bounds the frame rate; smaller batches still run, on kernels tuned for it.
    """
    if trt is None:
        from .tensorrt import import_tensorrt
        trt = import_tensorrt()
    if precision not in ("fp16", "fp32", "int8"):
        raise EngineError("precision %r must be fp16, fp32 or int8" % precision)
    if tactic_sources not in TACTIC_SOURCE_CHOICES:
        raise EngineError("tactic sources %r must be one of %s" % (tactic_sources, ", ".join(TACTIC_SOURCE_CHOICES)))
    opt_batch = max(1, min(max_batch, opt_batch or max_batch))
    say = _progress_writer(progress)
    started = time.monotonic()
    logger = process_logger(trt)
    logger.forget_errors()
    builder = trt.Builder(logger)
    built, warnings = _choose_precision(builder, precision)
    if built == "int8":
        _check_int8_calibration(calibration)
    network = builder.create_network(_network_flags(trt))
    parser = _parse_onnx(trt, network, logger, onnx_path)
    _check_network_input(network, input_name, input_shape_chw, onnx_path)
    config, calibrator = _make_config(trt, builder, built, workspace_mib, input_name, input_shape_chw, max_batch,
                                      opt_batch, calibration, tactic_sources)
    timing_loaded = _load_timing_cache(config, timing_cache_path)
    if say:
        say("TensorRT %s: building a %s engine from %s (batch 1..%d%s); this takes minutes on a Jetson Nano"
            % (trt.__version__, built.upper(), os.path.basename(onnx_path), max_batch,
               "" if tactic_sources == "all" else ", TensorRT's own kernels only: no cuBLAS, cuBLASLt or cuDNN"))
    progress_context, monitor = _build_progress(trt, config, say, heartbeat_s)
    with progress_context:
        plan = builder.build_serialized_network(network, config)
    del monitor, parser
    if calibrator is not None and calibrator.error is not None:
        raise EngineError("INT8 calibration failed: %s" % calibrator.error)
    if plan is None:
        raise EngineError("TensorRT %s could not build an engine from %s: %s (a larger --workspace-mib helps when "
                          "no kernel fits)" % (trt.__version__, onnx_path, logger.last_error() or "no reason given"))
    data = bytes(memoryview(plan))
    write_atomically(plan_path, data)
    _save_timing_cache(config, timing_cache_path)
    seconds = time.monotonic() - started
    if say:
        say("TensorRT: built %s (%.1f MiB) in %.0f s" % (plan_path, len(data) / 1048576.0, seconds))
    return BuildReport(plan_path=plan_path, plan_sha256=_sha256_bytes(data), plan_bytes=len(data),
                       trt_version=str(trt.__version__), precision_requested=precision, precision_built=built,
                       max_batch=max_batch, opt_batch=opt_batch, seconds=seconds,
                       timing_cache_path=timing_cache_path or "", timing_cache_loaded=timing_loaded,
                       warnings=tuple(warnings))


def _sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# the plan cache


def default_cache_dir(model_config, state_dir):
    """model.tensorrt.cache_dir, or <state_dir>/engines."""
    return model_config.tensorrt.cache_dir or os.path.join(state_dir, "engines")


def _safe(text):
    return re.sub(r"[^A-Za-z0-9.]+", "_", str(text)).strip("_") or "x"


def plan_cache_key(trt_version, gpu_name, compute_capability, model_sha256, precision, max_batch,
                   calibration_sha256=None, tactic_sources="all"):
    # type: (str, str, str, str, str, int, Optional[str], str) -> str
    """A file-name-safe key naming the plan for these fields; any change in any field gives another key."""
    fields = [trt_version, gpu_name, compute_capability, model_sha256, precision, int(max_batch),
              calibration_sha256 or ""]
    if tactic_sources != "all":   # keys of plans built before the option existed stay the same
        fields.append("tactic_sources=" + tactic_sources)
    digest = _sha256_bytes("\n".join(str(f) for f in fields).encode("utf-8"))[:12]
    return "firedetd-%s-%s-b%d-trt%s-sm%s-%s" % (model_sha256[:12], precision, int(max_batch), _safe(trt_version),
                                                 _safe(compute_capability).replace(".", ""), digest)


def sidecar_path(plan_path):
    """`<key>.plan` -> `<key>.json`."""
    return os.path.splitext(plan_path)[0] + ".json"


def load_sidecar(plan_path):
    """The sidecar's fields, or None when it is missing or unreadable."""
    try:
        with open(sidecar_path(plan_path), "r") as f:
            fields = json.load(f)
    except (OSError, ValueError):
        return None
    return fields if isinstance(fields, dict) else None


def expected_fields(trt_version, device_info, spec, precision, max_batch, calibration_sha256=None,
                    tactic_sources="all"):
    """The fields a cached plan's sidecar must hold to be used for this model, device and config."""
    return {"trt_version": str(trt_version), "gpu_name": device_info.name,
            "compute_capability": device_info.compute_capability, "model_sha256": spec.files["fp32"].sha256,
            "precision": precision, "max_batch": int(max_batch),
            "input_shape_chw": [3, spec.input.height, spec.input.width],
            "calibration_sha256": calibration_sha256 or "", "tactic_sources": tactic_sources}


def describe_mismatch(found, expected):
    # type: (dict, dict) -> Optional[str]
    """The first field in which a sidecar differs from what is needed, in words; None when all match."""
    labels = {"trt_version": "TensorRT", "gpu_name": "GPU", "compute_capability": "compute capability",
              "model_sha256": "model sha256", "precision": "precision", "max_batch": "max_batch",
              "input_shape_chw": "input shape", "calibration_sha256": "INT8 calibration cache sha256",
              "tactic_sources": "tactic sources"}
    for field in MATCH_FIELDS:
        have, want = found.get(field, _FIELD_DEFAULTS.get(field)), expected.get(field, _FIELD_DEFAULTS.get(field))
        if have != want:
            return "built for %s %s, this needs %s" % (labels[field], _short(have), _short(want))
    return None


def _short(value):
    text = "none" if value in (None, "") else str(value)
    return text[:12] + "..." if re.match(r"^[0-9a-f]{64}$", text) else text


def check_cached_plan(plan_path, expected):
    # type: (str, dict) -> Optional[str]
    """None when the plan at plan_path may be used; otherwise why not ("absent" when there is none)."""
    if not os.path.isfile(plan_path):
        return _ABSENT
    found = load_sidecar(plan_path)
    if found is None:
        return "its sidecar %s is missing or unreadable, so where it came from is unknown" % sidecar_path(plan_path)
    mismatch = describe_mismatch(found, expected)
    if mismatch:
        return mismatch
    try:
        digest = sha256_file(plan_path)
    except OSError as e:
        return "it cannot be read (%s)" % (e.strerror or e)
    if digest != found.get("plan_sha256"):
        return "its sha256 %s... differs from its sidecar's %s... (truncated or corrupt)" % (
            digest[:12], str(found.get("plan_sha256"))[:12])
    return None


def _newest_other_plan(cache_dir, expected):
    candidates = []
    for path in glob.glob(os.path.join(cache_dir, "*.json")):
        fields = load_sidecar(os.path.splitext(path)[0] + ".plan")
        if fields and fields.get("format") == SIDECAR_FORMAT:
            candidates.append((str(fields.get("built_at", "")), path, fields))
    if not candidates:
        return None
    _, path, fields = max(candidates)
    mismatch = describe_mismatch(fields, expected)
    return (path, mismatch) if mismatch else None


def _write_sidecar(plan_path, fields, report, spec, workspace_mib):
    sidecar = dict(fields)
    sidecar.update({
        "format": SIDECAR_FORMAT, "key": os.path.splitext(os.path.basename(plan_path))[0],
        "precision_built": report.precision_built, "opt_batch": report.opt_batch, "input_name": spec.input.name,
        "model_path": spec.onnx_path, "model_name": spec.name, "model_version": spec.version,
        "workspace_mib": int(workspace_mib), "plan_sha256": report.plan_sha256, "plan_bytes": report.plan_bytes,
        "build_seconds": round(report.seconds, 1),
        "built_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
    write_atomically(sidecar_path(plan_path), (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def default_timing_cache_path(cache_dir, trt_version, device_info):
    """Timing caches hold kernel timings of one GPU and TensorRT version; one file per pair, in the cache dir."""
    return os.path.join(cache_dir, "timing-trt%s-sm%s.cache" % (
        _safe(trt_version), _safe(device_info.compute_capability).replace(".", "")))


def get_or_build_plan(spec, model_config, cache_dir, trt, device_info, force=False, progress=None,
                      timing_cache_path=None, calibration=None):
    """Path of a plan for this model, TensorRT and GPU: the cached one when it provably matches, else a new build."""
    tcfg = model_config.tensorrt
    calibration_sha = None
    if tcfg.precision == "int8":
        calibration = calibration or Calibration(default_calibration_path(spec), None,
                                                 min(model_config.max_batch, 8), None)
        if os.path.isfile(calibration.cache_path):
            calibration_sha = sha256_file(calibration.cache_path)
    expected = expected_fields(trt.__version__, device_info, spec, tcfg.precision, model_config.max_batch,
                               calibration_sha, tcfg.tactic_sources)
    key = plan_cache_key(trt.__version__, device_info.name, device_info.compute_capability,
                         spec.files["fp32"].sha256, tcfg.precision, model_config.max_batch, calibration_sha,
                         tcfg.tactic_sources)
    plan_path = os.path.join(cache_dir, key + ".plan")
    if not force:
        problem = check_cached_plan(plan_path, expected)
        if problem is None:
            log.info("using cached TensorRT plan %s", plan_path)
            return plan_path
        _warn_why_rebuilding(problem, plan_path, cache_dir, expected, spec)
    verify_model_file(spec.files["fp32"])
    report = build_engine(spec.onnx_path, plan_path, tcfg.precision, tcfg.workspace_mib, model_config.max_batch,
                          spec.input.name, (3, spec.input.height, spec.input.width), calibration=calibration,
                          timing_cache_path=timing_cache_path or default_timing_cache_path(
                              cache_dir, trt.__version__, device_info),
                          progress=progress, trt=trt, tactic_sources=tcfg.tactic_sources)
    _write_sidecar(plan_path, expected, report, spec, tcfg.workspace_mib)
    return plan_path


def _warn_why_rebuilding(problem, plan_path, cache_dir, expected, spec):
    if problem != _ABSENT:
        log.warning("TensorRT plan %s not used: %s; rebuilding it from %s", plan_path, problem, spec.onnx_path)
        return
    other = _newest_other_plan(cache_dir, expected) if os.path.isdir(cache_dir) else None
    if other is None:
        log.info("no cached TensorRT plan for this model and GPU in %s; building one from %s", cache_dir,
                 spec.onnx_path)
    else:
        log.warning("cached TensorRT plan %s not used: %s (plans run only on the TensorRT version and GPU that "
                    "built them); building a new one from %s", os.path.splitext(other[0])[0] + ".plan", other[1],
                    spec.onnx_path)


# ---------------------------------------------------------------------------------------------------------------
# `firedetd build-engine`


def add_arguments(parser):
    # type: (argparse.ArgumentParser) -> None
    """Options of `firedetd build-engine`; defaults come from --config's model section."""
    parser.add_argument("-c", "--config", help="firedetd config whose model section gives the defaults (spec, "
                                               "model.tensorrt.*, state_dir)")
    parser.add_argument("--state-dir", help="state directory whose engines/ is the default plan cache")
    parser.add_argument("--spec", help="model spec JSON (default: the config's, else the shipped "
                                       "engines/firedetd.json)")
    parser.add_argument("--precision", choices=("fp16", "fp32", "int8"), help="engine precision (default: the "
                        "config's model.tensorrt.precision, fp16)")
    parser.add_argument("--max-batch", type=int, help="largest batch of the optimisation profile (default 4)")
    parser.add_argument("--workspace-mib", type=int, help="builder workspace limit in MiB (default 256)")
    parser.add_argument("--tactic-sources", choices=TACTIC_SOURCE_CHOICES,
                        help="all: TensorRT's default; tensorrt: its own kernels only, without loading cuBLAS, "
                             "cuBLASLt and cuDNN (less memory; default: model.tensorrt.tactic_sources, all)")
    parser.add_argument("--cache-dir", help="plan cache the daemon reads (default: model.tensorrt.cache_dir, else "
                                            "<state_dir>/engines)")
    parser.add_argument("--output", help="write the plan (and its .json sidecar) to this file instead of the cache")
    parser.add_argument("--timing-cache", help="TensorRT timing cache file, read and updated (default: one per "
                                               "GPU and TensorRT version in the cache dir)")
    parser.add_argument("--calibrate", metavar="DIR", help="INT8: measure scales on the images under DIR, write "
                                                           "the calibration cache, then build the INT8 plan")
    parser.add_argument("--calibration-cache", help="INT8 calibration cache (default: firedetd-int8.calib beside "
                                                    "the model spec)")
    parser.add_argument("--calibration-images", type=int, default=500, help="most images --calibrate reads")
    parser.add_argument("--force", action="store_true", help="rebuild even when a matching cached plan exists")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _model_config_from_args(args):
    from ..config import build_config, read_yaml

    raw = (read_yaml(args.config) or {}) if args.config else {}
    if isinstance(raw, dict) and args.spec:
        raw = dict(raw, model=dict(raw.get("model") or {}, spec=args.spec))
    if isinstance(raw, dict) and args.state_dir:
        raw = dict(raw, state_dir=args.state_dir)
    config = build_config(raw)
    tcfg = config.model.tensorrt
    tcfg = replace(tcfg, precision="int8" if args.calibrate else (args.precision or tcfg.precision),
                   workspace_mib=args.workspace_mib or tcfg.workspace_mib, cache_dir=args.cache_dir or tcfg.cache_dir,
                   tactic_sources=args.tactic_sources or tcfg.tactic_sources)
    max_batch = args.max_batch or config.model.max_batch
    if not 1 <= max_batch <= 64 or not 16 <= tcfg.workspace_mib <= 65536:
        raise EngineError("--max-batch must be 1..64 and --workspace-mib 16..65536")
    if args.calibrate and args.precision not in (None, "int8"):
        raise EngineError("--calibrate builds INT8; drop --precision %s" % args.precision)
    return replace(config.model, tensorrt=tcfg, max_batch=max_batch), config.state_dir


def run(args, trt=None, device_info=None, cuda_memory=None):
    """`firedetd build-engine`: build (or verify) the plan the daemon will use; return the exit code."""
    from ..modelspec import load_spec
    from .tensorrt import cuda_device_info, import_tensorrt, open_cuda_memory

    model_config, state_dir = _model_config_from_args(args)
    spec = load_spec(model_config.spec)
    trt = trt or import_tensorrt()
    device_info = device_info or cuda_device_info(0)
    cache_dir = default_cache_dir(model_config, state_dir)
    progress = None if args.quiet else True
    tcfg = model_config.tensorrt
    calibration = None
    if tcfg.precision == "int8":
        cache_path = args.calibration_cache or default_calibration_path(spec)
        batch = min(model_config.max_batch, 8)
        if args.calibrate:
            images = list_calibration_images(args.calibrate, args.calibration_images)
            calibration = Calibration(cache_path, calibration_batches(images, spec.input, batch), batch,
                                      cuda_memory or open_cuda_memory(0))
        else:
            calibration = Calibration(cache_path, None, batch, None)
    try:
        if args.output:
            plan_path = _build_to_output(args.output, spec, model_config, trt, device_info, calibration, args,
                                         progress)
        elif args.calibrate:
            plan_path = _calibrate_into_cache(spec, model_config, cache_dir, trt, device_info, calibration, args,
                                              progress)
        else:
            plan_path = get_or_build_plan(spec, model_config, cache_dir, trt, device_info, force=args.force,
                                          progress=progress, timing_cache_path=args.timing_cache,
                                          calibration=calibration)
    finally:
        if calibration is not None and calibration.cuda is not None and cuda_memory is None:
            calibration.cuda.close()
    _print_summary(plan_path, device_info)
    return 0


def _build_to_output(output, spec, model_config, trt, device_info, calibration, args, progress):
    tcfg = model_config.tensorrt
    verify_model_file(spec.files["fp32"])
    report = build_engine(spec.onnx_path, output, tcfg.precision, tcfg.workspace_mib, model_config.max_batch,
                          spec.input.name, (3, spec.input.height, spec.input.width), calibration=calibration,
                          timing_cache_path=args.timing_cache, progress=progress, trt=trt,
                          tactic_sources=tcfg.tactic_sources)
    calibration_sha = sha256_file(calibration.cache_path) if calibration else None
    fields = expected_fields(trt.__version__, device_info, spec, tcfg.precision, model_config.max_batch,
                             calibration_sha, tcfg.tactic_sources)
    _write_sidecar(output, fields, report, spec, tcfg.workspace_mib)
    return output


def _calibrate_into_cache(spec, model_config, cache_dir, trt, device_info, calibration, args, progress):
    # the plan's key includes the calibration cache's sha256, known only once calibration has written it
    tmp_plan = os.path.join(cache_dir, "calibrating-%d.plan" % os.getpid())
    _build_to_output(tmp_plan, spec, model_config, trt, device_info, calibration, args, progress)
    tcfg = model_config.tensorrt
    calibration_sha = sha256_file(calibration.cache_path)
    key = plan_cache_key(trt.__version__, device_info.name, device_info.compute_capability,
                         spec.files["fp32"].sha256, tcfg.precision, model_config.max_batch, calibration_sha,
                         tcfg.tactic_sources)
    plan_path = os.path.join(cache_dir, key + ".plan")
    os.replace(tmp_plan, plan_path)
    os.replace(sidecar_path(tmp_plan), sidecar_path(plan_path))
    sidecar = load_sidecar(plan_path)
    sidecar["key"] = key
    write_atomically(sidecar_path(plan_path), (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    print("INT8 calibration cache: %s" % calibration.cache_path)
    return plan_path


def _print_summary(plan_path, device_info):
    fields = load_sidecar(plan_path) or {}
    print("plan: %s" % plan_path)
    print("  TensorRT %s, %s (sm %s), %s, batch 1..%s, %.1f MiB" % (
        fields.get("trt_version", "?"), device_info.name, device_info.compute_capability,
        str(fields.get("precision_built", "?")).upper(), fields.get("max_batch", "?"),
        os.path.getsize(plan_path) / 1048576.0))
