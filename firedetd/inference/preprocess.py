"""Frames (H, W, 3 uint8, already at model size and colour order) -> the model's NCHW float32 batch.

Vectorised: one stack, one multiply-add per pixel in numpy, one transpose. Scaling and colour
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
        # folded into one multiply and one add: x = pixel * (scale / std) + (-mean / std)
        self._mul = (np.float32(input_spec.scale) / std).reshape(1, 1, 1, 3)
        self._add = (-np.asarray(input_spec.mean, dtype=np.float32) / std).reshape(1, 1, 1, 3)

    def __call__(self, images):
        """Stack a list of (H, W, 3) uint8 images into a contiguous (N, 3, H, W) float32 batch."""
        batch = np.stack(images) if isinstance(images, (list, tuple)) else images
        if batch.ndim != 4 or batch.shape[1:] != (self.height, self.width, 3):
            raise EngineError("frame of shape %s does not match the model input (%d, %d, 3)"
                              % (tuple(batch.shape[1:]), self.height, self.width))
        x = batch.astype(np.float32)
        x *= self._mul
        x += self._add
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def softmax(logits):
    """Row-wise softmax of an (N, C) array, stable for large logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def to_probabilities(output, kind):
    """Engine output -> probabilities, as the spec's `output.kind` says."""
    output = np.asarray(output, dtype=np.float32)
    return softmax(output) if kind == "logits" else output
