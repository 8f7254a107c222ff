"""firedetd/training/micro.py: the student's size, the distillation loss, and a tiny real distillation run from the
shipped ONNX teacher (view bank, checkpoint with its temperature folded in)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (the train extra, Python 3.8+)")

from firedetd.training.micro import (  # noqa: E402
    MICRO_SIZE,
    MicroNet,
    MicroTrainConfig,
    count_parameters,
    distill_loss,
    jitter_batch,
    load_micro,
    train_micro,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_student_stays_under_the_flash_budget_in_int8_and_gives_three_logits():
    model = MicroNet().eval()
    # one byte per INT8 weight, plus per-channel scales and int32 biases: ~250 k parameters is the ceiling of 300 KB
    assert count_parameters(model) < 250_000
    assert model(torch.zeros(2, 3, MICRO_SIZE, MICRO_SIZE)).shape == (2, 3)


def test_the_distillation_loss_is_lowest_when_the_student_follows_the_teacher():
    cfg = MicroTrainConfig(data=Path("."), out=Path("."), teacher=Path("."))
    teacher = torch.tensor([[4.0, 0.0, -2.0], [-1.0, 3.0, 0.0]])
    labels = torch.tensor([0, 1])
    follows = distill_loss(teacher.clone(), teacher, labels, cfg)
    opposes = distill_loss(-teacher, teacher, labels, cfg)
    assert float(follows) < float(opposes)


def test_jitter_keeps_shape_and_range_and_changes_pixels():
    rng = np.random.default_rng(0)
    views = rng.integers(0, 256, (4, MICRO_SIZE, MICRO_SIZE, 3), dtype=np.uint8)
    out = jitter_batch(views, rng)
    assert out.shape == views.shape and out.dtype == np.uint8
    assert not np.array_equal(out, views)


def test_a_tiny_distillation_run_writes_a_calibrated_checkpoint(shared_dir, tmp_path):
    cfg = MicroTrainConfig(data=Path(shared_dir) / "data" / "fire-smoke", out=tmp_path, epochs=2, views=2,
                           max_per_class=8, batch_size=8, teacher=REPO / "engines" / "firedetd.onnx", progress=False)
    result = train_micro(cfg)
    assert len(result["history"]) == 2
    assert (tmp_path / "bank-2v-24.npz").is_file()
    bank = np.load(tmp_path / "bank-2v-24.npz")
    assert bank["images"].shape == (48, MICRO_SIZE, MICRO_SIZE, 3)
    # the teacher scored the clean views of its own training pictures mostly right
    assert (bank["teacher"][:24].argmax(1) == bank["label"][:24]).mean() >= 0.75
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert state["temperature"] > 0
    model = load_micro(tmp_path / "best.pt")
    assert model(torch.zeros(1, 3, MICRO_SIZE, MICRO_SIZE)).shape == (1, 3)
    assert json.loads((tmp_path / "result.json").read_text())["val"]["count"] == 24
    assert os.path.getsize(tmp_path / "history.json") > 0


def test_the_pretrained_start_takes_mobilenetv1s_strongest_filters_along_the_chain(shared_dir):
    from firedetd.training.micro import init_from_mobilenetv1

    weights = Path(shared_dir) / "weights" / "mobilenetv1_1.0_224_imagenet.pth"
    source = torch.load(weights, weights_only=True)
    model = init_from_mobilenetv1(MicroNet(), weights)
    stem = source["features.0.conv.weight"]
    kept = torch.sort(torch.topk(stem.abs().flatten(1).sum(1), 16).indices).values
    assert torch.equal(model.features[0][0].weight, stem[kept])
    # the first depthwise layer filters exactly the stem channels kept, and the pointwise reads them
    assert torch.equal(model.features[1][0].weight, source["features.1.dw.conv.weight"][kept])
    pw = source["features.1.pw.conv.weight"]
    out = torch.sort(torch.topk(pw.abs().flatten(1).sum(1), 32).indices).values
    assert torch.equal(model.features[2][0].weight, pw[out][:, kept])


def test_the_none_offset_brings_false_alarms_under_the_bound_when_it_can():
    from firedetd.training.micro import fit_none_offset

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 200)
    logits = rng.normal(0, 1, (600, 3))
    logits[np.arange(600), labels] += 2.0
    logits[labels == 2, 0] += 1.2          # a student that calls too much `none` fire
    shifted = logits.copy()
    offset = fit_none_offset(logits, labels, max_false_alarm=0.05)
    shifted[:, 2] += offset
    predicted = shifted.argmax(1)
    assert offset > 0
    assert (predicted[labels == 2] != 2).mean() <= 0.05
