"""The class activation map as a second ONNX output (firedetd/training/export.py WithClassMap), on real images:
the exported `cam` equals torch's per-cell head, pooling it gives the logits, and the shipped checkpoint exported
with the map gives the daemon the same logits and probabilities as the shipped single-output engine."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (the train extra, Python 3.8+)")
onnx = pytest.importorskip("onnx", reason="the onnx package comes with the train extra")

from firedetd.config import ModelConfig  # noqa: E402
from firedetd.inference.onnxruntime import OnnxRuntimeEngine  # noqa: E402
from firedetd.inference.preprocess import Preprocessor, to_probabilities  # noqa: E402
from firedetd.modelspec import load_spec  # noqa: E402
from firedetd.training.augment import to_input  # noqa: E402
from firedetd.training.cam import check_peaks, covered_fraction, export_cam_model, inside, read_boxes  # noqa: E402
from firedetd.training.export import (  # noqa: E402
    CAM_NAME,
    class_map,
    export_onnx,
    load_checkpoint,
    max_abs_difference,
    sha256_of,
)
from firedetd.training.models import BACKBONES, build_classifier  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
# the weights engines/firedetd.onnx was exported from (runs/v5-edgetpu/best.pt less its optimizer state)
SHIPPED_CHECKPOINT = ROOT / "engines" / "firedetd.pt"


@pytest.fixture(scope="module")
def shipped_with_cam(tmp_path_factory):
    """The shipped checkpoint exported with the map, beside a copy of the shipped spec that describes it."""
    if not SHIPPED_CHECKPOINT.is_file():
        pytest.skip("engines/firedetd.pt (the shipped model's checkpoint) is not in this checkout")
    out = tmp_path_factory.mktemp("cam-engines")
    spec_path = export_cam_model(SHIPPED_CHECKPOINT, "edgetpu", out, ROOT / "engines" / "firedetd.json")
    return load_checkpoint(SHIPPED_CHECKPOINT, "edgetpu"), spec_path


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_exported_cam_equals_torch_and_pools_to_the_logits(clean_torch_process, real_images, backbone, tmp_path):
    torch.manual_seed(0)
    model = build_classifier(backbone, 3, SHARED / "weights").eval()
    # a random head with a bias: ImageNet features with the fresh zero-bias head would hide a mishandled bias
    with torch.no_grad():
        model.classifier.weight.normal_(std=0.05)
        model.classifier.bias.uniform_(-1, 1)
    path = export_onnx(model, tmp_path / "cam.onnx", cam=True)
    assert not model.training   # the export once left it in train mode: BatchNorm on batch statistics

    graph = onnx.load(str(path)).graph
    assert [o.name for o in graph.output] == ["logits", CAM_NAME]
    dims = [d.dim_param or d.dim_value for d in graph.output[1].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 7, 7]
    assert max_abs_difference(model, path, real_images, CAM_NAME) < 1e-4
    assert max_abs_difference(model, path, real_images) < 1e-4

    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, cam = session.run(None, {"input": to_input(real_images)})
    assert cam.shape == (len(real_images), 3, 7, 7)
    assert np.abs(cam.mean(axis=(2, 3)) - logits).max() < 1e-4
    assert cam.std(axis=(2, 3)).min() > 1e-3   # a map, not the logits broadcast over the cells


def test_cam_of_the_shipped_checkpoint_carries_the_folded_temperature(clean_torch_process, shipped_with_cam,
                                                                       real_images):
    model, _ = shipped_with_cam
    assert model.temperature != 1.0
    raw = build_classifier("edgetpu", 3, None)
    raw.load_state_dict(torch.load(SHIPPED_CHECKPOINT, map_location="cpu", weights_only=True)["model"])
    x = torch.from_numpy(to_input(real_images[:4]))
    with torch.no_grad():
        unscaled, scaled = class_map(raw.eval(), x), class_map(model, x)
    assert torch.allclose(scaled, unscaled / model.temperature, atol=1e-4)


def spec_for(model_path, base_spec_path, cam):
    """A copy of a spec naming `model_path`, with or without its 'cam' description."""
    raw = json.loads(Path(base_spec_path).read_text())
    raw["files"] = {"fp32": {"path": model_path.name, "sha256": sha256_of(model_path), "precision": "fp32"}}
    if not cam:
        raw.pop("cam", None)
    path = model_path.parent / "firedetd.json"
    path.write_text(json.dumps(raw))
    return load_spec(str(path))


def test_the_map_leaves_the_daemons_logits_as_the_single_output_export_gives_them(clean_torch_process,
                                                                                   shipped_with_cam, real_images,
                                                                                   tmp_path):
    model, spec_path = shipped_with_cam
    with_cam = load_spec(str(spec_path))
    assert with_cam.cam is not None and (with_cam.cam.height, with_cam.cam.width) == (7, 7)
    (tmp_path / "single").mkdir()
    single = spec_for(export_onnx(model, tmp_path / "single" / "firedetd.onnx"), spec_path, cam=False)
    assert single.cam is None   # the export and spec as they were before the map

    batch = Preprocessor(with_cam.input)(list(real_images[:8]))
    old_logits, no_map = OnnxRuntimeEngine(single, ModelConfig(max_batch=8)).infer_with_map(batch)
    new_engine = OnnxRuntimeEngine(with_cam, ModelConfig(max_batch=8))
    logits, cam = new_engine.infer_with_map(batch)
    assert no_map is None and cam.shape == (8, 3, 7, 7)
    assert np.abs(new_engine.infer(batch) - old_logits).max() < 1e-5
    assert np.abs(logits - old_logits).max() < 1e-5
    assert np.abs(to_probabilities(logits, "logits") - to_probabilities(old_logits, "logits")).max() < 1e-6

    # the model with the map under a spec written before the map existed: loads, runs, fetches no map
    (tmp_path / "old-spec").mkdir()
    shutil.copy(str(spec_path.parent / "firedetd.onnx"), str(tmp_path / "old-spec" / "firedetd.onnx"))
    old_spec = spec_for(tmp_path / "old-spec" / "firedetd.onnx", spec_path, cam=False)
    logits_only, no_map = OnnxRuntimeEngine(old_spec, ModelConfig(max_batch=8)).infer_with_map(batch)
    assert no_map is None and np.abs(logits_only - old_logits).max() < 1e-5

    # engines/ ships this export: its map and logits are the ones computed here
    shipped = load_spec(str(ROOT / "engines" / "firedetd.json"))
    shipped_logits, shipped_cam = OnnxRuntimeEngine(shipped, ModelConfig(max_batch=8)).infer_with_map(batch)
    assert shipped.cam == with_cam.cam
    assert np.abs(shipped_logits - logits).max() < 1e-5 and np.abs(shipped_cam - cam).max() < 1e-4


def test_boxes_are_read_per_photo_of_the_split_and_tested_by_their_edges():
    if not (SHARED / "data" / "fire-smoke" / "boxes.csv").is_file():
        pytest.skip("../shared/data/fire-smoke/boxes.csv is not beside this checkout")
    boxes = read_boxes(SHARED / "data" / "fire-smoke" / "boxes.csv", "test")
    assert boxes and all(name.startswith("test/") and "/lzdet_" in name for name in boxes)
    assert {kind for rows in boxes.values() for kind, _ in rows} == {"fire", "smoke"}
    box = (0.5, 0.5, 0.2, 0.4)
    assert inside((0.6, 0.7), box) and not inside((0.61, 0.5), box) and not inside((0.5, 0.71), box)
    assert covered_fraction([box, box]) == pytest.approx(0.08, abs=0.01)


def test_shipped_model_map_peaks_on_the_boxed_fire_and_smoke_more_often_than_chance(clean_torch_process,
                                                                                      shipped_with_cam):
    _, spec_path = shipped_with_cam
    data = SHARED / "data" / "fire-smoke"
    summary = check_peaks(spec_path, data, data / "boxes.csv", progress=False)["summary"]
    assert summary["fire"]["photos"] > 50 and summary["smoke"]["photos"] > 10
    for label in ("fire", "smoke"):
        s = summary[label]
        assert s["peak_in_box"] > s["baseline_random_point_in_box"] + 0.2, label
        assert s["peak_in_box"] > s["baseline_centre_in_box"], label
