"""The two interpreters that run firedetd-micro's .tflite: TensorFlow Lite Micro (tflite-micro, the kernels a
board runs, with a fixed tensor arena) and LiteRT (ai-edge-litert, the phone/desktop runtime) for comparison.

Both take the (1, 96, 96, 3) int8 input that `firedetd.micro.quantize_frame` makes and return the int8 logits.
Imports happen here, not in `firedetd.micro`, so the board contract stays importable without them.
"""

import contextlib
import os
import tempfile

import numpy as np


@contextlib.contextmanager
def _quiet_stderr():
    """TFLM reports a too-small arena on the C stderr (several lines per try); the arena search makes ~12 tries."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class MicroInterpreter(object):
    """tflite-micro's Python interpreter (the TFLM reference kernels) with a tensor arena of `arena_bytes`."""

    runtime = "tflite-micro"

    def __init__(self, model_bytes, arena_bytes):
        from tflite_micro.python.tflite_micro import runtime

        self.arena_bytes = arena_bytes
        self._interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=arena_bytes)
        self.input_details = self._interpreter.get_input_details(0)
        self.output_details = self._interpreter.get_output_details(0)

    def invoke(self, q_input):
        """(1, H, W, 3) int8 -> (1, classes) int8."""
        self._interpreter.set_input(q_input, 0)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_output(0))


class LiteRTInterpreter(object):
    """ai-edge-litert's interpreter, one thread: by default as a desktop or phone app gets it (the XNNPACK delegate
    takes the ops it can), with `xnnpack=False` only its built-in kernels (bit-identical to TFLM's, measured)."""

    runtime = "ai-edge-litert"

    def __init__(self, model_bytes, xnnpack=True):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self._interpreter = Interpreter(model_content=model_bytes, num_threads=1,
                                        experimental_op_resolver_type=resolver)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def invoke(self, q_input):
        self._interpreter.set_tensor(self._input, q_input)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output).copy()


def _runs_with_arena(model_bytes, arena_bytes, q_input):
    try:
        with _quiet_stderr():
            MicroInterpreter(model_bytes, arena_bytes).invoke(q_input)
        return True
    except RuntimeError:
        return False


def minimum_arena(model_bytes, q_input, upper=1 << 20, step=16):
    """The smallest tensor arena (bytes, to `step`) with which TFLM allocates every tensor and runs the model:
    the figure a board reserves (kernels with scratch buffers, e.g. CMSIS-NN or ESP-NN, may add some)."""
    if not _runs_with_arena(model_bytes, upper, q_input):
        raise RuntimeError("the model does not run in TFLM even with a %d-byte arena" % upper)
    low, high = 0, upper
    while high - low > step:
        middle = (low + high) // 2
        if _runs_with_arena(model_bytes, middle, q_input):
            high = middle
        else:
            low = middle
    return high
