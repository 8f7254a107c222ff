"""Bad models against the whole daemon: a model spec pointing at a missing or truncated ONNX file, at a model whose
labels or input size disagree with it, and a TensorRT plan cache holding a plan from another TensorRT version.

`firedetd run` (a real process) and `firedetd check-config` must refuse each bad ONNX case with exit 2 and one
clear error line, before any frame is decided: never a wrong answer. TensorRT cannot be installed here, so the
plan cases run the real daemon in this process against the FAKE tensorrt module of
tests/inference/fake_tensorrt.py (whose stale plans fail to deserialize, as real ones do) and a tiny FAKE model.
"""

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from inference.fake_tensorrt import (
    PLAN_MAGIC,
    FakeCudaMemory,
    FakeGpu,
    fake_onnx_bytes,
    fake_outputs,
    make_fake_tensorrt,
)
from support.daemon import REPO

from firedetd.config import load_config
from firedetd.daemon import Daemon, Limits
from firedetd.inference.build import load_sidecar, sidecar_path
from firedetd.inference.preprocess import Preprocessor, to_probabilities
from firedetd.inference.tensorrt import TensorRTEngine
from firedetd.modelspec import load_spec
from firedetd.pipeline import Pipeline

from .daemon_setup import write_config

ENGINES = os.path.join(REPO, "engines")


def copy_of_the_shipped_model(directory, change):
    """engines/ copied into `directory`, then `change(spec_dict, onnx_path)` applied; the new spec's path."""
    target = directory / "engines"
    target.mkdir()
    for name in ("firedetd.json", "firedetd.onnx"):
        shutil.copy(os.path.join(ENGINES, name), str(target / name))
    spec_path = str(target / "firedetd.json")
    with open(spec_path) as f:
        spec = json.load(f)
    spec["files"] = {"fp32": spec["files"]["fp32"]}  # the int8 file is not copied
    change(spec, str(target / "firedetd.onnx"))
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    return spec_path


def truncate(spec, onnx_path):
    with open(onnx_path, "rb") as f:
        data = f.read()
    with open(onnx_path, "wb") as f:
        f.write(data[:len(data) // 2])


def truncate_and_rehash(spec, onnx_path):
    """A truncated file whose spec was updated to match it: only loading it can tell."""
    truncate(spec, onnx_path)
    with open(onnx_path, "rb") as f:
        spec["files"]["fp32"]["sha256"] = hashlib.sha256(f.read()).hexdigest()


def remove_the_file(spec, onnx_path):
    """The spec is there, the model file it names is not (a half-copied engines/ folder)."""
    os.remove(onnx_path)


def add_a_label(spec, onnx_path):
    spec["labels"] = list(spec["labels"]) + ["steam"]


def grow_the_input(spec, onnx_path):
    spec["input"]["height"] = spec["input"]["width"] = 256


BAD_MODELS = {
    "missing": (remove_the_file, "firedetd.onnx: model file not found"),
    "truncated": (truncate, "does not match the spec's"),
    "truncated-rehashed": (truncate_and_rehash, "ONNX Runtime cannot load the model"),
    "labels-mismatch": (add_a_label, "has 3 classes, but"),
    "input-size-mismatch": (grow_the_input, "says [N, 3, 256, 256]"),
}


@pytest.fixture(params=sorted(BAD_MODELS))
def bad_model_config(request, tmp_path):
    change, message = BAD_MODELS[request.param]
    spec_path = copy_of_the_shipped_model(tmp_path, change)
    config = write_config(tmp_path, [{"name": "pattern", "source": "test://?pattern=ball&fps=10"}],
                          model={"spec": spec_path, "engine": "onnxruntime"})
    return str(config), message


def test_run_refuses_a_bad_model_with_exit_2_and_one_clear_error(bad_model_config):
    config, message = bad_model_config
    proc = subprocess.Popen([sys.executable, "-m", "firedetd", "run", "-c", config], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    err = err.decode("utf-8", "replace")
    errors = [line for line in err.splitlines() if line.startswith("firedetd: error: ")]
    assert proc.returncode == 2, err
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1] and message in errors[0]
    assert "Traceback" not in err and "frame(s) decided" in err and "stopped: 0 frame(s) decided" in err


def test_check_config_refuses_a_bad_model_in_one_line(bad_model_config):
    # in its own process, as a user runs it: ONNX Runtime parsing a truncated protobuf inside a pytest process that
    # already loaded the onnx package's protobuf can abort the whole process, which a real `firedetd` never does
    config, message = bad_model_config
    proc = subprocess.Popen([sys.executable, "-m", "firedetd", "check-config", "-c", config], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = proc.communicate(timeout=120)[1].decode("utf-8", "replace")
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("firedetd: error: ") and message in err


# ------------------------------------------------------------------------------------------------ TensorRT plans


class PredictionTap(object):
    """Stands where the status page's live view would: sees every Prediction the postprocessor handles."""

    def __init__(self):
        self.predictions = []

    def update(self, prediction, tracker):
        self.predictions.append(prediction)


def tiny_fake_model(directory):
    """A FAKE "ONNX" model (input (N, 3, 8, 8), 3 classes) the fake TensorRT parses, and its spec; the spec path."""
    data = fake_onnx_bytes()
    (directory / "model.onnx").write_bytes(data)
    spec = {"name": "tiny", "version": "1", "labels": ["fire", "smoke", "none"],
            "input": {"name": "input", "height": 8, "width": 8, "layout": "NCHW", "color": "RGB",
                      "scale": 1.0 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "resize": "stretch"},
            "output": {"name": "logits", "kind": "logits"},
            "files": {"fp32": {"path": "model.onnx", "sha256": hashlib.sha256(data).hexdigest()}}}
    (directory / "firedetd.json").write_text(json.dumps(spec))
    return str(directory / "firedetd.json")


def plan_from_an_older_tensorrt(spec, config, gpu):
    """JetPack upgraded: the cache holds the plan TensorRT 8.0.1 built (its own name, its own sidecar)."""
    older = make_fake_tensorrt("8.0.1", gpu)
    engine = TensorRTEngine(spec, config.model, config.state_dir, trt_module=older, cuda_memory=FakeCudaMemory(gpu),
                            device_info=gpu.info)
    engine.close()


def foreign_bytes_under_this_versions_name(spec, config, gpu):
    """A plan copied in from another device, renamed to the key this TensorRT looks for, sidecar and all."""
    current = make_fake_tensorrt("8.2.1", gpu)
    engine = TensorRTEngine(spec, config.model, config.state_dir, trt_module=current, cuda_memory=FakeCudaMemory(gpu),
                            device_info=gpu.info)
    plan_path = engine.plan_path
    engine.close()
    foreign = PLAN_MAGIC + json.dumps({"version": "8.0.1", "cc": "5.3"}).encode("utf-8")
    with open(plan_path, "wb") as f:
        f.write(foreign)
    fields = load_sidecar(plan_path)
    fields["plan_sha256"] = hashlib.sha256(foreign).hexdigest()
    with open(sidecar_path(plan_path), "w") as f:
        json.dump(fields, f)


@pytest.mark.parametrize("stale_plan", [plan_from_an_older_tensorrt, foreign_bytes_under_this_versions_name],
                         ids=["older-tensorrt-in-the-cache", "foreign-plan-under-the-current-name"])
def test_a_plan_from_another_tensorrt_is_rebuilt_and_the_daemon_answers_as_the_model_does(tmp_path, stale_plan,
                                                                                        caplog):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    spec_path = tiny_fake_model(model_dir)
    # the fake model's 8x8 input is no camera picture: the signal gate is off, every frame is decided
    config_path = write_config(tmp_path, [{"name": "pattern", "source": "test://?pattern=ball&fps=30&live=false"}],
                               model={"spec": spec_path, "engine": "tensorrt", "max_batch": 1},
                               detection={"signal": {"enabled": False}})
    config = load_config(str(config_path), environ={})
    spec = load_spec(spec_path)
    gpu = FakeGpu()  # a Jetson Nano's: Tegra X1, sm 5.3
    stale_plan(spec, config, gpu)

    trt = make_fake_tensorrt("8.2.1", gpu)
    tap = PredictionTap()

    def pipeline_factory(config, spec, **_):
        engine = lambda: TensorRTEngine(spec, config.model, config.state_dir, trt_module=trt,  # noqa: E731
                                        cuda_memory=FakeCudaMemory(gpu), device_info=gpu.info)
        return Pipeline(config, spec, engine_factory=engine, sink_factory=lambda cfg: [], live_view=tap)

    caplog.set_level(logging.INFO)
    code = Daemon(config, limits=Limits(max_frames=20), pipeline_factory=pipeline_factory).run()

    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "TensorRT plan" in
                r.getMessage()]
    assert code == 0
    assert len(trt.FAKE.builds) == 1  # rebuilt once by this TensorRT
    assert len(warnings) == 1 and "8.0.1" in warnings[0]  # and one line says why
    assert len(tap.predictions) >= 20
    preprocess = Preprocessor(spec.input)
    for prediction in tap.predictions:
        expected = to_probabilities(fake_outputs(preprocess([prediction.frame.image]), 3), "logits")[0]
        np.testing.assert_allclose(prediction.probs, expected, rtol=1e-5)
