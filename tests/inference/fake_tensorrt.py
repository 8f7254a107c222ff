"""A FAKE `tensorrt` module and a FAKE CUDA memory, for tests on machines without TensorRT or a GPU.

This is not TensorRT. TensorRT cannot be installed here (no GPU, no CUDA driver), so the builder,
cache and runner logic of firedetd.inference.{build,tensorrt} is tested against this stand-in. It
implements only the documented Python API surface firedetd uses, per generation:

- "8.2.x" follows the TensorRT 8.2 Python API docs (JetPack 4.6 on the Jetson Nano): Builder with
  platform_has_fast_fp16/int8, NetworkDefinitionCreationFlag.EXPLICIT_BATCH, BuilderConfig with
  max_workspace_size (no memory pools), timing caches, IInt8EntropyCalibrator2, OnnxParser with
  num_errors/get_error().desc(); engines with the bindings API only (num_bindings,
  get_binding_name/binding_is_input/get_binding_shape/get_binding_dtype, device_memory_size) and
  contexts with set_binding_shape and execute_async_v2(bindings, stream_handle).
- "8.5.x"-"9.x" (tested as "8.6.1") follows the 8.6 docs: the bindings API still there (deprecated)
  plus the tensor-name API (num_io_tensors, get_tensor_name/mode/shape/dtype, set_input_shape,
  set_tensor_address, execute_async_v3(stream_handle)); set_memory_pool_limit(MemoryPoolType.WORKSPACE)
  beside the deprecated max_workspace_size.
- "10.x" (tested as "10.3.0") follows the 10.x docs: bindings API and max_workspace_size removed,
  EXPLICIT_BATCH deprecated (create_network(0)), IProgressMonitor and BuilderConfig.progress_monitor,
  device_memory_size_v2.

Where real TensorRT computes, the fake "computes" something checkable: a plan records the network's
I/O, and its engine writes out[n, k] = mean(x[n, k % C]) + k for each sample, reading and writing
the fake GPU's memory through the pointers it was given, in stream order. A real ONNX model (needs
the `onnx` package) is embedded in the plan and run with ONNX Runtime instead, so outputs can be
compared with the real model. Plans from another fake TensorRT version or GPU fail to deserialize,
as real ones do. As in TensorRT 8, the module keeps one logger while any Builder or Runtime lives: a
different logger given to a new one is ignored with TensorRT's warning, and that object logs to the first.
"""

import base64
import contextlib
import enum
import functools
import json
import threading
import types
import weakref

import numpy as np

from firedetd.inference.tensorrt import DeviceInfo, _CudaMemory

PLAN_MAGIC = b"FAKEPLAN\n"
ONNX_MAGIC = b"FAKEONNX\n"


# ---------------------------------------------------------------------------------------------------------------
# the fake GPU and its CUDA memory


class FakeGpu(object):
    """Device memory as numpy bytes keyed by address, streams as queues run on synchronize."""

    def __init__(self, name="NVIDIA Tegra X1", compute_capability="5.3", fast_fp16=True, fast_int8=False):
        self.info = DeviceInfo(name, compute_capability)
        self.fast_fp16 = fast_fp16
        self.fast_int8 = fast_int8
        self._memory = {}
        self._next_address = 0x7F0000000000
        self._queues = {}
        self._active = set()   # thread idents with a context current
        self.lock = threading.Lock()

    def alloc(self, nbytes):
        with self.lock:
            address = self._next_address
            self._next_address += (int(nbytes) + 511) // 256 * 256
            self._memory[address] = np.zeros(int(nbytes), dtype=np.uint8)
        return address

    def view(self, address, nbytes):
        block = self._memory.get(address)
        if block is None or nbytes > block.nbytes:
            raise RuntimeError("fake GPU: invalid device address %#x for %d bytes" % (address, nbytes))
        return block[:nbytes]

    def new_stream(self):
        with self.lock:
            handle = 0x5000 + len(self._queues)
            self._queues[handle] = []
        return handle

    def enqueue(self, handle, operation):
        if handle not in self._queues:
            raise RuntimeError("fake GPU: unknown stream %r" % (handle,))
        self._queues[handle].append(operation)

    def synchronize(self, handle):
        queue, self._queues[handle] = self._queues[handle], []
        for operation in queue:
            operation()

    def pending(self, handle):
        return len(self._queues[handle])

    def require_context(self, what):
        if threading.get_ident() not in self._active:
            raise RuntimeError("fake CUDA: %s called on a thread with no current context" % what)


class FakeCudaMemory(_CudaMemory):
    """_CudaMemory over FakeGpu; copies run when the stream is synchronized, like real async copies."""

    name = "fake-cuda"

    def __init__(self, gpu):
        self.gpu = gpu
        self.stream = gpu.new_stream()
        self.pinned = []
        self.activated_threads = set()
        self.closed = False

    @contextlib.contextmanager
    def activated(self):
        ident = threading.get_ident()
        nested = ident in self.gpu._active
        self.gpu._active.add(ident)
        self.activated_threads.add(threading.current_thread().name)
        try:
            yield
        finally:
            if not nested:
                self.gpu._active.discard(ident)

    def host_empty(self, shape, dtype):
        array = np.zeros(shape, dtype=dtype)
        self.pinned.append(array)
        return array

    def device_alloc(self, nbytes):
        return self.gpu.alloc(nbytes)

    def htod_async(self, device_ptr, host_array):
        self.gpu.require_context("cudaMemcpyAsync")

        def copy():
            self.gpu.view(device_ptr, host_array.nbytes)[:] = np.frombuffer(host_array.tobytes(), np.uint8)
        self.gpu.enqueue(self.stream, copy)

    def dtoh_async(self, host_array, device_ptr):
        self.gpu.require_context("cudaMemcpyAsync")

        def copy():
            data = self.gpu.view(device_ptr, host_array.nbytes).tobytes()
            host_array[...] = np.frombuffer(data, host_array.dtype).reshape(host_array.shape)
        self.gpu.enqueue(self.stream, copy)

    @property
    def stream_handle(self):
        return self.stream

    def synchronize(self):
        self.gpu.require_context("cudaStreamSynchronize")
        self.gpu.synchronize(self.stream)

    def close(self):
        self.closed = True


# ---------------------------------------------------------------------------------------------------------------
# fake models


def fake_onnx_bytes(input_name="input", input_shape=(-1, 3, 8, 8), output_name="logits", classes=3,
                    unsupported=()):
    """A stand-in "ONNX" file the fake parser reads; `unsupported` names ops it reports as parse errors."""
    return ONNX_MAGIC + json.dumps({"inputs": [{"name": input_name, "shape": list(input_shape)}],
                                    "outputs": [{"name": output_name, "shape": [input_shape[0], classes]}],
                                    "unsupported": list(unsupported)}).encode("utf-8")


def fake_outputs(batch, classes):
    """What a fake engine computes for a float32 (N, C, H, W) batch of a FAKEONNX model."""
    channels = batch.shape[1]
    means = batch.reshape(batch.shape[0], channels, -1).mean(axis=2)
    return np.stack([means[:, k % channels] + k for k in range(classes)], axis=1).astype(np.float32)


def _read_real_onnx(data):
    import onnx

    model = onnx.load_from_string(data)
    initializers = {i.name for i in model.graph.initializer}

    def dims(value):
        return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
    inputs = [{"name": v.name, "shape": dims(v)} for v in model.graph.input if v.name not in initializers]
    outputs = [{"name": v.name, "shape": dims(v)} for v in model.graph.output]
    return {"inputs": inputs, "outputs": outputs, "unsupported": [], "onnx_b64": base64.b64encode(data).decode()}


# ---------------------------------------------------------------------------------------------------------------
# enums and base classes (the parts of the module that do not depend on state)


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3


_NPTYPE = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32}


def nptype(trt_type):
    return _NPTYPE[trt_type]


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class TacticSource(enum.IntEnum):
    """8.5 added EDGE_MASK_CONVOLUTIONS, 8.6 JIT_CONVOLUTIONS; 10.0 turned the library sources off by default."""
    CUBLAS = 0
    CUBLAS_LT = 1
    CUDNN = 2
    EDGE_MASK_CONVOLUTIONS = 3
    JIT_CONVOLUTIONS = 4


# TensorRT 8.2's tactic sources (nvinfer1::TacticSource): the three libraries, all on by default
TacticSource82 = enum.IntEnum("TacticSource", [(m.name, m.value) for m in TacticSource if m <= TacticSource.CUDNN])


def tactic_source_enum(generation):
    return TacticSource82 if generation == "8.2" else TacticSource


def default_tactic_sources(generation):
    sources = tactic_source_enum(generation)
    on = [m for m in sources if generation != "10" or m.name not in ("CUBLAS", "CUBLAS_LT", "CUDNN")]
    return sum(1 << int(m) for m in on)


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    EXPLICIT_PRECISION = 1


class ErrorCode(enum.IntEnum):
    SUCCESS = 0
    INVALID_GRAPH = 5
    UNSUPPORTED_NODE = 8


class ILogger(object):
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self):
        pass

    def log(self, severity, msg):
        raise NotImplementedError


class Logger(ILogger):
    INTERNAL_ERROR = ILogger.Severity.INTERNAL_ERROR
    ERROR = ILogger.Severity.ERROR
    WARNING = ILogger.Severity.WARNING
    INFO = ILogger.Severity.INFO
    VERBOSE = ILogger.Severity.VERBOSE

    def __init__(self, min_severity=ILogger.Severity.WARNING):
        ILogger.__init__(self)
        self.min_severity = min_severity
        self.messages = []

    def log(self, severity, msg):
        self.messages.append((severity, msg))


class IInt8EntropyCalibrator2(object):
    def __init__(self):
        pass


class IProgressMonitor(object):
    def __init__(self):
        pass


# ---------------------------------------------------------------------------------------------------------------
# stateful objects


class FakeState(object):
    """Everything a fake module records and is configured with; tests read `trt.FAKE`."""

    def __init__(self, version, gpu):
        self.version = version
        self.gpu = gpu
        major, minor = (int(p) for p in version.split(".")[:2])
        self.generation = "10" if major >= 10 else ("8.5" if (major, minor) >= (8, 5) else "8.2")
        self.calls = []            # (method, args...) of runtime calls, in order
        self.builds = []           # one dict per build_serialized_network call
        self.fail_build = False
        self.fail_build_unexplained = False   # fail without logging anything (the runner's "no reason given" path)
        self.during_build = None   # callable run inside build_serialized_network (e.g. to wait for a heartbeat)
        self._logger_users = weakref.WeakSet()   # live Builders and Runtimes
        self._logger = None

    def logger_for(self, user, logger):
        """The logger a new Builder or Runtime really logs to. As in TensorRT 8.x, the process keeps one: while any
        Builder, Runtime or Refitter lives, a different logger given to a new one is ignored with a warning to the
        existing one ("TensorRT maintains only a single logger pointer at any given time", NVIDIA/TensorRT#1475)."""
        if len(self._logger_users) and logger is not self._logger:
            self._logger.log(ILogger.Severity.WARNING, "The logger passed into createInferRuntime differs from one "
                             "already provided for an existing builder, runtime, or refitter. TensorRT maintains only "
                             "a single logger pointer at any given time, so the existing value, which can be "
                             "retrieved with getLogger(), will be used instead.")
        else:
            self._logger = logger
        self._logger_users.add(user)
        return self._logger

    def record(self, *call):
        self.calls.append(call)

    def names(self):
        return [c[0] for c in self.calls]


class FakeTensor(object):
    def __init__(self, name, shape):
        self.name = name
        self.shape = tuple(shape)


class FakeNetwork(object):
    def __init__(self, state, flags):
        self.state = state
        self.flags = flags
        explicit_bit = 1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH
        self.explicit_batch = state.generation == "10" or bool(flags & explicit_bit)
        self.inputs, self.outputs, self.model = [], [], None

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]

    @property
    def num_outputs(self):
        return len(self.outputs)

    def get_output(self, i):
        return self.outputs[i]


class FakeParserError(object):
    def __init__(self, desc, node=-1, code=ErrorCode.UNSUPPORTED_NODE):
        self._desc, self._node, self._code = desc, node, code

    def desc(self):
        return self._desc

    def node(self):
        return self._node

    def code(self):
        return self._code


class FakeOnnxParser(object):
    def __init__(self, state, network, logger):
        self.state, self.network, self.logger = state, network, logger
        self._errors = []

    def parse(self, model, path=None):
        data = bytes(model)
        if not self.network.explicit_batch:
            self._errors.append(FakeParserError("Network must have an explicit batch dimension", -1,
                                                ErrorCode.INVALID_GRAPH))
            return False
        if data.startswith(ONNX_MAGIC):
            description = json.loads(data[len(ONNX_MAGIC):].decode("utf-8"))
        else:
            try:
                description = _read_real_onnx(data)
            except Exception as e:
                self._errors.append(FakeParserError("Failed to parse ONNX model: %s" % e, -1, ErrorCode.INVALID_GRAPH))
                return False
        for node, op in enumerate(description["unsupported"]):
            self._errors.append(FakeParserError("No importer registered for op: %s" % op, node))
        if self._errors:
            return False
        self.network.inputs = [FakeTensor(t["name"], t["shape"]) for t in description["inputs"]]
        self.network.outputs = [FakeTensor(t["name"], t["shape"]) for t in description["outputs"]]
        self.network.model = description
        return True

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, index):
        return self._errors[index]

    def clear_errors(self):
        self._errors = []


class FakeOptimizationProfile(object):
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 (the real keyword names)
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

    def get_shape(self, name):
        return self.shapes[name]


class FakeTimingCache(object):
    def __init__(self, state, data):
        self.state = state
        self.mismatch = False
        self.entries = 0
        if data:
            fields = json.loads(bytes(data).decode("utf-8"))
            self.entries = fields["entries"]
            self.mismatch = (fields["version"], fields["cc"]) != (state.version, state.gpu.info.compute_capability)

    def serialize(self):
        return json.dumps({"version": self.state.version, "cc": self.state.gpu.info.compute_capability,
                           "entries": self.entries}).encode("utf-8")


class _ConfigBase(object):
    """Like the real (pybind11) object, setting an attribute this API generation lacks raises AttributeError."""

    def __init__(self, state):
        self.state = state
        self.flags = set()
        self.profiles = []
        self.calibration_profile = None
        self.int8_calibrator = None
        self.timing_cache = None
        self.workspace = None
        self.tactic_sources = default_tactic_sources(state.generation)

    def __setattr__(self, name, value):
        if getattr(self, "_sealed", False) and not hasattr(self, name):
            raise AttributeError("fake IBuilderConfig (TensorRT %s) has no attribute %r" % (self.state.version, name))
        object.__setattr__(self, name, value)

    def seal(self):
        self._sealed = True
        return self

    def set_flag(self, flag):
        self.flags.add(flag)

    def get_flag(self, flag):
        return flag in self.flags

    def set_tactic_sources(self, tactic_sources):
        # the real call returns False for bits that name no source of this version
        known = sum(1 << int(m) for m in tactic_source_enum(self.state.generation))
        if tactic_sources & ~known:
            return False
        self.tactic_sources = tactic_sources
        return True

    def get_tactic_sources(self):
        return self.tactic_sources

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile):
        self.calibration_profile = profile
        return True

    def create_timing_cache(self, serialized_timing_cache):
        return FakeTimingCache(self.state, serialized_timing_cache)

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache.mismatch and not ignore_mismatch:
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self):
        return self.timing_cache


class _WorkspaceSizeConfig(object):
    @property
    def max_workspace_size(self):
        return self.workspace

    @max_workspace_size.setter
    def max_workspace_size(self, value):
        self.workspace = value


class _MemoryPoolConfig(object):
    def set_memory_pool_limit(self, pool, pool_size):
        if pool == MemoryPoolType.WORKSPACE:
            self.workspace = pool_size

    def get_memory_pool_limit(self, pool):
        return self.workspace


class FakeConfig82(_WorkspaceSizeConfig, _ConfigBase):
    pass


class FakeConfig85(_WorkspaceSizeConfig, _MemoryPoolConfig, _ConfigBase):
    pass


class FakeConfig10(_MemoryPoolConfig, _ConfigBase):
    def __init__(self, state):
        _ConfigBase.__init__(self, state)
        self.progress_monitor = None


class FakeBuilder(object):
    def __init__(self, state, logger):
        self.state, self.logger = state, state.logger_for(self, logger)
        self.platform_has_fast_fp16 = state.gpu.fast_fp16
        self.platform_has_fast_int8 = state.gpu.fast_int8

    def create_network(self, flags=0):
        return FakeNetwork(self.state, flags)

    def create_builder_config(self):
        return {"8.2": FakeConfig82, "8.5": FakeConfig85, "10": FakeConfig10}[self.state.generation](self.state).seal()

    def create_optimization_profile(self):
        return FakeOptimizationProfile()

    def _fail(self, message):
        self.logger.log(ILogger.Severity.ERROR, message)
        return None

    def build_serialized_network(self, network, config):
        record = {"network_flags": network.flags, "flags": set(config.flags), "workspace": config.workspace,
                  "tactic_sources": config.tactic_sources,
                  "profiles": [dict(p.shapes) for p in config.profiles], "calibration_batches": 0,
                  "calibration_cache_read": None, "timing_entries_before": None}
        self.state.builds.append(record)
        if self.state.during_build:
            self.state.during_build()
        if self.state.fail_build:
            return self._fail("fake: no implementation obeys the workspace limit")
        if self.state.fail_build_unexplained:
            return None
        if len(network.inputs) != 1 or len(config.profiles) != 1:
            return self._fail("fake: needs one input and one optimization profile")
        tensor = network.inputs[0]
        shapes = config.profiles[0].shapes.get(tensor.name)
        if shapes is None or any(s[1:] != tensor.shape[1:] for s in shapes) or not (
                1 <= shapes[0][0] <= shapes[1][0] <= shapes[2][0]):
            return self._fail("fake: profile %r does not fit input %r %s" % (shapes, tensor.name, tensor.shape))
        if BuilderFlag.INT8 in config.flags and not self._calibrate(config, tensor, record):
            return None
        if not self._report_progress(config):
            return self._fail("fake: build cancelled by the progress monitor")
        if config.timing_cache is not None:
            record["timing_entries_before"] = config.timing_cache.entries
            config.timing_cache.entries += 1
        precision = "int8" if BuilderFlag.INT8 in config.flags else (
            "fp16" if BuilderFlag.FP16 in config.flags else "fp32")
        header = {"version": self.state.version, "cc": self.state.gpu.info.compute_capability,
                  "input": {"name": tensor.name, "shape": list(tensor.shape)},
                  "output": {"name": network.outputs[0].name, "classes": network.outputs[0].shape[1]},
                  "max_batch": shapes[2][0], "precision": precision,
                  "onnx_b64": network.model.get("onnx_b64")}
        return PLAN_MAGIC + json.dumps(header).encode("utf-8")

    def _calibrate(self, config, tensor, record):
        calibrator = config.int8_calibrator
        if calibrator is None:
            self._fail("fake: INT8 without a calibrator")
            return False
        cache = calibrator.read_calibration_cache()
        if cache:
            record["calibration_cache_read"] = bytes(cache)
            return True
        shape = config.calibration_profile.shapes[tensor.name][1] if config.calibration_profile else None
        if shape is None or shape[0] != calibrator.get_batch_size():
            self._fail("fake: calibration profile %s does not match batch size %d" % (shape,
                                                                                     calibrator.get_batch_size()))
            return False
        total = 0.0
        while True:
            pointers = calibrator.get_batch([tensor.name])
            if not pointers:
                break
            nbytes = int(np.prod(shape)) * 4
            total += float(np.frombuffer(self.state.gpu.view(pointers[0], nbytes).tobytes(), np.float32).sum())
            record["calibration_batches"] += 1
        if record["calibration_batches"] == 0:
            self._fail("fake: calibration got no batches")
            return False
        calibrator.write_calibration_cache(("FAKE-CALIB batches=%d sum=%.3f\n" % (
            record["calibration_batches"], total)).encode("ascii"))
        return True

    def _report_progress(self, config):
        monitor = getattr(config, "progress_monitor", None)
        if monitor is None:
            return True
        monitor.phase_start("Building engine", None, 3)
        monitor.phase_start("Tactic timing", "Building engine", 2)
        monitor.step_complete("Tactic timing", 0)
        monitor.phase_finish("Tactic timing")
        for step in range(3):
            if not monitor.step_complete("Building engine", step):
                monitor.phase_finish("Building engine")
                return False
        monitor.phase_finish("Building engine")
        return True


class FakeRuntime(object):
    def __init__(self, state, logger):
        self.state, self.logger = state, state.logger_for(self, logger)

    def deserialize_cuda_engine(self, serialized_engine):
        self.state.gpu.require_context("deserialize_cuda_engine")
        data = bytes(serialized_engine)
        self.state.record("deserialize_cuda_engine")
        if not data.startswith(PLAN_MAGIC):
            self.logger.log(ILogger.Severity.ERROR, "1: [stdArchiveReader.cpp::StdArchiveReader::40] Error Code 1: "
                                                    "Serialization (Serialization assertion magicTagRead failed)")
            return None
        try:
            header = json.loads(data[len(PLAN_MAGIC):].decode("utf-8"))
        except ValueError:
            self.logger.log(ILogger.Severity.ERROR, "fake: corrupt plan")
            return None
        if header["version"] != self.state.version or header["cc"] != self.state.gpu.info.compute_capability:
            self.logger.log(ILogger.Severity.ERROR, "fake: plan built by TensorRT %s for sm %s cannot run on "
                                                    "TensorRT %s, sm %s" % (header["version"], header["cc"],
                                                                            self.state.version,
                                                                            self.state.gpu.info.compute_capability))
            return None
        engine_class = {"8.2": FakeEngine82, "8.5": FakeEngine85, "10": FakeEngine10}[self.state.generation]
        return engine_class(self.state, header)


class _EngineBase(object):
    def __init__(self, state, header):
        self.state = state
        self.header = header
        classes = header["output"]["classes"]
        # (name, is_input, shape with -1 for the dynamic batch, dtype)
        self.io = [(header["input"]["name"], True, tuple(header["input"]["shape"]), DataType.FLOAT),
                   (header["output"]["name"], False, (-1, classes), DataType.FLOAT)]
        self.device_memory_size = 2 << 20

    def _index(self, name):
        return [t[0] for t in self.io].index(name)

    def create_execution_context(self):
        self.state.gpu.require_context("create_execution_context")
        return {"8.2": FakeContextV2, "8.5": FakeContext85, "10": FakeContextV3}[self.state.generation](self)

    def compute(self, batch):
        onnx_b64 = self.header.get("onnx_b64")
        if not onnx_b64:
            return fake_outputs(batch, self.header["output"]["classes"])
        import onnxruntime

        session = onnxruntime.InferenceSession(base64.b64decode(onnx_b64), providers=["CPUExecutionProvider"])
        return session.run(None, {self.header["input"]["name"]: batch})[0].astype(np.float32)


class _BindingsEngine(object):
    @property
    def num_bindings(self):
        return len(self.io)

    def get_binding_name(self, index):
        return self.io[index][0]

    def get_binding_index(self, name):
        return self._index(name)

    def binding_is_input(self, index):
        return self.io[index][1]

    def get_binding_shape(self, index):
        return self.io[index][2]

    def get_binding_dtype(self, index):
        return self.io[index][3]


class _TensorEngine(object):
    @property
    def num_io_tensors(self):
        return len(self.io)

    def get_tensor_name(self, index):
        return self.io[index][0]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if self.io[self._index(name)][1] else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return self.io[self._index(name)][2]

    def get_tensor_dtype(self, name):
        return self.io[self._index(name)][3]


class FakeEngine82(_BindingsEngine, _EngineBase):
    pass


class FakeEngine85(_BindingsEngine, _TensorEngine, _EngineBase):
    pass


class FakeEngine10(_TensorEngine, _EngineBase):
    @property
    def device_memory_size_v2(self):
        return self.device_memory_size


class _ContextBase(object):
    def __init__(self, engine):
        self.engine = engine
        self.state = engine.state
        self.batch = None
        self.addresses = {}

    def _accept_shape(self, name, shape):
        header = self.engine.header
        shape = tuple(shape)
        if name != header["input"]["name"] or shape[1:] != tuple(header["input"]["shape"][1:]) \
                or not 1 <= shape[0] <= header["max_batch"]:
            return False
        self.batch = shape[0]
        return True

    def _enqueue(self, stream_handle, input_address, output_address):
        self.state.gpu.require_context("enqueue")
        if self.batch is None:
            return False   # dynamic input shape not specified
        header, n = self.engine.header, self.batch
        in_shape = (n,) + tuple(header["input"]["shape"][1:])
        in_bytes = int(np.prod(in_shape)) * 4
        out_bytes = n * header["output"]["classes"] * 4
        gpu = self.state.gpu

        def run():
            batch = np.frombuffer(gpu.view(input_address, in_bytes).tobytes(), np.float32).reshape(in_shape)
            out = np.ascontiguousarray(self.engine.compute(batch), dtype=np.float32)
            gpu.view(output_address, out_bytes)[:] = np.frombuffer(out.tobytes(), np.uint8)
        gpu.enqueue(stream_handle, run)
        return True


class _ContextV2(object):
    def set_binding_shape(self, binding, shape):
        self.state.record("set_binding_shape", binding, tuple(shape))
        if not self.engine.binding_is_input(binding):
            return False
        return self._accept_shape(self.engine.get_binding_name(binding), shape)

    def execute_async_v2(self, bindings, stream_handle, input_consumed=None):
        self.state.record("execute_async_v2", list(bindings), stream_handle)
        return self._enqueue(stream_handle, bindings[0], bindings[1])


class _ContextV3(object):
    def set_input_shape(self, name, shape):
        self.state.record("set_input_shape", name, tuple(shape))
        return self._accept_shape(name, shape)

    def set_tensor_address(self, name, memory):
        self.state.record("set_tensor_address", name, memory)
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle):
        self.state.record("execute_async_v3", stream_handle)
        header = self.engine.header
        return self._enqueue(stream_handle, self.addresses[header["input"]["name"]],
                             self.addresses[header["output"]["name"]])


class FakeContextV2(_ContextV2, _ContextBase):
    pass


class FakeContext85(_ContextV2, _ContextV3, _ContextBase):
    pass


class FakeContextV3(_ContextV3, _ContextBase):
    pass


# ---------------------------------------------------------------------------------------------------------------


def make_fake_tensorrt(version="8.2.1", gpu=None):
    """A fresh fake `tensorrt` module of the given version's API generation, on the given FakeGpu."""
    gpu = gpu or FakeGpu()
    state = FakeState(version, gpu)
    module = types.ModuleType("tensorrt", "FAKE tensorrt %s for tests (see tests/inference/fake_tensorrt.py)" % version)
    module.__version__ = version
    module.FAKE = state
    module.DataType = DataType
    module.float32, module.float16, module.int8, module.int32 = (DataType.FLOAT, DataType.HALF, DataType.INT8,
                                                                 DataType.INT32)
    module.nptype = nptype
    module.BuilderFlag = BuilderFlag
    module.TacticSource = tactic_source_enum(state.generation)
    module.NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
    module.ErrorCode = ErrorCode
    module.ILogger = ILogger
    module.Logger = Logger
    module.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    module.Builder = functools.partial(FakeBuilder, state)
    module.Runtime = functools.partial(FakeRuntime, state)
    module.OnnxParser = functools.partial(FakeOnnxParser, state)
    if state.generation in ("8.5", "10"):
        module.TensorIOMode = TensorIOMode
        module.MemoryPoolType = MemoryPoolType
    if state.generation == "10":
        module.IProgressMonitor = IProgressMonitor
    return module
