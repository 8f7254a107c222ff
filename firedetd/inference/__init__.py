"""Inference engines: the interface, and the registry that picks a backend by name.

An engine is "input spec, infer batch": it is built from the model spec and the model config,
takes an NCHW float32 batch shaped by `preprocess.py`, and returns the raw output (N, classes)
as the spec's `output.kind` says (logits or probabilities). Heavy imports (onnxruntime, tensorrt,
pycuda) happen inside each backend, never here.
"""

import importlib
import logging

from ..errors import EngineError

log = logging.getLogger(__name__)


class Engine(object):
    """Interface of an inference backend."""

    name = "abstract"
    max_batch = 1
    provider = ""      # e.g. CPUExecutionProvider, CUDAExecutionProvider, TensorRT FP16

    def infer(self, batch):
        """Run a (N, 3, H, W) float32 batch, N <= max_batch; return a (N, classes) float32 array."""
        raise NotImplementedError

    def close(self):
        pass


BACKENDS = {
    "onnxruntime": "firedetd.inference.onnxruntime:OnnxRuntimeEngine",
    "tensorrt": "firedetd.inference.tensorrt:TensorRTEngine",
}


def load_backend(name):
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def tensorrt_usable():
    """True when the tensorrt module imports, a CUDA GPU answers and pycuda or cuda-python imports (what
    `engine: auto` asks)."""
    try:
        from .tensorrt import gpu_available
    except ImportError:
        return False
    return gpu_available()


def choose_backend(model_config):
    """The backend `model.engine` names; for `auto`, TensorRT when it can run here, else ONNX Runtime, with a
    warning when TensorRT is installed but something it needs is not (a Nano whose pycuda build failed)."""
    if model_config.engine != "auto":
        return model_config.engine
    try:
        from .tensorrt import tensorrt_unusable_reason
    except ImportError:
        return "onnxruntime"
    reason = tensorrt_unusable_reason()
    if reason is None:
        return "tensorrt"
    if not reason.startswith("tensorrt does not import"):
        log.warning("model.engine auto: TensorRT is installed but cannot run (%s); using ONNX Runtime", reason)
    return "onnxruntime"


def create_engine(spec, model_config, state_dir):
    """Build the engine the config names (or `auto` picks) for the model spec; raise EngineError if it cannot."""
    name = choose_backend(model_config)
    try:
        backend = load_backend(name)
    except ImportError as e:
        raise EngineError("model.engine: backend %r cannot be imported (%s); install the matching extra" % (name, e))
    return backend(spec, model_config, state_dir)
