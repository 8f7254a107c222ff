"""firedetd-micro: the fire/smoke/none classifier for microcontrollers (docs/micro.md).

This module is the board's contract in Python: read the micro spec (engines/micro/firedetd-micro.json),
turn a camera frame into the model's INT8 input exactly as firmware must (stretch to 96x96 by area
averaging, (pixel - 128) / 128, quantize with the input tensor's scale and zero point), and turn the INT8
logits back into probabilities. numpy and OpenCV only, Python 3.6 syntax: the daemon's Python can import it.
The interpreters (tflite-micro, ai-edge-litert) are in `firedetd.micro.runtime`.
"""

import hashlib
import json
import os

import cv2
import numpy as np

from ..paths import engines_dir

# the checkout's engines/micro, or <prefix>/share/firedetd/engines/micro from an installed wheel
MICRO_DIR = os.path.join(engines_dir(), "micro")
SPEC_NAME = "firedetd-micro.json"
FLASH_BUDGET_BYTES = 300 * 1024
ARENA_BUDGET_BYTES = 200 * 1024


class MicroSpec(object):
    """What a board needs to run the model: labels, input size and quantization, output quantization."""

    def __init__(self, raw, directory):
        self.raw = raw
        self.directory = directory
        self.name = raw["name"]
        self.version = raw["version"]
        self.labels = list(raw["labels"])
        self.input = raw["input"]
        self.output = raw["output"]
        self.arena_bytes = int(raw["arena_bytes"])

    @property
    def size(self):
        return int(self.input["width"]), int(self.input["height"])

    @property
    def model_path(self):
        return os.path.join(self.directory, self.raw["files"]["tflite"]["path"])

    def model_bytes(self):
        """The .tflite flatbuffer, checked against the spec's sha256 (a stale spec must not pass as current)."""
        with open(self.model_path, "rb") as f:
            data = f.read()
        expected = self.raw["files"]["tflite"]["sha256"]
        if hashlib.sha256(data).hexdigest() != expected:
            raise ValueError("%s: sha256 differs from %s (re-run firedetd export-micro)" % (self.model_path, SPEC_NAME))
        return data


def load_micro_spec(path=None):
    """Read engines/micro/firedetd-micro.json (or `path`)."""
    path = path or os.path.join(MICRO_DIR, SPEC_NAME)
    with open(path) as f:
        return MicroSpec(json.load(f), os.path.dirname(os.path.abspath(path)))


def input_lookup_table(scale, zero_point):
    """int8 input value for each 8-bit pixel value 0..255: round(((p - 128) / 128) / scale) + zero_point, clipped.
    A board applies this 256-byte table per pixel instead of any float arithmetic."""
    pixels = np.arange(256, dtype=np.float64)
    q = np.round((pixels - 128.0) / 128.0 / scale) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def resize_frame(rgb, size):
    """The whole frame stretched to size = (width, height) by area averaging, as the board's camera path does."""
    return cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_AREA)


def quantize_frame(rgb, spec):
    """An RGB uint8 frame of any size -> the model's (1, H, W, 3) int8 input."""
    table = input_lookup_table(spec.input["scale"], spec.input["zero_point"])
    small = resize_frame(rgb, spec.size)
    return table[small][None]


def dequantize_output(q, spec):
    """INT8 logits -> float logits (the temperature is already folded into the last layer)."""
    return (q.astype(np.float32) - spec.output["zero_point"]) * spec.output["scale"]


def softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
