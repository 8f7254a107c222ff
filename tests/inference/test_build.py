"""firedetd/inference/build.py and calibrate.py: building plans, the plan cache, INT8 calibration, the CLI.

TensorRT cannot be installed on these machines: these tests run the real builder and cache code
against the FAKE tensorrt module of tests/inference/fake_tensorrt.py, whose docstring says which
TensorRT version's documentation each fake API generation follows (8.2.1 for JetPack 4.6 on the
Nano, 8.6.1, 10.3.0). Fake GPUs stand in for a Nano (Maxwell, sm 5.3: FP16, no INT8), a Xavier
(sm 7.2: FP16 and INT8) and a desktop GPU. Tests marked `tensorrt` build with the real TensorRT and
skip here.
"""

import argparse
import json
import logging
import os
import threading

import numpy as np
import pytest

from firedetd.config import ModelConfig, TensorRTConfig
from firedetd.errors import EngineError, ModelError
from firedetd.inference import build
from firedetd.inference.build import (
    NANO_INT8_MESSAGE,
    build_engine,
    check_cached_plan,
    get_or_build_plan,
    load_sidecar,
    plan_cache_key,
    sidecar_path,
)
from firedetd.inference.calibrate import Calibration, calibration_batches, default_calibration_path
from firedetd.modelspec import sha256_file

from .conftest import tiny_conv_onnx, write_spec
from .fake_tensorrt import FakeCudaMemory, FakeGpu, fake_onnx_bytes

NANO = dict(name="NVIDIA Tegra X1", compute_capability="5.3", fast_fp16=True, fast_int8=False)
XAVIER = dict(name="Xavier", compute_capability="7.2", fast_fp16=True, fast_int8=True)


def build_tiny(spec, trt, tmp_path, precision="fp16", max_batch=4, **kw):
    kw.setdefault("progress", False)
    return build_engine(spec.onnx_path, str(tmp_path / "out.plan"), precision, 256, max_batch, "input", (3, 8, 8),
                        trt=trt, **kw)


def model_config(precision="fp16", max_batch=4, tactic_sources="all"):
    return ModelConfig(engine="tensorrt", max_batch=max_batch,
                       tensorrt=TensorRTConfig(precision=precision, tactic_sources=tactic_sources))


def read_text(path):
    with open(path) as f:
        return f.read()


def warnings_in(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ------------------------------------------------------------------------------------------------------ building


def test_tensorrt_8_2_build_uses_explicit_batch_and_max_workspace_size(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt("8.2.1", FakeGpu(**NANO))
    report = build_tiny(tiny_spec, trt, tmp_path)
    record = trt.FAKE.builds[-1]
    assert record["network_flags"] == 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    assert record["workspace"] == 256 << 20
    assert record["profiles"] == [{"input": ((1, 3, 8, 8), (4, 3, 8, 8), (4, 3, 8, 8))}]
    assert record["flags"] == {trt.BuilderFlag.FP16}
    assert report.precision_built == "fp16" and report.trt_version == "8.2.1"
    assert report.plan_sha256 == sha256_file(report.plan_path)


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_newer_tensorrt_gets_the_workspace_through_the_memory_pool_api(version, tiny_spec, tmp_path, fake_trt):
    """The 10.x fake config raises on max_workspace_size, as 10.x (which removed it) does."""
    trt = fake_trt(version)
    build_tiny(tiny_spec, trt, tmp_path)
    assert trt.FAKE.builds[-1]["workspace"] == 256 << 20
    assert trt.FAKE.builds[-1]["network_flags"] == (0 if version == "10.3.0" else 1)


@pytest.mark.parametrize("version", ["8.2.1", "8.6.1", "10.3.0"])
def test_tactic_sources_tensorrt_leaves_out_cublas_cublaslt_and_cudnn_and_keeps_the_rest(version, tiny_spec,
                                                                                         tmp_path, fake_trt):
    trt = fake_trt(version)
    build_tiny(tiny_spec, trt, tmp_path)
    default = trt.FAKE.builds[-1]["tactic_sources"]
    build_tiny(tiny_spec, trt, tmp_path, tactic_sources="tensorrt")
    chosen = trt.FAKE.builds[-1]["tactic_sources"]
    libraries = {trt.TacticSource.CUBLAS, trt.TacticSource.CUBLAS_LT, trt.TacticSource.CUDNN}
    assert not any(chosen & (1 << int(source)) for source in libraries)
    # TensorRT's own sources (8.5+: edge-mask and JIT convolutions) stay as they were
    assert chosen == default & ~sum(1 << int(source) for source in libraries)
    if version == "8.2.1":
        assert default == 0b111 and chosen == 0


def test_tactic_sources_all_leaves_tensorrts_default_alone(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt("8.2.1")
    build_tiny(tiny_spec, trt, tmp_path, tactic_sources="all")
    assert trt.FAKE.builds[-1]["tactic_sources"] == 0b111


def test_plans_are_keyed_by_tactic_sources_and_old_sidecars_count_as_all(tiny_spec, tmp_path, fake_trt, caplog):
    trt = fake_trt("8.2.1", FakeGpu(**NANO))
    default = cached_plan(tiny_spec, tmp_path, trt)
    lean = cached_plan(tiny_spec, tmp_path, trt, tactic_sources="tensorrt")
    assert lean != default and len(trt.FAKE.builds) == 2
    assert load_sidecar(lean)["tactic_sources"] == "tensorrt" and trt.FAKE.builds[-1]["tactic_sources"] == 0
    # a sidecar written before the option existed describes a default build: still used, not rebuilt
    fields = load_sidecar(default)
    del fields["tactic_sources"]
    with open(sidecar_path(default), "w") as f:
        json.dump(fields, f)
    assert cached_plan(tiny_spec, tmp_path, trt) == default and len(trt.FAKE.builds) == 2


def test_opt_batch_can_be_lowered_within_the_profile(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt()
    report = build_tiny(tiny_spec, trt, tmp_path, max_batch=8, opt_batch=2)
    assert trt.FAKE.builds[-1]["profiles"][0]["input"] == ((1, 3, 8, 8), (2, 3, 8, 8), (8, 3, 8, 8))
    assert report.opt_batch == 2


def test_fp16_on_a_gpu_without_fast_fp16_builds_fp32_with_a_warning(tiny_spec, tmp_path, fake_trt, caplog):
    trt = fake_trt("8.2.1", FakeGpu(name="Tesla K80", compute_capability="3.7", fast_fp16=False))
    report = build_tiny(tiny_spec, trt, tmp_path, precision="fp16")
    assert report.precision_built == "fp32" and report.precision_requested == "fp16"
    assert trt.BuilderFlag.FP16 not in trt.FAKE.builds[-1]["flags"]
    assert len(report.warnings) == 1 and "no fast FP16" in report.warnings[0]
    assert any("no fast FP16" in m for m in warnings_in(caplog))


def test_int8_is_refused_on_a_nano_before_anything_is_built(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt("8.2.1", FakeGpu(**NANO))
    with pytest.raises(EngineError) as raised:
        build_tiny(tiny_spec, trt, tmp_path, precision="int8",
                   calibration=Calibration(str(tmp_path / "x.calib"), None, 1, None))
    assert str(raised.value) == NANO_INT8_MESSAGE
    assert trt.FAKE.builds == [] and not os.path.exists(str(tmp_path / "out.plan"))


def test_int8_reads_the_shipped_calibration_cache_and_leaves_it_untouched(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt("8.6.1", FakeGpu(**XAVIER))
    cache = tmp_path / "firedetd-int8.calib"
    cache.write_bytes(b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n")
    report = build_tiny(tiny_spec, trt, tmp_path, precision="int8",
                        calibration=Calibration(str(cache), None, 2, None))
    record = trt.FAKE.builds[-1]
    assert record["calibration_cache_read"] == cache.read_bytes()
    assert record["flags"] == {trt.BuilderFlag.INT8, trt.BuilderFlag.FP16}   # FP16 for layers without INT8
    assert cache.read_bytes() == b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n"
    assert report.precision_built == "int8"


def test_int8_without_a_calibration_cache_names_the_command_that_writes_one(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt("8.6.1", FakeGpu(**XAVIER))
    with pytest.raises(EngineError, match="firedetd build-engine --calibrate"):
        build_tiny(tiny_spec, trt, tmp_path, precision="int8",
                   calibration=Calibration(str(tmp_path / "missing.calib"), None, 1, None))


def write_images(directory, count, size=(12, 20)):
    import cv2

    directory.mkdir()
    rng = np.random.RandomState(3)
    for i in range(count):
        cv2.imwrite(str(directory / ("img%02d.png" % i)), rng.randint(0, 255, size + (3,)).astype(np.uint8))
    (directory / "notes.txt").write_text("not an image")


def test_calibration_from_images_passes_them_through_gpu_memory_and_writes_the_cache(tiny_spec, tmp_path,
                                                                                    fake_trt):
    gpu = FakeGpu(**XAVIER)
    trt = fake_trt("8.6.1", gpu)
    write_images(tmp_path / "images", 5)
    paths = build.list_calibration_images(str(tmp_path / "images"), 100)
    batches = list(calibration_batches(paths, tiny_spec.input, 2))   # 5 images -> 2 full batches of 2
    cache = tmp_path / "out.calib"
    build_tiny(tiny_spec, trt, tmp_path, precision="int8",
               calibration=Calibration(str(cache), iter(batches), 2, FakeCudaMemory(gpu)))
    record = trt.FAKE.builds[-1]
    assert len(paths) == 5 and [b.shape for b in batches] == [(2, 3, 8, 8)] * 2
    assert record["calibration_batches"] == 2
    written = cache.read_text()
    assert written.startswith("FAKE-CALIB batches=2 ")
    assert abs(float(written.split("sum=")[1]) - sum(float(b.sum()) for b in batches)) < 1e-2


def test_calibration_needs_at_least_one_full_batch_of_images(tiny_spec, tmp_path):
    write_images(tmp_path / "images", 1)
    paths = build.list_calibration_images(str(tmp_path / "images"), 100)
    with pytest.raises(EngineError, match="found 1 images; it needs at least 4"):
        list(calibration_batches(paths, tiny_spec.input, 4))


def test_parser_errors_are_reported_one_by_one(tmp_path, fake_trt):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    spec = write_spec(model_dir, fake_onnx_bytes(unsupported=("NonMaxSuppression", "RoiAlign")))
    with pytest.raises(EngineError) as raised:
        build_tiny(spec, fake_trt(), tmp_path)
    message = str(raised.value)
    assert "cannot parse %s" % spec.onnx_path in message
    assert "No importer registered for op: NonMaxSuppression (node 0)" in message
    assert "No importer registered for op: RoiAlign (node 1)" in message


def test_onnx_input_name_differing_from_the_spec_is_a_model_error(tmp_path, fake_trt):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    spec = write_spec(model_dir, fake_onnx_bytes(input_name="images"))
    with pytest.raises(ModelError, match=r"has inputs \['images'\], the model spec names 'input'"):
        build_tiny(spec, fake_trt(), tmp_path)


def test_a_failed_build_says_what_tensorrt_said_and_leaves_no_plan(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt()
    trt.FAKE.fail_build = True
    with pytest.raises(EngineError, match="no implementation obeys the workspace limit.*--workspace-mib"):
        build_tiny(tiny_spec, trt, tmp_path)
    assert os.listdir(str(tmp_path)) == ["model"]


def test_timing_cache_is_saved_and_read_back_by_the_next_build(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt("8.2.1")
    timing = str(tmp_path / "timing.cache")
    first = build_tiny(tiny_spec, trt, tmp_path, timing_cache_path=timing)
    second = build_tiny(tiny_spec, trt, tmp_path, timing_cache_path=timing)
    assert not first.timing_cache_loaded and second.timing_cache_loaded
    assert trt.FAKE.builds[-1]["timing_entries_before"] == 1
    assert json.loads(read_text(timing))["entries"] == 2


def test_timing_cache_of_another_tensorrt_version_is_replaced_not_fatal(tiny_spec, tmp_path, fake_trt):
    timing = str(tmp_path / "timing.cache")
    build_tiny(tiny_spec, fake_trt("8.2.1"), tmp_path, timing_cache_path=timing)
    trt = fake_trt("8.6.1")
    report = build_tiny(tiny_spec, trt, tmp_path, timing_cache_path=timing)
    assert not report.timing_cache_loaded
    assert trt.FAKE.builds[-1]["timing_entries_before"] == 0
    assert json.loads(read_text(timing))["version"] == "8.6.1"


def test_heartbeat_reports_elapsed_time_while_tensorrt_8_builds(tiny_spec, tmp_path, fake_trt):
    lines, seen = [], threading.Event()

    def say(line):
        lines.append(line)
        if "building engine..." in line:
            seen.set()
    trt = fake_trt("8.2.1")
    trt.FAKE.during_build = lambda: seen.wait(30)   # the fake build lasts until a heartbeat was printed
    build_tiny(tiny_spec, trt, tmp_path, progress=say, heartbeat_s=0.02)
    assert seen.is_set()
    assert lines[0].startswith("TensorRT 8.2.1: building a FP16 engine from model.onnx (batch 1..4)")
    assert lines[-1].startswith("TensorRT: built ")
    assert not any(t.name == "trt-build-heartbeat" for t in threading.enumerate())


def test_tensorrt_10_reports_top_level_phases_through_its_progress_monitor(tiny_spec, tmp_path, fake_trt):
    lines = []
    build_tiny(tiny_spec, fake_trt("10.3.0"), tmp_path, progress=lines.append, heartbeat_s=0.01)
    assert "TensorRT: Building engine (3 steps)" in lines
    assert "TensorRT: Building engine 3/3" in lines and "TensorRT: Building engine done" in lines
    assert not any("Tactic timing" in line for line in lines)          # sub-phases stay quiet
    assert not any("building engine..." in line for line in lines)     # no heartbeat when TensorRT reports


def test_progress_false_prints_nothing(tiny_spec, tmp_path, fake_trt, capsys):
    build_tiny(tiny_spec, fake_trt("8.2.1"), tmp_path, progress=False)
    assert capsys.readouterr() == ("", "")


def test_progress_true_writes_to_stderr(tiny_spec, tmp_path, fake_trt, capsys):
    build_tiny(tiny_spec, fake_trt("10.3.0"), tmp_path, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "TensorRT: Building engine (3 steps)" in captured.err


# ------------------------------------------------------------------------------------------------------ cache


KEY_FIELDS = dict(trt_version="8.2.1.8", gpu_name="NVIDIA Tegra X1", compute_capability="5.3",
                  model_sha256="ab" * 32, precision="fp16", max_batch=4)


@pytest.mark.parametrize("field,other", [("trt_version", "8.2.1.9"), ("gpu_name", "Xavier"),
                                         ("compute_capability", "7.2"), ("model_sha256", "cd" * 32),
                                         ("precision", "fp32"), ("max_batch", 2)])
def test_cache_key_changes_with_every_field(field, other):
    changed = dict(KEY_FIELDS, **{field: other})
    assert plan_cache_key(**changed) != plan_cache_key(**KEY_FIELDS)


def test_cache_key_is_a_readable_file_name():
    key = plan_cache_key(**KEY_FIELDS)
    assert key.startswith("firedetd-abababababab-fp16-b4-trt8.2.1.8-sm53-")
    assert all(c.isalnum() or c in "-._" for c in key)
    assert plan_cache_key(**dict(KEY_FIELDS, gpu_name="a/b c")) != key


def cached_plan(spec, tmp_path, trt, **config):
    return get_or_build_plan(spec, model_config(**config), str(tmp_path / "engines"), trt, trt.FAKE.gpu.info)


def test_first_call_builds_and_writes_a_complete_sidecar_then_the_cache_is_hit(tiny_spec, tmp_path, fake_trt,
                                                                              caplog):
    trt = fake_trt("8.2.1", FakeGpu(**NANO))
    plan = cached_plan(tiny_spec, tmp_path, trt)
    fields = load_sidecar(plan)
    assert fields["trt_version"] == "8.2.1" and fields["gpu_name"] == "NVIDIA Tegra X1"
    assert fields["compute_capability"] == "5.3" and fields["model_sha256"] == tiny_spec.files["fp32"].sha256
    assert fields["precision"] == fields["precision_built"] == "fp16" and fields["max_batch"] == 4
    assert fields["plan_sha256"] == sha256_file(plan) and fields["plan_bytes"] == os.path.getsize(plan)
    assert os.path.basename(plan) == fields["key"] + ".plan"
    assert cached_plan(tiny_spec, tmp_path, trt) == plan
    assert len(trt.FAKE.builds) == 1 and warnings_in(caplog) == []
    assert sorted(os.listdir(str(tmp_path / "engines"))) == sorted(
        [os.path.basename(plan), os.path.basename(sidecar_path(plan)), "timing-trt8.2.1-sm53.cache"])  # no temps


def test_plan_of_another_tensorrt_version_is_not_used_and_one_warning_says_why(tiny_spec, tmp_path, fake_trt,
                                                                               caplog):
    gpu = FakeGpu(**NANO)
    old = cached_plan(tiny_spec, tmp_path, fake_trt("8.2.1", gpu))
    trt = fake_trt("8.6.1", gpu)
    new = cached_plan(tiny_spec, tmp_path, trt)
    assert new != old and len(trt.FAKE.builds) == 1
    assert load_sidecar(new)["trt_version"] == "8.6.1"
    (message,) = warnings_in(caplog)
    assert "built for TensorRT 8.2.1, this needs 8.6.1" in message and os.path.basename(old) in message


def test_plan_of_another_gpu_is_not_used_and_one_warning_says_why(tiny_spec, tmp_path, fake_trt, caplog):
    cached_plan(tiny_spec, tmp_path, fake_trt("8.2.1", FakeGpu(**XAVIER)))
    trt = fake_trt("8.2.1", FakeGpu(**NANO))
    cached_plan(tiny_spec, tmp_path, trt)
    assert len(trt.FAKE.builds) == 1
    (message,) = warnings_in(caplog)
    assert "built for GPU Xavier, this needs NVIDIA Tegra X1" in message


def test_plan_of_an_older_model_is_not_used_and_one_warning_says_why(tmp_path, fake_trt, caplog):
    trt = fake_trt()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    old_spec = write_spec(model_dir, fake_onnx_bytes())
    cached_plan(old_spec, tmp_path, trt)
    new_spec = write_spec(model_dir, fake_onnx_bytes() + b" ")   # retrained: same I/O, new bytes
    new = cached_plan(new_spec, tmp_path, trt)
    assert len(trt.FAKE.builds) == 2 and load_sidecar(new)["model_sha256"] == new_spec.files["fp32"].sha256
    (message,) = warnings_in(caplog)
    assert "built for model sha256 %s..." % old_spec.files["fp32"].sha256[:12] in message


def test_corrupt_plan_bytes_are_rebuilt_with_one_warning(tiny_spec, tmp_path, fake_trt, caplog):
    trt = fake_trt()
    plan = cached_plan(tiny_spec, tmp_path, trt)
    with open(plan, "r+b") as f:
        f.truncate(10)
    assert cached_plan(tiny_spec, tmp_path, trt) == plan
    assert len(trt.FAKE.builds) == 2 and load_sidecar(plan)["plan_sha256"] == sha256_file(plan)
    (message,) = warnings_in(caplog)
    assert "truncated or corrupt" in message


def test_plan_without_its_sidecar_is_rebuilt_with_one_warning(tiny_spec, tmp_path, fake_trt, caplog):
    trt = fake_trt()
    plan = cached_plan(tiny_spec, tmp_path, trt)
    os.unlink(sidecar_path(plan))
    cached_plan(tiny_spec, tmp_path, trt)
    assert len(trt.FAKE.builds) == 2 and load_sidecar(plan) is not None
    (message,) = warnings_in(caplog)
    assert "sidecar" in message and "missing or unreadable" in message


def test_a_plan_copied_under_a_matching_name_is_caught_by_its_sidecar(tiny_spec, tmp_path, fake_trt, caplog):
    trt = fake_trt()
    plan = cached_plan(tiny_spec, tmp_path, trt)
    fields = load_sidecar(plan)
    fields["trt_version"] = "8.0.1"
    with open(sidecar_path(plan), "w") as f:
        json.dump(fields, f)
    cached_plan(tiny_spec, tmp_path, trt)
    (message,) = warnings_in(caplog)
    assert "built for TensorRT 8.0.1, this needs 8.2.1" in message


def test_check_cached_plan_accepts_only_a_plan_matching_its_sidecar(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt()
    plan = cached_plan(tiny_spec, tmp_path, trt)
    expected = build.expected_fields("8.2.1", trt.FAKE.gpu.info, tiny_spec, "fp16", 4)
    assert check_cached_plan(plan, expected) is None
    assert "precision fp16, this needs fp32" in check_cached_plan(plan, dict(expected, precision="fp32"))
    assert check_cached_plan(str(tmp_path / "none.plan"), expected) == "absent"


def test_onnx_file_that_does_not_match_the_spec_is_a_model_error_not_a_build(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt()
    with open(tiny_spec.onnx_path, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ModelError, match="does not match the spec"):
        cached_plan(tiny_spec, tmp_path, trt)
    assert trt.FAKE.builds == []


def test_int8_plans_are_keyed_by_the_calibration_cache_too(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt("8.6.1", FakeGpu(**XAVIER))
    calib = default_calibration_path(tiny_spec)
    with open(calib, "wb") as f:
        f.write(b"calibration one")
    first = cached_plan(tiny_spec, tmp_path, trt, precision="int8")
    with open(calib, "wb") as f:
        f.write(b"calibration two")
    second = cached_plan(tiny_spec, tmp_path, trt, precision="int8")
    assert first != second and len(trt.FAKE.builds) == 2
    assert load_sidecar(second)["calibration_sha256"] == sha256_file(calib)


# ------------------------------------------------------------------------------------------------------ CLI


def cli_args(*argv):
    parser = argparse.ArgumentParser()
    build.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_builds_into_the_cache_then_reuses_it_and_force_rebuilds(tiny_spec, tmp_path, fake_trt, capsys):
    trt = fake_trt("8.2.1", FakeGpu(**NANO))
    argv = ("--spec", tiny_spec.spec_path, "--cache-dir", str(tmp_path / "cache"), "--precision", "fp32",
            "--max-batch", "2", "--quiet")
    assert build.run(cli_args(*argv), trt=trt, device_info=trt.FAKE.gpu.info) == 0
    out = capsys.readouterr().out
    plan = out.splitlines()[0].split("plan: ")[1]
    assert os.path.dirname(plan) == str(tmp_path / "cache") and "FP32, batch 1..2" in out
    assert build.run(cli_args(*argv), trt=trt, device_info=trt.FAKE.gpu.info) == 0
    assert len(trt.FAKE.builds) == 1
    assert build.run(cli_args(*(argv + ("--force",))), trt=trt, device_info=trt.FAKE.gpu.info) == 0
    assert len(trt.FAKE.builds) == 2
    assert trt.FAKE.builds[-1]["profiles"][0]["input"][2] == (2, 3, 8, 8)


def test_cli_defaults_come_from_the_config_file(tiny_spec, tmp_path, fake_trt, capsys):
    config = tmp_path / "firedetd.yaml"
    config.write_text("model:\n  spec: %s\n  max_batch: 3\n  tensorrt:\n    precision: fp32\n"
                      "state_dir: %s\n" % (tiny_spec.spec_path, tmp_path / "state"))
    trt = fake_trt()
    assert build.run(cli_args("--config", str(config), "--quiet"), trt=trt, device_info=trt.FAKE.gpu.info) == 0
    plan = capsys.readouterr().out.splitlines()[0].split("plan: ")[1]
    assert os.path.dirname(plan) == str(tmp_path / "state" / "engines")
    assert load_sidecar(plan)["precision"] == "fp32" and load_sidecar(plan)["max_batch"] == 3


def test_cli_tactic_sources_flag_overrides_the_config(tiny_spec, tmp_path, fake_trt, capsys):
    trt = fake_trt("8.2.1", FakeGpu(**NANO))
    argv = ("--spec", tiny_spec.spec_path, "--cache-dir", str(tmp_path / "cache"), "--tactic-sources", "tensorrt",
            "--quiet")
    assert build.run(cli_args(*argv), trt=trt, device_info=trt.FAKE.gpu.info) == 0
    plan = capsys.readouterr().out.splitlines()[0].split("plan: ")[1]
    assert load_sidecar(plan)["tactic_sources"] == "tensorrt" and trt.FAKE.builds[-1]["tactic_sources"] == 0


def test_cli_output_writes_the_plan_and_its_sidecar_where_asked(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt("10.3.0")
    output = str(tmp_path / "exported" / "firedetd-fp16.plan")
    argv = ("--spec", tiny_spec.spec_path, "--output", output, "--state-dir", str(tmp_path / "state"), "--quiet")
    assert build.run(cli_args(*argv), trt=trt, device_info=trt.FAKE.gpu.info) == 0
    assert load_sidecar(output)["plan_sha256"] == sha256_file(output)
    assert not os.path.exists(str(tmp_path / "state"))


def test_cli_calibrate_writes_the_calibration_cache_beside_the_spec_and_caches_the_int8_plan(
        tiny_spec, tmp_path, fake_trt):
    gpu = FakeGpu(**XAVIER)
    trt = fake_trt("8.6.1", gpu)
    write_images(tmp_path / "images", 9)
    argv = ("--spec", tiny_spec.spec_path, "--cache-dir", str(tmp_path / "cache"), "--calibrate",
            str(tmp_path / "images"), "--max-batch", "4", "--quiet")
    assert build.run(cli_args(*argv), trt=trt, device_info=gpu.info, cuda_memory=FakeCudaMemory(gpu)) == 0
    calib = default_calibration_path(tiny_spec)
    assert read_text(calib).startswith("FAKE-CALIB batches=2 ")     # 9 images in batches of 4
    (plan,) = [p for p in os.listdir(str(tmp_path / "cache")) if p.endswith(".plan")]
    fields = load_sidecar(str(tmp_path / "cache" / plan))
    assert fields["precision_built"] == "int8" and fields["calibration_sha256"] == sha256_file(calib)
    assert fields["key"] + ".plan" == plan
    # the daemon's own lookup finds that plan without building again
    get_or_build_plan(tiny_spec, model_config("int8", 4), str(tmp_path / "cache"), trt, gpu.info)
    assert len(trt.FAKE.builds) == 1


def test_cli_calibrate_on_a_nano_is_refused(tiny_spec, tmp_path, fake_trt):
    gpu = FakeGpu(**NANO)
    write_images(tmp_path / "images", 4)
    argv = ("--spec", tiny_spec.spec_path, "--cache-dir", str(tmp_path / "cache"), "--calibrate",
            str(tmp_path / "images"), "--quiet")
    with pytest.raises(EngineError) as raised:
        build.run(cli_args(*argv), trt=fake_trt("8.2.1", gpu), device_info=gpu.info,
                  cuda_memory=FakeCudaMemory(gpu))
    assert str(raised.value) == NANO_INT8_MESSAGE
    assert not os.path.exists(default_calibration_path(tiny_spec))


# ------------------------------------------------------------------------------------------------------ real hardware


@pytest.mark.tensorrt
def test_real_tensorrt_builds_a_tiny_model_into_the_cache(real_tensorrt, tmp_path, onnx_module):
    from firedetd.inference.tensorrt import cuda_device_info

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    spec = write_spec(model_dir, tiny_conv_onnx(onnx_module))
    device = cuda_device_info(0)
    cache = str(tmp_path / "engines")
    plan = get_or_build_plan(spec, model_config("fp16", 2), cache, real_tensorrt, device)
    fields = load_sidecar(plan)
    assert fields["trt_version"] == real_tensorrt.__version__ and fields["gpu_name"] == device.name
    assert get_or_build_plan(spec, model_config("fp16", 2), cache, real_tensorrt, device) == plan
