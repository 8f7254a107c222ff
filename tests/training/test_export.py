"""The ONNX export at full size on real images: every backbone with its ImageNet weights from ../shared/weights,
exported as the shipped model is (opset 13, dynamic batch, constants folded), agrees with torch on real
validation images, and its graph is one TensorRT 8.2 parses (every Pad and Clip reads initializers)."""

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="training needs torch (the train extra, Python 3.8+)")
onnx = pytest.importorskip("onnx", reason="the onnx package comes with the train extra")

from firedetd.training.export import export_onnx, max_abs_difference  # noqa: E402
from firedetd.training.models import BACKBONES, build_classifier  # noqa: E402

SHARED = Path(__file__).resolve().parents[3] / "shared"


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_full_size_export_matches_torch_on_real_images_and_folds_its_constants(clean_torch_process, real_images,
                                                                               backbone, tmp_path):
    torch.manual_seed(0)
    model = build_classifier(backbone, 3, SHARED / "weights").eval()
    path = export_onnx(model, tmp_path / ("%s.onnx" % backbone))

    assert max_abs_difference(model, path, real_images) < 1e-4
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == 13 and graph.ir_version <= 7
    initializers = set(i.name for i in graph.graph.initializer)
    operands = [name for node in graph.graph.node if node.op_type in ("Pad", "Clip") for name in node.input[1:]
                if name]
    assert all(name in initializers for name in operands), backbone
    assert os.path.getsize(path) > 1_000_000
