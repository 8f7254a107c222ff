"""firedetd/training/models.py: the backbones load the shared ImageNet weights exactly and export to ONNX."""

import os

import pytest

torch = pytest.importorskip("torch", reason="training needs torch (the train extra, Python 3.8+)")

from firedetd.training.models import BACKBONES, SamePadConv2d, build_classifier, count_parameters  # noqa: E402


@pytest.mark.parametrize("name,params", [("mobilenetv2", 3504872), ("mobilenetv1", 4231976), ("edgetpu", 2988160)])
def test_backbones_load_shared_weights_strictly(shared_dir, name, params):
    model = BACKBONES[name].build(1000)
    state = torch.load(os.path.join(shared_dir, "weights", BACKBONES[name].weights_file), weights_only=True)
    model.load_state_dict(state, strict=True)
    assert count_parameters(model) == params


def test_classifier_head_has_three_outputs_and_runs_at_224():
    model = build_classifier("mobilenetv2", 3, None).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 3)


def test_same_padding_is_tf_style_for_stride_2():
    conv = SamePadConv2d(1, 1, 3, stride=2)
    assert conv.pads == (0, 1, 0, 1)
    assert SamePadConv2d(1, 1, 5, stride=2).pads == (1, 2, 1, 2)
    assert SamePadConv2d(1, 1, 3, stride=1).pads is None and conv(torch.zeros(1, 1, 224, 224)).shape[-1] == 112
