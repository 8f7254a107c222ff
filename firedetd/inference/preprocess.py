"""Frames (H, W, 3 uint8, already at model size and colour order) -> the model's NCHW float32 batch.

Vectorised: one stack, one transposing conversion to float32, one multiply-add per channel plane. Scaling and colour
conversion already happened in the capture pipeline (GStreamer or OpenCV), so nothing is resized here.
"""

import numpy as np

from ..errors import EngineError


class Preprocessor(object):
    """Apply the spec's `scale`, `mean` and `std`: x = (pixel * scale - mean) / std, then HWC -> CHW."""

    def __init__(self, input_spec):
        self.height = input_spec.height
        self.width = input_spec.width
        std = np.asarray(input_spec.std, dtype=np.float32)
        # folded into one multiply and one add: x = pixel * (scale / std) + (-mean / std), per channel plane
        self._mul = (np.float32(input_spec.scale) / std).reshape(1, 3, 1, 1)
        self._add = (-np.asarray(input_spec.mean, dtype=np.float32) / std).reshape(1, 3, 1, 1)

    def __call__(self, images):
        """Stack a list of (H, W, 3) uint8 images into a contiguous (N, 3, H, W) float32 batch."""
        batch = np.stack(images) if isinstance(images, (list, tuple)) else images
        if batch.ndim != 4 or batch.shape[1:] != (self.height, self.width, 3):
            raise EngineError("frame of shape %s does not match the model input (%d, %d, 3)"
                              % (tuple(batch.shape[1:]), self.height, self.width))
        # HWC -> CHW while converting to float32, then scale whole planes: numpy broadcasting over a trailing axis
        # of 3 ran about 10x slower (0.7 ms a frame, 4 ms a batch of 4: docs/benchmarks.md)
        x = np.empty((batch.shape[0], 3, self.height, self.width), dtype=np.float32)
        x[...] = batch.transpose(0, 3, 1, 2)
        x *= self._mul
        x += self._add
        return x


def softmax(logits):
    """Row-wise softmax of an (N, C) array, stable for large logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def to_probabilities(output, kind):
    """Engine output -> probabilities, as the spec's `output.kind` says."""
    output = np.asarray(output, dtype=np.float32)
    return softmax(output) if kind == "logits" else output
