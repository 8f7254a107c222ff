"""The shipped firedetd-micro .tflite in the real TFLM interpreter (tflite-micro) and in LiteRT: it loads, fits the
flash and arena budgets, is INT8 end to end, and agrees with the float PyTorch student on real pictures."""

import os

import numpy as np
import pytest

from firedetd.micro import (
    ARENA_BUDGET_BYTES,
    FLASH_BUDGET_BYTES,
    dequantize_output,
    input_lookup_table,
    quantize_frame,
    resize_frame,
    softmax,
)
from firedetd.micro.runtime import LiteRTInterpreter, MicroInterpreter, minimum_arena

# The INT8 model against its float student on the same 96x96 frames. Measured on the whole test split: top-1
# agreement 96.4 %, mean largest per-image probability difference 0.050. The bounds leave room for another
# training run, not for a broken conversion (a wrong scale, layout or input table gives ~33-60 % agreement).
MIN_TOP1_AGREEMENT = 0.93
MAX_MEAN_PROB_DIFF = 0.08


def test_the_model_fits_the_flash_budget_and_its_spec_names_the_file(micro_spec):
    data = micro_spec.model_bytes()   # checks the sha256 recorded in the spec
    assert len(data) <= FLASH_BUDGET_BYTES
    assert data[4:8] == b"TFL3"       # a TFLite flatbuffer's file identifier


def test_tflm_runs_the_model_in_the_spec_arena_and_not_in_much_less(micro_spec, video_frames):
    data = micro_spec.model_bytes()
    assert micro_spec.arena_bytes <= ARENA_BUDGET_BYTES
    q = quantize_frame(video_frames[0], micro_spec)
    out = MicroInterpreter(data, micro_spec.arena_bytes).invoke(q)
    assert out.shape == (1, len(micro_spec.labels)) and out.dtype == np.int8
    with pytest.raises(RuntimeError):
        MicroInterpreter(data, micro_spec.arena_bytes - 4096).invoke(q)


def test_the_arena_search_finds_what_the_spec_records(micro_spec, video_frames):
    found = minimum_arena(micro_spec.model_bytes(), quantize_frame(video_frames[0], micro_spec))
    assert abs(found - micro_spec.arena_bytes) <= 64


def test_input_and_output_are_int8_with_the_spec_quantization(micro_spec):
    interpreter = MicroInterpreter(micro_spec.model_bytes(), micro_spec.arena_bytes)
    for details, side in ((interpreter.input_details, micro_spec.input), (interpreter.output_details,
                                                                           micro_spec.output)):
        assert details["dtype"] is np.int8
        assert details["quantization_parameters"]["scales"][0] == pytest.approx(side["scale"], rel=1e-6)
        assert int(details["quantization_parameters"]["zero_points"][0]) == side["zero_point"]
    assert list(interpreter.input_details["shape"]) == [1, micro_spec.input["height"], micro_spec.input["width"], 3]


def test_the_input_table_is_the_float_normalisation_quantized(micro_spec):
    scale, zero_point = micro_spec.input["scale"], micro_spec.input["zero_point"]
    table = input_lookup_table(scale, zero_point)
    pixels = np.arange(256)
    dequantized = (table.astype(np.float64) - zero_point) * scale
    inside = np.abs((pixels - 128) / 128.0) <= (127 - zero_point) * scale
    assert np.all(np.abs(dequantized - (pixels - 128) / 128.0)[inside] <= scale / 2 + 1e-9)
    assert np.all(np.diff(table.astype(int)) >= 0)


def test_litert_builtin_kernels_give_tflms_exact_output(micro_spec, video_frames):
    data = micro_spec.model_bytes()
    micro, litert = MicroInterpreter(data, micro_spec.arena_bytes), LiteRTInterpreter(data, xnnpack=False)
    for frame in video_frames:
        q = quantize_frame(frame, micro_spec)
        assert np.array_equal(micro.invoke(q), litert.invoke(q))


def test_litert_with_xnnpack_differs_from_tflm_only_by_rounding(micro_spec, video_frames):
    # XNNPACK requantizes with its own rounding, and the differences add up over 17 layers: measured up to 12
    # output steps (0.5 logit) on this video and 1.0 logit on the test split, the class differing on 2 % of it
    data = micro_spec.model_bytes()
    micro, litert = MicroInterpreter(data, micro_spec.arena_bytes), LiteRTInterpreter(data)
    same, worst = 0, 0.0
    for frame in video_frames:
        q = quantize_frame(frame, micro_spec)
        a = dequantize_output(micro.invoke(q), micro_spec)
        b = dequantize_output(litert.invoke(q), micro_spec)
        worst = max(worst, float(np.abs(a - b).max()))
        same += int(a.argmax() == b.argmax())
    assert worst <= 1.0
    assert same >= 0.9 * len(video_frames)


def _torch_logits(micro_spec, frames):
    torch = pytest.importorskip("torch", reason="torch (the train extra) compares the INT8 model with its student")
    from firedetd.training.micro import load_micro

    model = load_micro(os.path.join(micro_spec.directory, micro_spec.raw["files"]["pytorch"]["path"]))
    batch = np.stack([resize_frame(f, micro_spec.size) for f in frames]).astype(np.float32)
    with torch.no_grad():
        return model(torch.from_numpy((batch - 128.0) / 128.0).permute(0, 3, 1, 2)).numpy()


def _agreement(micro_spec, frames):
    interpreter = MicroInterpreter(micro_spec.model_bytes(), micro_spec.arena_bytes)
    int8 = np.concatenate([dequantize_output(interpreter.invoke(quantize_frame(f, micro_spec)), micro_spec)
                           for f in frames])
    reference = _torch_logits(micro_spec, frames)
    same = float((int8.argmax(1) == reference.argmax(1)).mean())
    diff = float(np.abs(softmax(int8) - softmax(reference)).max(axis=1).mean())
    return same, diff


def test_the_int8_model_agrees_with_the_pytorch_student_on_the_bundled_video(micro_spec, video_frames):
    same, diff = _agreement(micro_spec, video_frames)
    assert same >= MIN_TOP1_AGREEMENT, "top-1 agreement %.3f" % same
    assert diff <= MAX_MEAN_PROB_DIFF, "mean probability difference %.3f" % diff


def test_the_int8_model_agrees_with_the_pytorch_student_on_test_images(micro_spec, shared_dir):
    from firedetd.training.data import list_split, read_rgb

    samples = list_split(os.path.join(shared_dir, "data", "fire-smoke"), "test")
    chosen = [s for label in range(3) for s in [s for s in samples if s.label == label][::8][:80]]
    same, diff = _agreement(micro_spec, [read_rgb(s.path) for s in chosen])
    assert same >= MIN_TOP1_AGREEMENT, "top-1 agreement %.3f" % same
    assert diff <= MAX_MEAN_PROB_DIFF, "mean probability difference %.3f" % diff
