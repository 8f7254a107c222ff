"""firedetd/training/trtcalib.py and the shipped engines/firedetd-int8.calib (TensorRT's cache format)."""

import os
import struct

import pytest

pytest.importorskip("torch", reason="training needs torch (the train extra, Python 3.8+)")
onnx = pytest.importorskip("onnx")

from firedetd.training.trtcalib import TRT_HEADER, read_trt_calibration_cache, scale_hex  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_scale_is_threshold_over_127_as_float32_hex():
    assert struct.unpack(">f", bytes.fromhex(scale_hex(127.0)))[0] == 1.0
    assert struct.unpack(">f", bytes.fromhex(scale_hex(6.0)))[0] == pytest.approx(6.0 / 127)


def test_shipped_cache_covers_the_onnx_graph(spec):
    from pathlib import Path

    path = Path(os.path.join(REPO, "engines", "firedetd-int8.calib"))
    assert path.read_text().splitlines()[0] == TRT_HEADER
    scales = read_trt_calibration_cache(path)
    model = onnx.load(spec.onnx_path)
    # every activation TensorRT quantises (constants need no scale)
    activations = {o for node in model.graph.node if node.op_type in ("Conv", "Clip", "Add", "Pad", "Gemm",
                                                                      "GlobalAveragePool") for o in node.output}
    assert spec.input.name in scales and spec.output.name in scales
    assert activations <= set(scales)
    assert all(0 < s < 10 for s in scales.values())
