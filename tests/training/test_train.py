"""A tiny real training run: loss decreases, checkpoints and history are written, the ONNX export matches torch."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (the train extra, Python 3.8+)")

from firedetd.training.export import export_onnx, load_checkpoint, max_abs_difference  # noqa: E402
from firedetd.training.train import EarlyStopper, TrainConfig, train  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, request):
    shared = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))))), "shared")
    if not os.path.isdir(os.path.join(shared, "data")):
        pytest.skip("../shared/data is not beside this checkout")
    out = tmp_path_factory.mktemp("tiny")
    cfg = TrainConfig(data=os.path.join(shared, "data", "fire-smoke"), out=out,
                      weights=os.path.join(shared, "weights"), mode="full", epochs=3, lr=1e-3, batch_size=8,
                      size=96, max_per_class=12, patience=3, progress=False)
    from pathlib import Path

    cfg.data, cfg.out, cfg.weights = Path(cfg.data), Path(cfg.out), Path(cfg.weights)
    return cfg, train(cfg)


def test_loss_decreases_and_files_are_written(tiny_run):
    cfg, result = tiny_run
    losses = [h["train_loss"] for h in result["history"]]
    assert losses[-1] < losses[0], losses
    assert (cfg.out / "best.pt").is_file() and (cfg.out / "last.pt").is_file()
    assert json.loads((cfg.out / "result.json").read_text())["val"]["count"] == 36


def test_export_matches_torch(clean_torch_process, tiny_run, tmp_path):
    cfg, _ = tiny_run
    model = load_checkpoint(cfg.out / "best.pt", "mobilenetv2")
    path = export_onnx(model, tmp_path / "tiny.onnx", size=96)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 96, 96, 3)).astype(np.uint8)
    assert max_abs_difference(model, path, images) < 1e-4


def test_same_seed_same_result(tiny_run, tmp_path):
    cfg, result = tiny_run
    from dataclasses import replace

    again = train(replace(cfg, out=tmp_path / "again"))
    assert [h["train_loss"] for h in again["history"]] == pytest.approx([h["train_loss"] for h in result["history"]],
                                                                        rel=1e-5)


def test_early_stopper_waits_for_patience():
    stopper = EarlyStopper(patience=2)
    assert stopper.update(0, 0.9, 0.3)
    assert not stopper.update(1, 0.85, 0.4) and not stopper.should_stop
    assert not stopper.update(2, 0.9, 0.35) and stopper.should_stop
    assert stopper.best_epoch == 0
