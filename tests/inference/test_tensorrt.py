"""firedetd/inference/tensorrt.py: the TensorRT runner.

No TensorRT and no GPU exist on these machines, so almost every test here runs the real runner code
against the FAKE tensorrt module and FAKE CUDA memory of tests/inference/fake_tensorrt.py, whose
docstring says which TensorRT version's documentation each fake API generation follows (8.2.1:
bindings API, JetPack 4.6; 8.6.1: both APIs; 10.3.0: tensor-name API only). The fake engine
computes a known function of its input through fake device memory in stream order, so these tests
check the buffer wiring (bytes in, rows out, batch N below max) and the API dispatch. Tests marked
`tensorrt` / `gpu` run the real thing and skip here.
"""

import dataclasses
import hashlib
import json
import logging
import os
import sys
import threading
import types

import numpy as np
import pytest

from firedetd.config import ModelConfig, TensorRTConfig
from firedetd.errors import EngineError
from firedetd.inference import create_engine, tensorrt_usable
from firedetd.inference import tensorrt as trt_backend
from firedetd.inference.build import load_sidecar, sidecar_path
from firedetd.inference.tensorrt import IOTensor, TensorRTEngine, check_io_matches_spec, gpu_available, plan_io
from firedetd.modelspec import MapSpec

from .conftest import tiny_conv_onnx, write_spec
from .fake_tensorrt import PLAN_MAGIC, FakeCudaMemory, FakeGpu, fake_onnx_bytes, fake_outputs

VERSIONS = ("8.2.1", "8.6.1", "10.3.0")


def model_config(precision="fp16", max_batch=4):
    return ModelConfig(engine="tensorrt", max_batch=max_batch, tensorrt=TensorRTConfig(precision=precision))


def open_engine(spec, tmp_path, trt, gpu=None, **config):
    """A TensorRTEngine on the fake module and fake CUDA memory of the same fake GPU."""
    gpu = gpu or trt.FAKE.gpu
    cuda = FakeCudaMemory(gpu)
    engine = TensorRTEngine(spec, model_config(**config), str(tmp_path / "state"), trt_module=trt,
                            cuda_memory=cuda, device_info=gpu.info)
    return engine, cuda


def random_batch(n, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, size=(n, 3, 8, 8)).astype(np.float32)


# ------------------------------------------------------------------------------------------------------ availability


def test_gpu_available_is_false_without_tensorrt_and_does_not_raise(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # makes `import tensorrt` raise ImportError
    assert gpu_available() is False
    assert tensorrt_usable() is False


def test_gpu_available_is_false_when_tensorrt_imports_but_no_cuda_driver(installed_fake_trt, monkeypatch):
    monkeypatch.setattr(trt_backend, "_libcuda", lambda: None)
    assert gpu_available() is False


def test_auto_picks_tensorrt_when_it_imports_and_a_gpu_answers_else_onnxruntime(installed_fake_trt, monkeypatch):
    # FAKE: tensorrt is the fake 8.2.1 module; the CUDA driver query answers as a Jetson Nano's would
    from firedetd.inference import choose_backend

    nano = trt_backend.DeviceInfo("NVIDIA Tegra X1", "5.3")
    monkeypatch.setattr(trt_backend, "cuda_device_info", lambda index=0: nano)
    pycuda = types.ModuleType("pycuda")   # FAKE: only imported here, to tell that it is installed
    pycuda.driver = types.ModuleType("pycuda.driver")
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", pycuda.driver)
    assert choose_backend(ModelConfig(engine="auto")) == "tensorrt"
    assert choose_backend(ModelConfig(engine="onnxruntime")) == "onnxruntime"

    def no_driver(index=0):
        raise EngineError("no CUDA driver")

    monkeypatch.setattr(trt_backend, "cuda_device_info", no_driver)
    assert choose_backend(ModelConfig(engine="auto")) == "onnxruntime"


def test_missing_tensorrt_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EngineError, match="python3-libnvinfer") as raised:
        trt_backend.import_tensorrt()
    assert "--system-site-packages" in str(raised.value)


def test_missing_pycuda_and_cuda_python_error_names_both(monkeypatch):
    for name in ("pycuda", "pycuda.driver", "cuda", "cuda.bindings", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(EngineError, match="pycuda or cuda-python") as raised:
        trt_backend.open_cuda_memory()
    assert "trt extra" in str(raised.value)


def test_create_engine_reaches_the_tensorrt_backend_and_fails_clearly_without_tensorrt(tiny_spec, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EngineError, match="tensorrt cannot be imported"):
        create_engine(tiny_spec, model_config(), str(tmp_path))


# ------------------------------------------------------------------------------------------------------ inference


@pytest.mark.parametrize("version", VERSIONS)
def test_rows_come_back_in_order_for_every_batch_size_up_to_max(version, tiny_spec, tmp_path, fake_trt):
    engine, _ = open_engine(tiny_spec, tmp_path, fake_trt(version))
    for n in (1, 3, 4, 2, 1):
        batch = random_batch(n, seed=n)
        out = engine.infer(batch)
        assert out.shape == (n, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, fake_outputs(batch, 3), rtol=1e-6, atol=1e-6)


def test_bindings_api_on_tensorrt_8_2(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt("8.2.1")
    engine, cuda = open_engine(tiny_spec, tmp_path, trt)
    engine.infer(random_batch(2))
    names = trt.FAKE.names()
    assert "set_binding_shape" in names and "execute_async_v2" in names
    assert "execute_async_v3" not in names and "set_input_shape" not in names
    execute = [c for c in trt.FAKE.calls if c[0] == "execute_async_v2"][0]
    assert execute[1] == [engine._device["input"], engine._device["logits"]]   # device addresses, binding order
    assert execute[2] == cuda.stream_handle
    assert ("set_binding_shape", 0, (2, 3, 8, 8)) in trt.FAKE.calls


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_tensor_name_api_from_tensorrt_8_5_even_where_bindings_remain(version, tiny_spec, tmp_path, fake_trt):
    trt = fake_trt(version)
    engine, cuda = open_engine(tiny_spec, tmp_path, trt)
    engine.infer(random_batch(3))
    names = trt.FAKE.names()
    assert names.count("set_tensor_address") == 2          # bound once, at load
    assert ("set_input_shape", "input", (3, 3, 8, 8)) in trt.FAKE.calls
    assert ("execute_async_v3", cuda.stream_handle) in trt.FAKE.calls
    assert "execute_async_v2" not in names and "set_binding_shape" not in names


@pytest.mark.parametrize("version", VERSIONS)
def test_buffers_are_pinned_sized_for_max_batch_and_allocated_once(version, tiny_spec, tmp_path, fake_trt):
    engine, cuda = open_engine(tiny_spec, tmp_path, fake_trt(version), max_batch=4)
    shapes = sorted(a.shape for a in cuda.pinned)
    for n in (1, 4, 2):
        engine.infer(random_batch(n))
    assert shapes == [(4, 3), (4, 3, 8, 8)]
    assert sorted(a.shape for a in cuda.pinned) == shapes   # nothing allocated per call


def test_buffer_plan_reads_the_engines_io_through_either_api(tiny_spec, tmp_path, fake_trt):
    plans = []
    for version in VERSIONS:
        engine, _ = open_engine(tiny_spec, tmp_path / version, fake_trt(version), max_batch=5)
        plans.append(plan_io(engine._engine, fake_trt(version), 5))
    assert plans[0] == plans[1] == plans[2]
    assert [(t.name, t.is_input, t.shape, t.dtype) for t in plans[0]] == [
        ("input", True, (5, 3, 8, 8), np.dtype(np.float32)), ("logits", False, (5, 3), np.dtype(np.float32))]


def test_input_shape_is_set_only_when_the_batch_size_changes(tiny_spec, tmp_path, fake_trt):
    trt = fake_trt("8.6.1")
    engine, _ = open_engine(tiny_spec, tmp_path, trt)
    for n in (2, 2, 2, 3, 3):
        engine.infer(random_batch(n))
    assert trt.FAKE.names().count("set_input_shape") == 2


def test_result_is_a_copy_that_the_next_call_does_not_overwrite(tiny_spec, tmp_path, fake_trt):
    engine, _ = open_engine(tiny_spec, tmp_path, fake_trt())
    first_batch = random_batch(2, seed=1)
    first = engine.infer(first_batch)
    engine.infer(random_batch(2, seed=2))
    np.testing.assert_allclose(first, fake_outputs(first_batch, 3), rtol=1e-6)


def test_infer_from_the_runner_thread_makes_the_cuda_context_current_there(tiny_spec, tmp_path, fake_trt):
    """The fake GPU refuses CUDA calls on a thread without a current context, as the driver does."""
    engine, cuda = open_engine(tiny_spec, tmp_path, fake_trt())
    batch, results = random_batch(3), []
    thread = threading.Thread(target=lambda: results.append(engine.infer(batch)), name="engine-runner-test")
    thread.start()
    thread.join(30)
    assert "engine-runner-test" in cuda.activated_threads
    np.testing.assert_allclose(results[0], fake_outputs(batch, 3), rtol=1e-6)


@pytest.mark.parametrize("shape", [(5, 3, 8, 8), (0, 3, 8, 8), (2, 3, 16, 16)])
def test_batches_that_do_not_fit_raise_engine_error(shape, tiny_spec, tmp_path, fake_trt):
    engine, _ = open_engine(tiny_spec, tmp_path, fake_trt(), max_batch=4)
    with pytest.raises(EngineError, match="does not fit the TensorRT engine"):
        engine.infer(np.zeros(shape, np.float32))


def test_provider_names_tensorrt_version_and_built_precision(tiny_spec, tmp_path, fake_trt):
    engine, _ = open_engine(tiny_spec, tmp_path / "a", fake_trt("8.2.1"))
    assert engine.provider == "TensorRT 8.2.1 FP16"
    no_fp16 = FakeGpu(name="GeForce GTX 1080", compute_capability="6.1", fast_fp16=False)
    engine, _ = open_engine(tiny_spec, tmp_path / "b", fake_trt("8.6.1", no_fp16))
    assert engine.provider == "TensorRT 8.6.1 FP32"


def test_engine_reports_plan_and_activation_memory_for_the_memory_budget(tiny_spec, tmp_path, fake_trt):
    engine, _ = open_engine(tiny_spec, tmp_path, fake_trt("10.3.0"))
    assert engine.plan_bytes == os.path.getsize(engine.plan_path) > 0
    assert engine.device_memory_bytes == 2 << 20
    assert engine.max_batch == 4


def test_engine_whose_io_disagrees_with_the_spec_is_refused(tmp_path, fake_trt):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    spec = write_spec(model_dir, fake_onnx_bytes(output_name="scores"))
    with pytest.raises(EngineError, match="outputs .*scores.* do not match the model spec's 'logits'"):
        open_engine(spec, tmp_path, fake_trt())


def cam_tensors(cam_shape=(4, 3, 7, 7)):
    return [IOTensor("input", 0, True, (4, 3, 8, 8), np.dtype(np.float32)),
            IOTensor("logits", 1, False, (4, 3), np.dtype(np.float32)),
            IOTensor("cam", 2, False, cam_shape, np.dtype(np.float32))]


def test_io_check_finds_the_map_the_spec_describes_and_ignores_it_otherwise(tiny_spec):
    """The fake TensorRT builds single-output plans only, so the I/O check is exercised on its own here."""
    with_cam = dataclasses.replace(tiny_spec, cam=MapSpec("cam", 7, 7))
    _, output, cam = check_io_matches_spec(cam_tensors(), with_cam, 4)
    assert (output.name, cam.name) == ("logits", "cam")
    _, output, cam = check_io_matches_spec(cam_tensors(), tiny_spec, 4)
    assert output.name == "logits" and cam is None
    with pytest.raises(EngineError, match="do not match the model spec's cam 'cam' \\(4, 3, 7, 7\\)"):
        check_io_matches_spec(cam_tensors((4, 3, 14, 14)), with_cam, 4)
    with pytest.raises(EngineError, match="cam 'cam'"):
        check_io_matches_spec(cam_tensors()[:2], with_cam, 4)


def cache_a_plan_that_does_not_deserialize(spec, tmp_path, trt):
    """Leave in the cache a plan of another TensorRT (8.0.1) whose sidecar matches it, so only deserializing fails."""
    engine, _ = open_engine(spec, tmp_path, trt)
    plan_path = engine.plan_path
    engine.close()
    foreign = PLAN_MAGIC + b'{"version": "8.0.1", "cc": "5.3"}'
    with open(plan_path, "wb") as f:
        f.write(foreign)
    fields = load_sidecar(plan_path)
    fields["plan_sha256"] = hashlib.sha256(foreign).hexdigest()
    with open(sidecar_path(plan_path), "w") as f:
        f.write(json.dumps(fields))


def test_plan_that_does_not_deserialize_is_rebuilt_once_with_one_warning(tiny_spec, tmp_path, fake_trt, caplog):
    """A plan whose sidecar matches but whose bytes TensorRT rejects (as after a driver-level incompatibility)."""
    trt = fake_trt("8.2.1")
    cache_a_plan_that_does_not_deserialize(tiny_spec, tmp_path, trt)
    builds = len(trt.FAKE.builds)
    caplog.set_level(logging.INFO)
    engine, _ = open_engine(tiny_spec, tmp_path, trt)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "could not be deserialized" in warnings[0].getMessage()
    assert "8.0.1" in warnings[0].getMessage()            # TensorRT's own reason is in the line
    assert len(trt.FAKE.builds) == builds + 1
    batch = random_batch(2)
    np.testing.assert_allclose(engine.infer(batch), fake_outputs(batch, 3), rtol=1e-6)


def test_a_build_that_fails_inside_the_engine_says_what_tensorrt_said(tiny_spec, tmp_path, fake_trt):
    """The engine holds its Runtime while it builds the plan, and TensorRT 8 keeps one logger per process: the
    builder's errors go to the logger the Runtime got, so that is the one the error message must read."""
    trt = fake_trt("8.2.1")
    trt.FAKE.fail_build = True
    with pytest.raises(EngineError) as raised:
        open_engine(tiny_spec, tmp_path, trt)
    assert "no implementation obeys the workspace limit" in str(raised.value)
    assert "no reason given" not in str(raised.value)


def test_a_rebuild_failing_without_a_reason_does_not_borrow_the_earlier_deserialization_error(
        tiny_spec, tmp_path, fake_trt):
    trt = fake_trt("8.2.1")
    cache_a_plan_that_does_not_deserialize(tiny_spec, tmp_path, trt)
    trt.FAKE.fail_build_unexplained = True
    with pytest.raises(EngineError) as raised:
        open_engine(tiny_spec, tmp_path, trt)
    # the shared logger still holds the deserialization error, which is not why the rebuild failed
    assert "8.0.1" not in str(raised.value) and "no reason given" in str(raised.value)


def test_the_fake_tensorrt_keeps_one_logger_per_process_as_tensorrt_8_does(fake_trt):
    trt = fake_trt("8.2.1")
    first, second = trt.Logger(), trt.Logger()
    runtime = trt.Runtime(first)
    builder = trt.Builder(second)
    builder._fail("fake: boom")
    assert ("fake: boom" in [m for _, m in first.messages]) and second.messages == []
    assert any("single logger pointer" in m for _, m in first.messages)
    del runtime, builder   # once no Builder or Runtime lives, a new logger is taken
    trt.Builder(second)._fail("fake: again")
    assert [m for _, m in second.messages] == ["fake: again"]


def test_close_releases_cuda_once_and_can_be_called_twice(tiny_spec, tmp_path, fake_trt):
    engine, cuda = open_engine(tiny_spec, tmp_path, fake_trt())
    engine.close()
    engine.close()
    assert cuda.closed


def test_failed_load_releases_cuda_memory(tmp_path, fake_trt):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    spec = write_spec(model_dir, fake_onnx_bytes(output_name="scores"))
    trt = fake_trt()
    cuda = FakeCudaMemory(trt.FAKE.gpu)
    with pytest.raises(EngineError):
        TensorRTEngine(spec, model_config(), str(tmp_path / "state"), trt_module=trt, cuda_memory=cuda,
                       device_info=trt.FAKE.gpu.info)
    assert cuda.closed


def test_real_onnx_model_through_the_fake_engine_matches_onnxruntime(tmp_path, fake_trt, onnx_module):
    """A real opset-13 ONNX model is embedded in the fake plan and run with ONNX Runtime by the fake engine."""
    import onnxruntime

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    spec = write_spec(model_dir, tiny_conv_onnx(onnx_module))
    engine, _ = open_engine(spec, tmp_path, fake_trt("8.2.1"))
    reference = onnxruntime.InferenceSession(spec.onnx_path, providers=["CPUExecutionProvider"])
    batch = random_batch(3, seed=5)
    expected = reference.run(None, {"input": batch})[0]
    np.testing.assert_allclose(engine.infer(batch), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------------ real hardware


SHIPPED_SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "engines",
                            "firedetd.json")
BUNDLED_VIDEO = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                             "samples", "furg_house6.mp4")


@pytest.mark.tensorrt
def test_real_tensorrt_fp16_engine_runs_every_batch_size_like_onnxruntime(real_tensorrt, tmp_path):
    """Self-contained (the shipped model only), so `pytest -m tensorrt` on a Nano checks the real thing."""
    import onnxruntime

    from firedetd.modelspec import load_spec

    shipped = load_spec(SHIPPED_SPEC)
    engine = TensorRTEngine(shipped, model_config("fp16", 4), str(tmp_path / "state"))
    reference = onnxruntime.InferenceSession(shipped.onnx_path, providers=["CPUExecutionProvider"])
    try:
        for n in (1, 3, 4):
            batch = np.random.RandomState(n).uniform(-1, 1, (n, 3, 224, 224)).astype(np.float32)
            np.testing.assert_allclose(engine.infer(batch), reference.run(None, {shipped.input.name: batch})[0],
                                       rtol=5e-2, atol=5e-2)   # FP16 arithmetic on logits
    finally:
        engine.close()


@pytest.mark.tensorrt
def test_real_tensorrt_fp16_plan_of_the_shipped_model_agrees_with_onnxruntime_on_real_images(real_tensorrt,
                                                                                           tmp_path):
    """The tolerance docs/jetson.md states: FP16 probabilities within 0.02 of FP32 ONNX Runtime's, same class.
    Real pictures from the bundled video (a house fire), darkened and grey too, so no ../shared is needed."""
    import onnxruntime

    from firedetd.inference.preprocess import Preprocessor, to_probabilities
    from firedetd.modelspec import load_spec

    shipped = load_spec(SHIPPED_SPEC)
    batch = Preprocessor(shipped.input)(bundled_frames((shipped.input.width, shipped.input.height)))
    engine = TensorRTEngine(shipped, model_config("fp16", 8), str(tmp_path / "state"))
    try:
        got = np.concatenate([to_probabilities(engine.infer(batch[i:i + 8]), shipped.output.kind)
                              for i in range(0, len(batch), 8)])
    finally:
        engine.close()
    reference = onnxruntime.InferenceSession(shipped.onnx_path, providers=["CPUExecutionProvider"])
    expected = to_probabilities(reference.run(None, {shipped.input.name: batch})[0], shipped.output.kind)
    assert np.abs(got - expected).max() <= 0.02
    assert (got.argmax(1) == expected.argmax(1)).all()


def bundled_frames(size, count=8):
    """`count` frames spread over the bundled video, each as is, at 30 % brightness and in grey (RGB, `size`)."""
    import cv2

    cap = cv2.VideoCapture(BUNDLED_VIDEO)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 899
    frames = []
    for index in np.linspace(0, total - 1, count).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, bgr = cap.read()
        if ok:
            rgb = cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            grey = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
            frames += [rgb, (rgb * 0.3).astype(np.uint8), grey]
    cap.release()
    assert frames, "cannot read the bundled video %s" % BUNDLED_VIDEO
    return frames


@pytest.mark.gpu
def test_real_cuda_memory_round_trips_bytes_through_the_gpu():
    """Runs where a GPU and pycuda or cuda-python exist, even without TensorRT. Every CUDA call happens with the
    context current, as the engine makes them (pycuda refuses an allocation without one)."""
    try:
        cuda = trt_backend.open_cuda_memory()
    except EngineError as e:
        pytest.skip(str(e))
    try:
        with cuda.activated():
            host = cuda.host_empty((4, 5), np.float32)
            back = cuda.host_empty((4, 5), np.float32)
            host[...] = np.arange(20, dtype=np.float32).reshape(4, 5)
            ptr = cuda.device_alloc(host.nbytes)
            cuda.htod_async(ptr, host)
            cuda.dtoh_async(back, ptr)
            cuda.synchronize()
        np.testing.assert_array_equal(back, host)
    finally:
        cuda.close()


def test_auto_falls_back_to_onnxruntime_with_a_warning_when_pycuda_is_missing(installed_fake_trt, monkeypatch,
                                                                             caplog):
    # FAKE: tensorrt is the fake 8.2.1 module and the GPU answers as a Nano's; pycuda and cuda-python are made
    # unimportable, as on a Nano whose pycuda build failed
    from firedetd.inference import choose_backend

    monkeypatch.setattr(trt_backend, "cuda_device_info", lambda index=0: trt_backend.DeviceInfo("NVIDIA Tegra X1",
                                                                                                "5.3"))
    for name in ("pycuda", "pycuda.driver", "cuda", "cuda.bindings", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    caplog.set_level(logging.WARNING)
    assert choose_backend(ModelConfig(engine="auto")) == "onnxruntime"
    assert "TensorRT is installed but cannot run" in caplog.text and "pycuda" in caplog.text


def test_the_pycuda_path_runs_the_engine_and_frees_every_buffer_it_took(tiny_spec, tmp_path, fake_trt,
                                                                         monkeypatch):
    # FAKE: pycuda is tests/inference/fake_pycuda.py (pycuda 2020.1's names only, CUDA's context rules) over the
    # fake TensorRT's fake GPU; firedetd's own _PyCudaMemory runs on it unchanged
    from .fake_pycuda import make_fake_pycuda

    trt = fake_trt("8.2.1")
    package, driver = make_fake_pycuda(trt.FAKE.gpu)
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    engine = TensorRTEngine(tiny_spec, model_config(), str(tmp_path / "state"), trt_module=trt,
                            device_info=trt.FAKE.gpu.info)
    assert engine._cuda.name == "pycuda"
    outputs = [engine.infer(random_batch(n, seed=n)) for n in (1, 4, 2)]
    assert [o.shape[0] for o in outputs] == [1, 4, 2]
    assert driver.FAKE["host_live"] > 0 and driver.FAKE["device_live"] > 0
    engine.close()
    assert (driver.FAKE["host_live"], driver.FAKE["device_live"], driver.FAKE["retained"]) == (0, 0, 0)


def test_the_fake_pycuda_refuses_what_real_pycuda_refuses(fake_trt):
    from .fake_pycuda import LogicError, make_fake_pycuda

    _, cuda = make_fake_pycuda(fake_trt("8.2.1").FAKE.gpu)
    with pytest.raises(LogicError, match="cuInit"):
        cuda.Device(0)
    cuda.init()
    with pytest.raises(LogicError, match="cuMemAlloc failed: invalid device context"):
        cuda.mem_alloc(16)      # before the context is pushed, as the hardware test once did
    with pytest.raises(AttributeError):
        cuda.mem_alloc_async(16)    # not a pycuda 2020.1 name
