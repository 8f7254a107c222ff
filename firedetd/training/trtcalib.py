"""Write TensorRT's INT8 calibration cache (engines/firedetd-int8.calib) without TensorRT or a GPU.

TensorRT's IInt8EntropyCalibrator2 picks, per tensor, the clipping threshold that minimises the KL
divergence between the FP32 activation histogram and its INT8 quantisation, and stores
`scale = threshold / 127` per tensor name in a text cache:

    TRT-8201-EntropyCalibration2
    input: 3c010a14
    <tensor name>: <IEEE-754 float32 scale, big-endian hex>

ONNX Runtime's entropy calibrator computes the same kind of threshold over the same ONNX tensor
names (TensorRT's ONNX parser names its tensors after the ONNX values), so the cache can be made
here from training images and shipped: a Xavier/Orin builds an INT8 plan from it without the
dataset. `firedetd build-engine --calibrate DIR` on a device with TensorRT replaces it with
TensorRT's own calibration when wanted.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np

TRT_HEADER = "TRT-8201-EntropyCalibration2"


def scale_hex(threshold: float) -> str:
    """The cache's encoding of a tensor's scale: the float32 bits of threshold/127 in hex."""
    scale = max(float(threshold), 1e-8) / 127.0
    return "%08x" % struct.unpack(">I", struct.pack(">f", scale))[0]


def entropy_thresholds(onnx_path: Path, batches: list[np.ndarray], input_name: str = "input") -> dict[str, float]:
    """Per-tensor KL-divergence thresholds from ONNX Runtime's entropy calibrator."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    class Reader:
        def __init__(self):
            self.items = iter({input_name: b} for b in batches)

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as work:
        calibrator = create_calibrator(str(onnx_path), augmented_model_path=str(Path(work) / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.Entropy)
        calibrator.collect_data(Reader())
        ranges = calibrator.compute_data()
    thresholds = {}
    for name, data in ranges.data.items():
        low, high = (float(np.asarray(v).max()) if np.size(v) else 0.0 for v in data.range_value)
        thresholds[name] = max(abs(low), abs(high))
    return thresholds


def write_trt_calibration_cache(path: Path, thresholds: dict[str, float]) -> Path:
    lines = [TRT_HEADER] + [f"{name}: {scale_hex(t)}" for name, t in sorted(thresholds.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_trt_calibration_cache(path: Path) -> dict[str, float]:
    """name -> scale, for checks and tests."""
    lines = path.read_text().splitlines()
    if not lines or not lines[0].startswith("TRT-") or "Calibration" not in lines[0]:
        raise ValueError(f"{path}: not a TensorRT calibration cache (header {lines[:1]})")
    scales = {}
    for line in lines[1:]:
        name, _, value = line.rpartition(": ")
        scales[name] = struct.unpack(">f", bytes.fromhex(value))[0]
    return scales
