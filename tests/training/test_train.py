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


def test_sampling_balances_classes_and_lifts_small_sources():
    from pathlib import Path

    from firedetd.training.data import Sample
    from firedetd.training.train import sampling_weights

    samples = [Sample(Path("big_%d.jpg" % i), 2) for i in range(400)]
    samples += [Sample(Path("small_%d.jpg" % i), 2) for i in range(4)]
    samples += [Sample(Path("fire_%d.jpg" % i), 0) for i in range(50)]
    cfg = TrainConfig(data=Path("."), out=Path("."))
    w = sampling_weights(samples, cfg)
    by = {name: w[[s.origin == name for s in samples]].sum() for name in ("big", "small", "fire")}
    assert by["fire"] == pytest.approx(by["big"] + by["small"])            # class-balanced
    assert by["small"] / by["big"] == pytest.approx((4 / 400) ** 0.5)      # sqrt of the size ratio, not 1/100
    from dataclasses import replace

    heavy = sampling_weights(samples, replace(cfg, class_weights=(2.0, 1.0, 1.0)))
    fire_share = heavy[[s.origin == "fire" for s in samples]].sum()
    assert fire_share == pytest.approx(2 / 3)                              # fire drawn twice as often as none


def test_mining_draws_the_mistakes_more_often_and_none_alarms_most():
    from firedetd.training.train import mined_weights

    base = np.full(4, 0.25)
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.1, 0.3]])
    labels = np.array([0, 0, 2, 2])   # right fire, fire called smoke, right none, none called fire
    w = mined_weights(base, probs, labels, boost=4.0)
    assert w.sum() == pytest.approx(1.0)
    assert w[3] > w[1] > w[0] and w[1] > w[2]


def test_the_fitted_temperature_recovers_how_overconfident_logits_are():
    from firedetd.training.train import fit_temperature

    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, (4000, 3))
    p = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(true_logits * 2.5, labels) == pytest.approx(2.5, rel=0.1)


def test_export_folds_the_checkpoints_temperature_into_the_head(tiny_run, tmp_path):
    cfg, result = tiny_run
    state = torch.load(cfg.out / "best.pt", weights_only=True)
    assert state["temperature"] == pytest.approx(result["temperature"], abs=1e-4) and state["temperature"] > 0
    plain = load_checkpoint(cfg.out / "best.pt", "mobilenetv2", calibrated=False)
    folded = load_checkpoint(cfg.out / "best.pt", "mobilenetv2")
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(folded(x), plain(x) / state["temperature"], atol=1e-5)


def test_finish_scores_a_cut_off_runs_best_checkpoint_as_the_run_would_have(tiny_run, tmp_path):
    cfg, result = tiny_run
    import shutil
    from dataclasses import replace

    cut = tmp_path / "cut"
    cut.mkdir()
    for name in ("best.pt", "history.json"):  # what a run killed after an epoch leaves behind
        shutil.copy(cfg.out / name, cut / name)
    finished = train(replace(cfg, out=cut, finish=True))
    assert json.loads((cut / "result.json").read_text())["finished_from_checkpoint"] is True
    assert finished["val"]["accuracy"] == result["val"]["accuracy"]
    assert finished["temperature"] == pytest.approx(result["temperature"], abs=1e-3)
    assert finished["epochs_run"] == len(result["history"]) and finished["train_seconds"] is None


def test_finish_without_a_checkpoint_names_what_is_missing(tiny_run, tmp_path):
    cfg, _ = tiny_run
    from dataclasses import replace

    with pytest.raises(SystemExit, match="has no best.pt or history.json"):
        train(replace(cfg, out=tmp_path / "empty", finish=True))
