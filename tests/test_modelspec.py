"""engines/firedetd.json agrees with the ONNX files it describes; load_spec rejects broken specs."""

import os

import pytest
from support.files import read_json, write_json

from firedetd.errors import ModelError
from firedetd.modelspec import load_spec, sha256_file, verify_model_file

onnx = pytest.importorskip("onnx", reason="the onnx package is installed with the train extra (Python 3.8+)")


def test_spec_matches_the_onnx_graph(spec):
    model = onnx.load(spec.onnx_path)
    assert model.opset_import[0].version == 13
    (inp,) = model.graph.input
    assert inp.name == spec.input.name
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [3, spec.input.height, spec.input.width]
    out, cam = model.graph.output
    assert out.name == spec.output.name
    assert out.type.tensor_type.shape.dim[1].dim_value == len(spec.labels)
    assert cam.name == spec.cam.name
    assert [d.dim_value for d in cam.type.tensor_type.shape.dim[1:]] == [len(spec.labels), spec.cam.height,
                                                                         spec.cam.width]


def test_every_pad_and_clip_of_the_shipped_graph_reads_constant_initializers(spec):
    # TensorRT's ONNX parser (up to 8.0, and the Nano's 8.2 for Clip) needs these inputs as weights, not
    # computed tensors; firedetd.training.export.fold_constants makes them so
    model = onnx.load(spec.onnx_path)
    initializers = set(i.name for i in model.graph.initializer)
    operands = [name for node in model.graph.node if node.op_type in ("Pad", "Clip") for name in node.input[1:] if name]
    assert operands and all(name in initializers for name in operands)
    assert not [node.op_type for node in model.graph.node if node.op_type in ("Constant", "ConstantOfShape", "Cast")]
    assert model.ir_version <= 7  # ONNX Runtime 1.10, the last for Python 3.6, reads IR 7


def test_the_shipped_int8_calibration_cache_names_only_tensors_of_the_shipped_graph(spec):
    raw = read_json(spec.spec_path)
    path = os.path.join(os.path.dirname(spec.spec_path), raw["calibration"]["path"])
    assert sha256_file(path) == raw["calibration"]["sha256"]
    with open(path) as f:
        header, *entries = [line for line in f.read().splitlines() if line]
    assert header.startswith("TRT-") and header.endswith("-EntropyCalibration2")
    scales = dict(line.rsplit(": ", 1) for line in entries)
    assert all(len(value) == 8 and int(value, 16) >= 0 for value in scales.values())  # big-endian float32 bits
    model = onnx.load(spec.onnx_path)
    graph = model.graph
    tensors = set(i.name for i in graph.input) | set(o for n in graph.node for o in n.output) \
        | set(i.name for i in graph.initializer)
    assert spec.input.name in scales and set(scales) <= tensors


def test_spec_hashes_match_the_files(spec):
    for model_file in spec.files.values():
        assert sha256_file(model_file.path) == model_file.sha256
        verify_model_file(model_file)


def test_shipped_files_stay_under_20_mib(spec):
    for model_file in spec.files.values():
        assert os.path.getsize(model_file.path) < 20 * 1024 * 1024


def test_spec_records_dataset_and_test_metrics(spec):
    raw = read_json(spec.spec_path)
    assert len(raw["dataset"]["manifest_sha256"]) == 64
    assert raw["metrics"]["test"]["fp32"]["accuracy"] > 0.9


def test_spec_recommended_detection_equals_config_defaults(spec):
    from firedetd.config import DetectionConfig

    d = DetectionConfig()
    rec = spec.recommended
    assert rec["smoothing_alpha"] == d.smoothing_alpha
    for kind in ("fire", "smoke"):
        t = d.thresholds(kind)
        assert rec[kind] == {"on": t.on, "off": t.off, "raise_frames": t.raise_frames, "clear_frames": t.clear_frames}


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r.pop("labels"), "missing key 'labels'"),
    (lambda r: r.__setitem__("labels", ["fire", "none"]), "lack smoke"),
    (lambda r: r["input"].__setitem__("layout", "NHWC"), "layout 'NHWC' is not supported"),
    (lambda r: r["output"].__setitem__("kind", "sigmoid"), "must be logits or probabilities"),
    (lambda r: r["files"].pop("fp32"), "no 'fp32' entry"),
    (lambda r: r.__setitem__("cam", {"name": "cam", "height": 7}), "cam: missing key 'width'"),
    (lambda r: r.__setitem__("cam", {"name": "cam", "height": 0, "width": 7}), "cam: height and width must be >= 1"),
])
def test_broken_specs_are_named(spec, tmp_path, mutate, message):
    raw = read_json(spec.spec_path)
    mutate(raw)
    path = tmp_path / "firedetd.json"
    write_json(path, raw)
    with pytest.raises(ModelError, match=message):
        load_spec(str(path))


def test_unreadable_spec_names_the_file(tmp_path):
    path = tmp_path / "firedetd.json"
    path.write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_spec(str(path))


def test_the_shipped_spec_describes_its_map_and_one_without_it_still_loads(spec, tmp_path):
    assert (spec.cam.name, spec.cam.height, spec.cam.width) == ("cam", 7, 7)
    raw = read_json(spec.spec_path)
    del raw["cam"]   # as every spec was written before the map existed
    path = tmp_path / "firedetd.json"
    write_json(path, raw)
    assert load_spec(str(path)).cam is None
