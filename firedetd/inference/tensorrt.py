"""TensorRT backend: a cached, device-specific plan run with pinned host buffers and one CUDA stream.

Written against TensorRT's Python API of two generations, picked by feature detection, never by
version string:
- 8.2 (JetPack 4.6, the Jetson Nano): bindings API (`num_bindings`, `get_binding_*`,
  `set_binding_shape`, `execute_async_v2(bindings, stream_handle)`).
- 8.5 and later, 10.x: tensor-name API (`num_io_tensors`, `get_tensor_*`, `set_input_shape`,
  `set_tensor_address`, `execute_async_v3(stream_handle)`); 10.x removed the bindings API.

CUDA memory goes through `_CudaMemory`: pycuda when it imports (what JetPack users have), else
cuda-python's runtime API. Threads: in the daemon the engine runner (firedetd/runner.py) calls the
constructor on its own `engine` thread, so the plan is loaded or built there and `infer()` and
`close()` run there too; `firedetd build-engine` builds on its main thread. No call relies on that:
a CUDA driver context is current per thread, so every call into CUDA or TensorRT happens inside
`cuda.activated()`, which pushes the device's primary context on the calling thread and pops it
afterwards (pycuda), or selects the device for that thread (cuda-python). The primary context is the one TensorRT's own
runtime-API calls use, so both see the same allocations.
"""

import contextlib
import ctypes
import logging
import os
import threading
from collections import namedtuple

import numpy as np

from ..errors import EngineError
from . import Engine

log = logging.getLogger(__name__)

INSTALL_HINT = ("on a Jetson install JetPack's python3-libnvinfer and make the venv with --system-site-packages "
                "(docs/jetson.md); on a PC install NVIDIA's tensorrt wheel")
CUDA_HINT = ("install the trt extra (`pip install 'firedetd[trt]'`: pycuda, which on a Jetson builds against JetPack's "
             "CUDA with PATH=/usr/local/cuda/bin:$PATH) or cuda-python (`pip install cuda-python`)")

DeviceInfo = namedtuple("DeviceInfo", "name compute_capability")   # ("NVIDIA Tegra X1", "5.3")
IOTensor = namedtuple("IOTensor", "name index is_input shape dtype")  # shape with the batch at max_batch


def import_tensorrt():
    """Import the real tensorrt module or raise EngineError saying how to install it."""
    try:
        import tensorrt
    except ImportError as e:
        raise EngineError("model.engine: tensorrt cannot be imported (%s); %s" % (e, INSTALL_HINT))
    return tensorrt


def _libcuda():
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def cuda_device_info(index=0):
    # type: (int) -> DeviceInfo
    """Name and compute capability of a CUDA device through the driver API (no pycuda needed)."""
    lib = _libcuda()
    if lib is None:
        raise EngineError("no CUDA driver (libcuda.so.1 not found): TensorRT needs an NVIDIA GPU and its driver")
    count, device = ctypes.c_int(0), ctypes.c_int(0)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    name = ctypes.create_string_buffer(256)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value <= index:
        raise EngineError("CUDA driver found but no CUDA device %d answers (is the GPU visible to this process? "
                          "in Docker use --runtime nvidia)" % index)
    lib.cuDeviceGet(ctypes.byref(device), index)
    lib.cuDeviceGetName(name, len(name), device)
    # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76 (cuda.h)
    lib.cuDeviceGetAttribute(ctypes.byref(major), 75, device)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)
    return DeviceInfo(name.value.decode("utf-8", "replace"), "%d.%d" % (major.value, minor.value))


def tensorrt_unusable_reason():
    """None when TensorRT can run here: tensorrt imports, a CUDA device answers, and pycuda or cuda-python imports
    for its buffers; else why not. Never raises (this is what `engine: auto` asks)."""
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # ImportError, or a broken install's OSError: either way, another backend
        return "tensorrt does not import (%s)" % e
    try:
        cuda_device_info(0)
    except Exception as e:
        return str(e)
    try:
        import pycuda.driver  # noqa: F401
    except Exception as pycuda_error:   # on a Nano whose pycuda build failed, TensorRT imports but cannot run
        try:
            _import_cudart()
        except Exception:
            return "tensorrt imports but neither pycuda nor cuda-python does (pycuda: %s); %s" % (pycuda_error,
                                                                                                 CUDA_HINT)
    return None


def gpu_available():
    """True when TensorRT can run here (see tensorrt_unusable_reason); never raises."""
    return tensorrt_unusable_reason() is None


def auto_unusable_reason():
    """The registry's probe for `engine: auto`: None when TensorRT can run here, else why not; ImportError when
    tensorrt is not installed at all, so `auto` passes it over without a warning (most x86 hosts)."""
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # a broken install's OSError counts as not installed, as tensorrt_unusable_reason says
        raise ImportError("tensorrt does not import (%s)" % e)
    return tensorrt_unusable_reason()


class _CudaMemory(object):
    """What the runner needs of CUDA: pinned host arrays, device buffers, one stream, async copies."""

    name = "abstract"

    def activated(self):
        """Context manager making the device's context current on the calling thread."""
        raise NotImplementedError

    def host_empty(self, shape, dtype):
        """A page-locked numpy array (async copies from pageable memory would silently be synchronous)."""
        raise NotImplementedError

    def device_alloc(self, nbytes):
        """Allocate device memory; return its address as an int."""
        raise NotImplementedError

    def htod_async(self, device_ptr, host_array):
        raise NotImplementedError

    def dtoh_async(self, host_array, device_ptr):
        raise NotImplementedError

    @property
    def stream_handle(self):
        raise NotImplementedError

    def synchronize(self):
        raise NotImplementedError

    def close(self):
        raise NotImplementedError


class _PyCudaMemory(_CudaMemory):
    """pycuda on the device's primary context, pushed on whichever thread makes a call."""

    def __init__(self, device_index=0):
        import pycuda.driver as cuda

        self._cuda = cuda
        cuda.init()
        self._context = cuda.Device(device_index).retain_primary_context()
        self._allocations = {}
        self._pinned = []   # page-locked host arrays, freed at close while the context still exists
        self._lock = threading.Lock()
        with self.activated():
            self._stream = cuda.Stream()
        self.name = "pycuda"

    @contextlib.contextmanager
    def activated(self):
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def host_empty(self, shape, dtype):
        array = self._cuda.pagelocked_empty(shape, dtype)
        with self._lock:
            self._pinned.append(array)
        return array

    def device_alloc(self, nbytes):
        allocation = self._cuda.mem_alloc(max(int(nbytes), 1))
        with self._lock:
            self._allocations[int(allocation)] = allocation   # keeps it alive until close()
        return int(allocation)

    def htod_async(self, device_ptr, host_array):
        self._cuda.memcpy_htod_async(self._allocations[device_ptr], host_array, self._stream)

    def dtoh_async(self, host_array, device_ptr):
        self._cuda.memcpy_dtoh_async(host_array, self._allocations[device_ptr], self._stream)

    @property
    def stream_handle(self):
        return self._stream.handle

    def synchronize(self):
        self._stream.synchronize()

    def close(self):
        with self.activated():
            for allocation in self._allocations.values():
                allocation.free()
            self._allocations.clear()
            # page-locked memory is otherwise freed whenever its array is collected, possibly after the context
            # below is gone (a cuMemFreeHost error at exit) or never, while the daemon holds a reference
            for array in self._pinned:
                array.base.free()
            self._pinned = []
            self._stream = None
        self._context.detach()


def _import_cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart
    return cudart


class _CudaPythonMemory(_CudaMemory):
    """cuda-python's runtime API; the runtime makes the primary context current once the thread sets the device."""

    def __init__(self, device_index=0):
        self._rt = _import_cudart()
        self._device = device_index
        self._host, self._device_ptrs = [], []
        with self.activated():
            self._stream = self._check(self._rt.cudaStreamCreate(), "cudaStreamCreate")
        self.name = "cuda-python"

    def _check(self, result, what):
        err, rest = result[0], result[1:]
        if err != self._rt.cudaError_t.cudaSuccess:
            raise EngineError("CUDA %s failed: %s" % (what, err))
        return rest[0] if len(rest) == 1 else rest

    @contextlib.contextmanager
    def activated(self):
        self._check(self._rt.cudaSetDevice(self._device), "cudaSetDevice")
        yield

    def host_empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        ptr = self._check(self._rt.cudaMallocHost(max(nbytes, 1)), "cudaMallocHost")
        self._host.append(ptr)
        raw = (ctypes.c_byte * nbytes).from_address(int(ptr))
        return np.frombuffer(raw, dtype=dtype).reshape(shape)

    def device_alloc(self, nbytes):
        ptr = int(self._check(self._rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))
        self._device_ptrs.append(ptr)
        return ptr

    def htod_async(self, device_ptr, host_array):
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(device_ptr, host_array.ctypes.data, host_array.nbytes, kind,
                                             self._stream), "cudaMemcpyAsync (host to device)")

    def dtoh_async(self, host_array, device_ptr):
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(host_array.ctypes.data, device_ptr, host_array.nbytes, kind,
                                             self._stream), "cudaMemcpyAsync (device to host)")

    @property
    def stream_handle(self):
        return int(self._stream)

    def synchronize(self):
        self._check(self._rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self):
        with self.activated():
            for ptr in self._device_ptrs:
                self._rt.cudaFree(ptr)
            for ptr in self._host:
                self._rt.cudaFreeHost(ptr)
            self._rt.cudaStreamDestroy(self._stream)
        self._device_ptrs, self._host = [], []


def open_cuda_memory(device_index=0):
    # type: (int) -> _CudaMemory
    """pycuda when it imports, else cuda-python; EngineError naming both when neither does."""
    try:
        import pycuda.driver  # noqa: F401
    except ImportError as pycuda_error:
        try:
            _import_cudart()
        except ImportError as cudart_error:
            raise EngineError("model.engine: tensorrt needs pycuda or cuda-python for GPU memory, and neither "
                              "imports (pycuda: %s; cuda-python: %s); %s" % (pycuda_error, cudart_error, CUDA_HINT))
        return _CudaPythonMemory(device_index)
    return _PyCudaMemory(device_index)


def uses_tensor_api(engine):
    """True for TensorRT >= 8.5 engines (tensor-name API); False for the 8.2 bindings API."""
    return hasattr(engine, "num_io_tensors")


def _batch_shape(shape, max_batch, name):
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims[1:]):
        raise EngineError("TensorRT tensor %r has dynamic dimensions %s besides the batch; only the batch may vary"
                          % (name, dims))
    return (max_batch if dims[0] < 0 else dims[0],) + dims[1:]


def plan_io(engine, trt, max_batch):
    """The engine's inputs and outputs with their shapes at max_batch, read through whichever API it has."""
    tensors = []
    if uses_tensor_api(engine):
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            tensors.append(IOTensor(name, i, is_input, _batch_shape(engine.get_tensor_shape(name), max_batch, name),
                                    np.dtype(trt.nptype(engine.get_tensor_dtype(name)))))
        return tensors
    for i in range(engine.num_bindings):
        name = engine.get_binding_name(i)
        tensors.append(IOTensor(name, i, bool(engine.binding_is_input(i)),
                                _batch_shape(engine.get_binding_shape(i), max_batch, name),
                                np.dtype(trt.nptype(engine.get_binding_dtype(i)))))
    return tensors


def check_io_matches_spec(tensors, spec, max_batch):
    """Raise EngineError unless the engine has the spec's one input (N, 3, H, W), its output (N, classes) and, when
    the spec describes one, its class activation map (N, classes, h, w). Returns (input, output, map or None).
    Outputs the spec does not name get buffers and are ignored."""
    inputs = [t for t in tensors if t.is_input]
    outputs = {t.name: t for t in tensors if not t.is_input}
    want_in = (max_batch, 3, spec.input.height, spec.input.width)
    want_out = (max_batch, len(spec.labels))
    if len(inputs) != 1 or inputs[0].name != spec.input.name or inputs[0].shape != want_in:
        raise EngineError("TensorRT engine inputs %s do not match the model spec's %r %s (%s)"
                          % ([(t.name, t.shape) for t in inputs], spec.input.name, want_in, spec.spec_path))
    output = outputs.get(spec.output.name)
    if output is None or output.shape != want_out:
        raise EngineError("TensorRT engine outputs %s do not match the model spec's %r %s (%s)"
                          % ([(t.name, t.shape) for t in outputs.values()], spec.output.name, want_out,
                             spec.spec_path))
    if spec.cam is None:
        return inputs[0], output, None
    cam = outputs.get(spec.cam.name)
    want_cam = (max_batch, len(spec.labels), spec.cam.height, spec.cam.width)
    if cam is None or cam.shape != want_cam:
        raise EngineError("TensorRT engine outputs %s do not match the model spec's cam %r %s (%s)"
                          % ([(t.name, t.shape) for t in outputs.values()], spec.cam.name, want_cam, spec.spec_path))
    return inputs[0], output, cam


def device_memory_size(engine):
    """Bytes of activation memory an execution context takes (10.1+ names it device_memory_size_v2)."""
    for attribute in ("device_memory_size_v2", "device_memory_size"):
        value = getattr(engine, attribute, None)
        if value is not None:
            return int(value)
    return 0


def _log_progress(line):
    log.info("%s", line)


class TensorRTEngine(Engine):
    """Runs the spec's ONNX model as a TensorRT plan built (once, then cached) for this GPU and TensorRT version."""

    name = "tensorrt"

    def __init__(self, spec, model_config, state_dir, trt_module=None, cuda_memory=None, device_info=None,
                 progress=None):
        self._trt = trt_module or import_tensorrt()
        self._lock = threading.Lock()
        self._current_batch = None
        self.max_batch = model_config.max_batch
        progress = progress or _log_progress   # a first build takes minutes on a Nano: say so in the log
        device = device_info or cuda_device_info(0)
        self._cuda = cuda_memory or open_cuda_memory(0)
        try:
            plan_path = self._load(spec, model_config, state_dir, device, progress)
        except BaseException:
            self.close()
            raise
        from .build import load_sidecar

        sidecar = load_sidecar(plan_path) or {}
        self.plan_path = plan_path
        self.plan_bytes = os.path.getsize(plan_path)
        self.device_memory_bytes = device_memory_size(self._engine)
        self.trt_version = str(self._trt.__version__)
        self.precision = sidecar.get("precision_built", model_config.tensorrt.precision)
        self.provider = "TensorRT %s %s" % (self.trt_version, self.precision.upper())
        # the two figures of the Nano memory budget (docs/jetson.md) that only the device can tell
        log.info("%s: plan %s (%.1f MiB), execution context %.1f MiB of device memory at batch <= %d",
                 self.provider, plan_path, self.plan_bytes / 1048576.0, self.device_memory_bytes / 1048576.0,
                 self.max_batch)

    def _load(self, spec, model_config, state_dir, device, progress):
        """Get a plan (cached or built), deserialize it (rebuilding once if that fails), allocate buffers."""
        from .build import default_cache_dir, get_or_build_plan, process_logger

        cache_dir = default_cache_dir(model_config, state_dir)
        self._logger = process_logger(self._trt)   # the builder below must log to the same one (see build.py)
        with self._cuda.activated():
            self._runtime = self._trt.Runtime(self._logger)
            plan_path = get_or_build_plan(spec, model_config, cache_dir, self._trt, device, progress=progress)
            engine = self._deserialize(plan_path)
            if engine is None:
                log.warning("TensorRT plan %s could not be deserialized (%s); rebuilding it from %s",
                            plan_path, self._logger.last_error() or "no reason given", spec.onnx_path)
                plan_path = get_or_build_plan(spec, model_config, cache_dir, self._trt, device, force=True,
                                              progress=progress)
                engine = self._deserialize(plan_path)
            if engine is None:
                raise EngineError("TensorRT cannot deserialize the plan it just built (%s): %s"
                                  % (plan_path, self._logger.last_error() or "no reason given"))
            self._engine = engine
            self._logger.forget_errors()
            self._context = engine.create_execution_context()
            if self._context is None:
                raise EngineError("TensorRT could not create an execution context for %s (it needs %.1f MiB of GPU "
                                  "memory): %s" % (plan_path, device_memory_size(engine) / 1048576.0,
                                                   self._logger.last_error() or "no reason given"))
            self._allocate(spec)
        return plan_path

    def _deserialize(self, plan_path):
        """The engine, or None with the reason in the logger (the caller warns once, in its own words)."""
        self._logger.quiet = True
        self._logger.forget_errors()
        try:
            with open(plan_path, "rb") as f:
                return self._runtime.deserialize_cuda_engine(f.read())
        except (OSError, RuntimeError, TypeError) as e:
            # some TensorRT versions raise instead of returning None for a foreign plan
            self._logger.remember_error(str(e))
            return None
        finally:
            self._logger.quiet = False

    def _allocate(self, spec):
        """Pinned host and device buffers for max_batch, allocated once; tensor addresses bound once (8.5+)."""
        tensors = plan_io(self._engine, self._trt, self.max_batch)
        self._input, self._output, self._cam = check_io_matches_spec(tensors, spec, self.max_batch)
        self._tensor_api = uses_tensor_api(self._engine)
        self._host, self._device = {}, {}
        for tensor in tensors:
            self._host[tensor.name] = self._cuda.host_empty(tensor.shape, tensor.dtype)
            self._device[tensor.name] = self._cuda.device_alloc(self._host[tensor.name].nbytes)
        if self._tensor_api:
            for tensor in tensors:
                self._context.set_tensor_address(tensor.name, self._device[tensor.name])
        else:
            self._bindings = [0] * len(tensors)
            for tensor in tensors:
                self._bindings[tensor.index] = self._device[tensor.name]

    def _set_batch(self, n):
        if n == self._current_batch:
            return
        shape = (n,) + self._input.shape[1:]
        if self._tensor_api:
            ok = self._context.set_input_shape(self._input.name, shape)
        else:
            ok = self._context.set_binding_shape(self._input.index, shape)
        if ok is False:
            raise EngineError("TensorRT rejected input shape %s (outside the plan's profile 1..%d)"
                              % (shape, self.max_batch))
        self._current_batch = n

    def _execute(self):
        self._logger.forget_errors()
        if self._tensor_api:
            ok = self._context.execute_async_v3(self._cuda.stream_handle)
        else:
            ok = self._context.execute_async_v2(self._bindings, self._cuda.stream_handle)
        if ok is False:
            raise EngineError("TensorRT execution failed: %s" % (self._logger.last_error() or "no reason given"))

    def infer(self, batch):
        """Run a (N, 3, H, W) float32 batch, 1 <= N <= max_batch; return a fresh (N, classes) float32 array."""
        return self._run(batch, with_map=False)[0]

    def infer_with_map(self, batch):
        return self._run(batch, with_map=self._cam is not None)

    def _run(self, batch, with_map):
        n = int(batch.shape[0])
        if not 1 <= n <= self.max_batch or tuple(batch.shape[1:]) != self._input.shape[1:]:
            raise EngineError("batch of shape %s does not fit the TensorRT engine (N in 1..%d, %s per sample)"
                              % (tuple(batch.shape), self.max_batch, self._input.shape[1:]))
        host_in, host_out = self._host[self._input.name], self._host[self._output.name]
        with self._lock, self._cuda.activated():
            self._set_batch(n)
            host_in[:n] = batch   # converts to the engine's input dtype if it is not float32
            self._cuda.htod_async(self._device[self._input.name], host_in[:n])
            self._execute()
            self._cuda.dtoh_async(host_out[:n], self._device[self._output.name])
            if with_map:
                host_cam = self._host[self._cam.name]
                self._cuda.dtoh_async(host_cam[:n], self._device[self._cam.name])
            self._cuda.synchronize()
            # copies: the pinned buffers are reused by the next call
            cam = host_cam[:n].astype(np.float32, copy=True) if with_map else None
            return host_out[:n].astype(np.float32, copy=True), cam

    def close(self):
        """Free the context, engine and buffers in dependency order; safe to call twice."""
        cuda, self._cuda = getattr(self, "_cuda", None), None
        if cuda is None:
            return
        with cuda.activated():
            self._context = None
            self._engine = None
            self._runtime = None
        cuda.close()
