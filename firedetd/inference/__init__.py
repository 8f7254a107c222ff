"""Inference engines: the interface, and the registry that picks a backend by name.

An engine is "input spec, infer batch": it is built from the model spec and the model config,
takes an NCHW float32 batch shaped by `preprocess.py`, and returns the raw output (N, classes)
as the spec's `output.kind` says (logits or probabilities). Heavy imports (onnxruntime, tensorrt,
pycuda) happen inside each backend, never here.
"""

import importlib
import logging
from typing import NamedTuple, Optional

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

    def infer_with_map(self, batch):
        """(outputs, class activation map (N, classes, h, w) float32, or None when the model spec has no `cam`)."""
        return self.infer(batch), None

    def close(self):
        pass


class EngineBackend(NamedTuple):
    """One inference backend: the name `model.engine` gives it, and where its class lives."""

    name: str
    label: str                  # for people: "TensorRT", "ONNX Runtime"
    target: str                 # "module:Class", imported only when the backend is used
    probe: Optional[str]        # "module:function" -> None when it can run here, else why not (ImportError: not
                                # installed at all, skipped without a word); None: always runs (the fallback)


# Every engine, in `auto`'s order: the first that can run here is used. This list is the only one: config
# validation, `--engine` of `run`/`check-config`/`bench` and the docs take their choices from it.
ENGINES = (
    EngineBackend("tensorrt", "TensorRT", "firedetd.inference.tensorrt:TensorRTEngine",
                  "firedetd.inference.tensorrt:auto_unusable_reason"),
    EngineBackend("onnxruntime", "ONNX Runtime", "firedetd.inference.onnxruntime:OnnxRuntimeEngine", None),
)
ENGINE_CHOICES = ("auto",) + tuple(e.name for e in ENGINES)


def engine_backend(name: str) -> EngineBackend:
    """The registered backend called `name` (KeyError when none is)."""
    for backend in ENGINES:
        if backend.name == name:
            return backend
    raise KeyError(name)


def _import_target(target):
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def load_backend(name):
    """The engine class of backend `name` (imports its module, and so its heavy libraries)."""
    return _import_target(engine_backend(name).target)


def unusable_reason(backend: EngineBackend) -> Optional[str]:
    """None when `backend` can run here; else why not. ImportError when it is not installed at all."""
    if backend.probe is None:
        return None
    return _import_target(backend.probe)()


def tensorrt_usable():
    """True when the tensorrt module imports, a CUDA GPU answers and pycuda or cuda-python imports (what
    `engine: auto` asks)."""
    try:
        from .tensorrt import gpu_available
    except ImportError:
        return False
    return gpu_available()


def choose_backend(model_config):
    """The backend `model.engine` names; for `auto`, the first of ENGINES that can run here, with a warning for
    each one installed but unable to run (a Nano whose pycuda build failed)."""
    if model_config.engine != "auto":
        return model_config.engine
    passed_over = []
    for backend in ENGINES:
        try:
            reason = unusable_reason(backend)
        except ImportError:
            continue
        if reason is None:
            for skipped, why in passed_over:
                log.warning("model.engine auto: %s is installed but cannot run (%s); using %s", skipped.label, why,
                            backend.label)
            return backend.name
        passed_over.append((backend, reason))
    # the last entry has no probe, so this is reached only if someone gives every backend one
    return ENGINES[-1].name


def create_engine(spec, model_config, state_dir):
    """Build the engine the config names (or `auto` picks) for the model spec; raise EngineError if it cannot."""
    name = choose_backend(model_config)
    try:
        backend = load_backend(name)
    except ImportError as e:
        raise EngineError("model.engine: backend %r cannot be imported (%s); install the matching extra" % (name, e))
    return backend(spec, model_config, state_dir)
