"""firedetd/inference/onnxruntime.py on the real shipped model: spec checks, batching, real images."""

import glob
import os
import shutil

import cv2
import numpy as np
import pytest
from support.files import read_json, write_json

from firedetd.config import ModelConfig
from firedetd.errors import EngineError, ModelError
from firedetd.inference.onnxruntime import OnnxRuntimeEngine, choose_providers
from firedetd.inference.preprocess import Preprocessor, to_probabilities
from firedetd.modelspec import load_spec


def engine_for(spec, **kw):
    return OnnxRuntimeEngine(spec, ModelConfig(**kw))


def test_cuda_provider_first_only_when_present_and_wanted():
    assert choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], True)[0] == "CUDAExecutionProvider"
    assert choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], False) == ["CPUExecutionProvider"]
    assert choose_providers(["CPUExecutionProvider"], True) == ["CPUExecutionProvider"]


def test_batch_results_equal_single_results(spec):
    engine = engine_for(spec, max_batch=4)
    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, (224, 224, 3)).astype(np.uint8) for _ in range(4)]
    pre = Preprocessor(spec.input)
    batched = engine.infer(pre(images))
    singles = np.concatenate([engine.infer(pre([im])) for im in images])
    assert batched.shape == (4, len(spec.labels))
    assert np.allclose(batched, singles, atol=1e-4)


def test_batch_over_max_is_refused(spec):
    engine = engine_for(spec, max_batch=2)
    with pytest.raises(EngineError, match="exceeds max_batch 2"):
        engine.infer(np.zeros((3, 3, 224, 224), np.float32))


def test_int8_variant_loads_and_agrees_with_fp32_on_argmax(spec):
    rng = np.random.RandomState(1)
    pre = Preprocessor(spec.input)
    batch = pre([cv2.GaussianBlur(rng.randint(0, 256, (224, 224, 3)).astype(np.uint8), (0, 0), 3) for _ in range(4)])
    fp32 = engine_for(spec, variant="fp32").infer(batch)
    int8 = engine_for(spec, variant="int8").infer(batch)
    assert int8.shape == fp32.shape
    assert np.abs(to_probabilities(fp32, "logits") - to_probabilities(int8, "logits")).max() < 0.35


def test_unknown_variant_names_the_choices(spec):
    with pytest.raises(ModelError, match="model.variant: 'fp8' is not in"):
        engine_for(spec, variant="fp8")


def copy_engines(tmp_path, spec):
    for name in os.listdir(os.path.dirname(spec.spec_path)):
        src = os.path.join(os.path.dirname(spec.spec_path), name)
        if os.path.isfile(src):
            shutil.copy(src, str(tmp_path))
    return str(tmp_path / "firedetd.json")


def edited_spec(spec, tmp_path, edit):
    """The shipped spec, copied beside its model into tmp_path with `edit(raw JSON)` applied, loaded."""
    path = copy_engines(tmp_path, spec)
    raw = read_json(path)
    edit(raw)
    write_json(path, raw)
    return load_spec(path)


def test_truncated_model_file_is_refused_by_hash(spec, tmp_path):
    path = copy_engines(tmp_path, spec)
    onnx = tmp_path / "firedetd.onnx"
    data = onnx.read_bytes()
    onnx.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="does not match the spec's"):
        engine_for(load_spec(path))


def test_spec_labels_disagreeing_with_the_model_are_refused(spec, tmp_path):
    edited = edited_spec(spec, tmp_path, lambda raw: raw.update(labels=["fire", "smoke", "none", "steam"]))
    with pytest.raises(ModelError, match="has 3 classes, but .* lists 4 labels"):
        engine_for(edited)


def test_spec_input_size_disagreeing_with_the_model_is_refused(spec, tmp_path):
    edited = edited_spec(spec, tmp_path, lambda raw: raw["input"].update(height=256, width=256))
    with pytest.raises(ModelError, match=r"has shape .* but .* says \[N, 3, 256, 256\]"):
        engine_for(edited)


def test_shipped_engine_returns_a_map_that_averages_to_the_logits_it_returns_anyway(spec):
    rng = np.random.RandomState(2)
    batch = Preprocessor(spec.input)([cv2.GaussianBlur(rng.randint(0, 256, (224, 224, 3)).astype(np.uint8),
                                                       (0, 0), 3) for _ in range(3)])
    engine = engine_for(spec)
    logits, cam = engine.infer_with_map(batch)
    assert cam.shape == (3, 3, 7, 7) and cam.dtype == np.float32
    assert np.abs(cam.mean(axis=(2, 3)) - logits).max() < 1e-4
    assert np.abs(engine.infer(batch) - logits).max() < 1e-6   # fetching the map changes no probability


def test_a_spec_without_a_map_runs_the_same_model_and_returns_no_map(spec, tmp_path):
    edited = edited_spec(spec, tmp_path, lambda raw: raw.pop("cam"))   # a spec written before the map existed
    batch = Preprocessor(spec.input)([np.full((224, 224, 3), 90, np.uint8)])
    logits, cam = engine_for(edited).infer_with_map(batch)
    assert cam is None
    assert np.abs(logits - engine_for(spec).infer(batch)).max() < 1e-6


def test_spec_naming_a_map_the_model_lacks_is_refused(spec, tmp_path):
    edited = edited_spec(spec, tmp_path, lambda raw: raw["cam"].update(name="heatmap"))
    with pytest.raises(ModelError, match="model has no output 'heatmap' .* under 'cam'"):
        engine_for(edited)


def test_spec_with_another_map_size_is_refused(spec, tmp_path):
    edited = edited_spec(spec, tmp_path, lambda raw: raw["cam"].update(height=14))
    with pytest.raises(ModelError, match=r"output 'cam' has shape .* says \[N, 3, 14, 7\]"):
        engine_for(edited)


def read_model_input(path, spec):
    image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    return cv2.resize(image, (spec.input.width, spec.input.height), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("label", ["fire", "smoke", "none"])
def test_shipped_model_reproduces_its_recorded_recall_on_every_test_image(spec, shared_dir, label):
    """Every test-split image of the class, from every source, through the daemon's engine and preprocessing: the
    recall is the one the spec (and the model card) records for this file, and a real classifier's."""
    paths = sorted(glob.glob(os.path.join(shared_dir, "data", "fire-smoke", "test", label, "*.jpg")))
    engine = engine_for(spec)
    preprocess = Preprocessor(spec.input)
    logits = np.concatenate([engine.infer(preprocess([read_model_input(p, spec) for p in paths[i:i + 4]]))
                             for i in range(0, len(paths), 4)])
    predicted = to_probabilities(logits, spec.output.kind).argmax(axis=1)
    recall = float(np.mean(predicted == spec.labels.index(label)))
    recorded = read_json(spec.spec_path)["metrics"]["test"]["fp32"]["per_class"][label]["recall"]
    assert len(paths) > 100
    assert recall == pytest.approx(recorded, abs=0.01) and recall > 0.8


def test_onnxruntime_telemetry_is_turned_off_where_the_engine_imports_it(monkeypatch):
    import onnxruntime

    from firedetd.inference.onnxruntime import _import_onnxruntime

    calls = []
    monkeypatch.setattr(onnxruntime, "disable_telemetry_events", lambda: calls.append(True), raising=False)
    assert _import_onnxruntime() is onnxruntime and calls == [True]
