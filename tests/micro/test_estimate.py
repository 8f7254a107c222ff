"""firedetd/micro/estimate.py reads the multiply-accumulates off the .tflite; they must be the float student's."""

import os

import pytest

from firedetd.micro.estimate import estimate_latency_ms, macs_by_kind


def test_the_macs_read_from_the_flatbuffer_are_the_pytorch_students(micro_spec):
    torch = pytest.importorskip("torch", reason="torch (the train extra) counts the student's MACs")
    from firedetd.training.micro import load_micro

    model = load_micro(os.path.join(micro_spec.directory, micro_spec.raw["files"]["pytorch"]["path"]))
    counted = {"conv": 0, "depthwise": 0, "pointwise": 0, "fully_connected": 0}

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Linear):
            counted["fully_connected"] += module.in_features * module.out_features
            return
        k = module.kernel_size[0] * module.kernel_size[1]
        per_output = k * module.in_channels // module.groups
        kind = "depthwise" if module.groups > 1 else "pointwise" if k == 1 else "conv"
        counted[kind] += output.numel() * per_output

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(count)
    with torch.no_grad():
        model(torch.zeros(1, 3, micro_spec.size[1], micro_spec.size[0]))
    assert macs_by_kind(micro_spec.model_bytes()) == counted


def test_the_per_kernel_estimate_and_the_whole_model_reference_agree(micro_spec):
    # two independent bases (ESP-NN's per-kernel ticks; the person-detection model's measured 54 ms): a MAC count
    # read wrongly off the graph, or a kernel kind mislabelled, would pull them apart
    estimate = estimate_latency_ms(micro_spec.model_bytes())
    ratio = estimate["esp32s3_esp_nn_ms"] / estimate["esp32s3_scaled_from_person_detection_ms"]
    assert 0.75 < ratio < 1.33
    assert "estimate" in estimate["note"]
