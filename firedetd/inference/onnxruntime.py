"""ONNX Runtime backend: CPU everywhere, the CUDA execution provider where onnxruntime-gpu finds a GPU."""

import logging

import numpy as np

from ..errors import EngineError, ModelError
from ..modelspec import verify_model_file
from . import Engine

log = logging.getLogger(__name__)


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise EngineError("model.engine: onnxruntime is not installed (%s); pip install onnxruntime" % e)
    # telemetry is on by default in some builds: events queued under ~/.cache/Microsoft, and a warning on every
    # command for a service user without a writable home. A fire alarm phones nowhere.
    disable = getattr(onnxruntime, "disable_telemetry_events", None)
    if disable is not None:
        disable()
    return onnxruntime


def choose_providers(available, want_cuda):
    """CUDA first when asked for and present, CPU always as the fallback."""
    providers = []
    if want_cuda and "CUDAExecutionProvider" in available:
        providers.append("CUDAExecutionProvider")
    providers.append("CPUExecutionProvider")
    return providers


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, spec, model_config, state_dir=None):
        ort = _import_onnxruntime()
        variant = model_config.variant
        if variant not in spec.files:
            raise ModelError("model.variant: %r is not in %s (has %s)" % (variant, spec.spec_path,
                                                                         ", ".join(sorted(spec.files))))
        model_file = spec.files[variant]
        verify_model_file(model_file)
        options = ort.SessionOptions()
        options.intra_op_num_threads = model_config.threads
        # one frame batch at a time flows through the graph: inter-op parallelism only adds threads
        options.inter_op_num_threads = 1
        # Idle intra-op threads would spin for work, burning the cores the decoder and the other threads need: on 2
        # shared cores spinning doubled the engine's CPU per frame and, with 4 cameras, stalled batches for
        # hundreds of ms (docs/benchmarks.md). Sleeping costs a wake-up per parallel section, far less.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = choose_providers(ort.get_available_providers(), model_config.cuda)
        try:
            self.session = ort.InferenceSession(model_file.path, sess_options=options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types per version
            raise ModelError("%s: ONNX Runtime cannot load the model (%s)" % (model_file.path, str(e).splitlines()[0]))
        self.provider = self.session.get_providers()[0]
        self.max_batch = model_config.max_batch
        self._check_against_spec(spec, model_file.path)
        self.input_name = spec.input.name
        self.output_name = spec.output.name
        self.cam_name = spec.cam.name if spec.cam is not None else None
        log.info("engine: ONNX Runtime %s, %s, %s, %d threads", ort.__version__, self.provider,
                 model_file.path, model_config.threads)

    def _check_against_spec(self, spec, path):
        """The model's real inputs/outputs must agree with the spec, or every answer would be wrong."""
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if spec.input.name not in inputs:
            raise ModelError("%s: model has no input %r (it has %s), as %s says" % (
                path, spec.input.name, ", ".join(inputs), spec.spec_path))
        shape = inputs[spec.input.name].shape
        want = [3, spec.input.height, spec.input.width]
        if len(shape) != 4 or list(shape[1:]) != want:
            raise ModelError("%s: input %r has shape %s, but %s says [N, %d, %d, %d]" % (
                path, spec.input.name, shape, spec.spec_path, want[0], want[1], want[2]))
        if isinstance(shape[0], int):  # a static batch dimension caps the batch
            self.max_batch = min(self.max_batch, shape[0])
        if spec.output.name not in outputs:
            raise ModelError("%s: model has no output %r (it has %s), as %s says" % (
                path, spec.output.name, ", ".join(outputs), spec.spec_path))
        classes = outputs[spec.output.name].shape[-1]
        if isinstance(classes, int) and classes != len(spec.labels):
            raise ModelError("%s: output %r has %d classes, but %s lists %d labels %s" % (
                path, spec.output.name, classes, spec.spec_path, len(spec.labels), list(spec.labels)))
        if spec.cam is None:
            return   # a model with a map the spec does not describe still runs: the map is never fetched
        if spec.cam.name not in outputs:
            raise ModelError("%s: model has no output %r (it has %s), as %s says under 'cam'" % (
                path, spec.cam.name, ", ".join(outputs), spec.spec_path))
        shape = list(outputs[spec.cam.name].shape)
        want = [len(spec.labels), spec.cam.height, spec.cam.width]
        if len(shape) != 4 or any(isinstance(d, int) and d != w for d, w in zip(shape[1:], want)):
            raise ModelError("%s: output %r has shape %s, but %s says [N, %d, %d, %d]" % (
                path, spec.cam.name, shape, spec.spec_path, want[0], want[1], want[2]))

    def infer(self, batch):
        if batch.shape[0] > self.max_batch:
            raise EngineError("batch of %d exceeds max_batch %d" % (batch.shape[0], self.max_batch))
        output = self.session.run([self.output_name], {self.input_name: batch})[0]
        return np.asarray(output, dtype=np.float32)

    def infer_with_map(self, batch):
        if self.cam_name is None:
            return self.infer(batch), None
        if batch.shape[0] > self.max_batch:
            raise EngineError("batch of %d exceeds max_batch %d" % (batch.shape[0], self.max_batch))
        output, cam = self.session.run([self.output_name, self.cam_name], {self.input_name: batch})
        return np.asarray(output, dtype=np.float32), np.asarray(cam, dtype=np.float32)
