"""Fixtures for the inference tests: a tiny model spec on disk, the FAKE tensorrt module, and the real-hardware gates.

The `tensorrt` marker labels tests that need the real TensorRT and an NVIDIA GPU; `gpu` (pyproject.toml)
labels tests that need a CUDA GPU and pycuda or cuda-python. Both skip with a reason where those are
absent, as on these machines.
"""

import hashlib
import json
import sys

import pytest

from firedetd.modelspec import load_spec

from .fake_tensorrt import FakeCudaMemory, FakeGpu, fake_onnx_bytes, make_fake_tensorrt


def pytest_configure(config):
    config.addinivalue_line("markers", "tensorrt: needs the real TensorRT and an NVIDIA GPU (skipped elsewhere)")


def write_spec(directory, model_bytes, output_name="logits", height=8, width=8, name="tiny"):
    """Write model.onnx and a model spec for it; return the loaded ModelSpec."""
    model_path = directory / "model.onnx"
    model_path.write_bytes(model_bytes)
    spec = {
        "name": name, "version": "1", "labels": ["fire", "smoke", "none"],
        "input": {"name": "input", "height": height, "width": width, "layout": "NCHW", "color": "RGB",
                  "scale": 1.0 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "resize": "stretch"},
        "output": {"name": output_name, "kind": "logits"},
        "files": {"fp32": {"path": "model.onnx", "sha256": hashlib.sha256(model_bytes).hexdigest()}},
    }
    spec_path = directory / "firedetd.json"
    spec_path.write_text(json.dumps(spec))
    return load_spec(str(spec_path))


@pytest.fixture
def tiny_spec(tmp_path):
    """A spec for a FAKE "ONNX" model: input "input" (N, 3, 8, 8), output "logits" (N, 3)."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    return write_spec(model_dir, fake_onnx_bytes())


@pytest.fixture
def fake_trt():
    """Factory for FAKE tensorrt modules: fake_trt(version, gpu) -> module (never installed in sys.modules)."""
    def make(version="8.2.1", gpu=None):
        return make_fake_tensorrt(version, gpu or FakeGpu())
    return make


@pytest.fixture
def installed_fake_trt(monkeypatch):
    """Install a FAKE tensorrt 8.2.1 as sys.modules["tensorrt"] for this test only."""
    module = make_fake_tensorrt("8.2.1", FakeGpu())
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


@pytest.fixture
def fake_cuda():
    """Factory: FakeCudaMemory on a FakeGpu."""
    return FakeCudaMemory


@pytest.fixture
def real_tensorrt():
    """The real tensorrt module on a machine with a GPU; skips with the reason otherwise."""
    try:
        import tensorrt
    except ImportError as e:
        pytest.skip("real TensorRT is not installed here (%s)" % e)
    if getattr(tensorrt, "FAKE", None) is not None:
        pytest.skip("sys.modules holds the FAKE tensorrt")
    from firedetd.inference.tensorrt import gpu_available

    if not gpu_available():
        pytest.skip("no CUDA GPU answers here")
    return tensorrt


@pytest.fixture
def onnx_module():
    """The onnx package (to write tiny real ONNX models); only in the 3.11 venv."""
    return pytest.importorskip("onnx", reason="the onnx package is installed only in the Python 3.11 venv")


def tiny_conv_onnx(onnx, classes=3, height=8, width=8):
    """Serialized opset-13 model: input (N,3,H,W) -> Conv 3x3 -> ReLU -> GlobalAveragePool -> Flatten -> Gemm."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(7)
    weights = [
        numpy_helper.from_array(rng.randn(4, 3, 3, 3).astype(np.float32) * 0.5, "conv_w"),
        numpy_helper.from_array(rng.randn(4).astype(np.float32) * 0.1, "conv_b"),
        numpy_helper.from_array(rng.randn(classes, 4).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.randn(classes).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7   # readable by TensorRT 8.2's parser and ONNX Runtime 1.10
    onnx.checker.check_model(model)
    return model.SerializeToString()
