"""A FAKE `pycuda` (package `pycuda`, module `pycuda.driver`) over the FakeGpu, as strict as the fake TensorRT.

This is not pycuda: there is no GPU here. It has exactly the pycuda 2020.1 names firedetd's `_PyCudaMemory` may
use (pycuda's driver API docs), so a misspelled call is an AttributeError; and it keeps CUDA's rules that real
pycuda enforces: nothing before `init()`, and memory, streams and copies only with a context current on the
calling thread (pycuda raises `LogicError: ... invalid device context` otherwise). Page-locked host memory and
device allocations are counted, so a test can tell what was freed.
"""

import threading
import types

import numpy as np


class LogicError(RuntimeError):
    pass


def make_fake_pycuda(gpu):
    """(pycuda package, pycuda.driver module) over `gpu` (a FakeGpu)."""
    state = {"initialised": False, "stack": {}, "host_live": 0, "device_live": 0, "retained": 0}

    def current():
        return state["stack"].get(threading.get_ident(), [])

    def require_context(what):
        if not state["initialised"]:
            raise LogicError("cuInit has not been called (%s)" % what)
        if not current():
            raise LogicError("%s failed: invalid device context" % what)

    class Context(object):
        def push(self):
            state["stack"].setdefault(threading.get_ident(), []).append(self)
            gpu._active.add(threading.get_ident())

        @staticmethod
        def pop():
            stack = current()
            if not stack:
                raise LogicError("cuCtxPopCurrent failed: no current context")
            stack.pop()
            if not stack:
                gpu._active.discard(threading.get_ident())

        def detach(self):
            state["retained"] -= 1

    class Device(object):
        def __init__(self, index):
            if not state["initialised"]:
                raise LogicError("cuInit has not been called")
            if index != 0:
                raise LogicError("cuDeviceGet failed: invalid device ordinal")

        def retain_primary_context(self):
            state["retained"] += 1
            return Context()

    class HostAllocation(object):
        def __init__(self):
            self.freed = False

        def free(self):
            require_context("cuMemFreeHost")
            if not self.freed:
                self.freed = True
                state["host_live"] -= 1

    class DeviceAllocation(object):
        def __init__(self, nbytes):
            self.address = gpu.alloc(nbytes)
            self.freed = False

        def __int__(self):
            return self.address

        def free(self):
            require_context("cuMemFree")
            if not self.freed:
                self.freed = True
                state["device_live"] -= 1

    class Stream(object):
        def __init__(self):
            require_context("cuStreamCreate")
            self.handle = gpu.new_stream()

        def synchronize(self):
            require_context("cuStreamSynchronize")
            gpu.synchronize(self.handle)

    def init():
        state["initialised"] = True

    def pagelocked_empty(shape, dtype):
        require_context("cuMemHostAlloc")
        state["host_live"] += 1
        array = np.zeros(shape, dtype=dtype).view(_Pinned)
        array._allocation = HostAllocation()   # .base is the allocation, as in pycuda
        return array

    def mem_alloc(nbytes):
        require_context("cuMemAlloc")
        state["device_live"] += 1
        return DeviceAllocation(nbytes)

    def memcpy_htod_async(dest, src, stream):
        require_context("cuMemcpyHtoDAsync")
        if not isinstance(dest, DeviceAllocation) or not isinstance(stream, Stream):
            raise TypeError("memcpy_htod_async(DeviceAllocation, array, Stream)")
        data = np.frombuffer(np.ascontiguousarray(src).tobytes(), np.uint8)

        def copy():
            gpu.view(dest.address, data.nbytes)[:] = data
        gpu.enqueue(stream.handle, copy)

    def memcpy_dtoh_async(dest, src, stream):
        require_context("cuMemcpyDtoHAsync")
        if not isinstance(src, DeviceAllocation) or not isinstance(stream, Stream):
            raise TypeError("memcpy_dtoh_async(array, DeviceAllocation, Stream)")

        def copy():
            flat = dest.reshape(-1).view(np.uint8)
            flat[:] = gpu.view(src.address, flat.nbytes)
        gpu.enqueue(stream.handle, copy)

    driver = types.ModuleType("pycuda.driver")
    for name, value in (("init", init), ("Device", Device), ("Context", Context), ("Stream", Stream),
                        ("pagelocked_empty", pagelocked_empty), ("mem_alloc", mem_alloc),
                        ("memcpy_htod_async", memcpy_htod_async), ("memcpy_dtoh_async", memcpy_dtoh_async),
                        ("LogicError", LogicError)):
        setattr(driver, name, value)
    driver.FAKE = state
    package = types.ModuleType("pycuda")
    package.driver = driver
    package.VERSION_TEXT = "2020.1 (FAKE)"
    return package, driver


class _Pinned(np.ndarray):
    """An ndarray whose .base is the fake page-locked allocation, as pycuda's pagelocked_empty returns."""

    def __array_finalize__(self, obj):
        self._allocation = getattr(obj, "_allocation", None)

    @property
    def base(self):
        return self._allocation
