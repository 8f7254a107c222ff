"""Federated fine-tuning (firedetd/training/federated.py): the non-IID split is deterministic, covers every image
once and skews the classes; the server's FedAvg weights clients by their image counts, counts the bytes both ways
and refuses arrays that are not the head's; the audit hook sees an image being opened; and a real run, one
Flower server and two client processes over gRPC on 127.0.0.1 with real images and the real backbone, trains
a head that beats its starting point while the server opens no image and receives only the head's arrays."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (the train extra, Python 3.8+)")
flwr = pytest.importorskip("flwr", reason="federated training needs Flower (the federated extra)")

from firedetd.training.federated import (  # noqa: E402
    FederatedConfig,
    dirichlet_partition,
    metered_fedavg,
    parameter_bytes,
    simulate,
    stratified_partition,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
LABELS = np.repeat(np.arange(3), 200)


def test_the_dirichlet_split_is_deterministic_and_covers_every_sample_once():
    parts = dirichlet_partition(LABELS, 4, 0.5, seed=7)
    again = dirichlet_partition(LABELS, 4, 0.5, seed=7)
    other = dirichlet_partition(LABELS, 4, 0.5, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))
    every = np.concatenate(parts)
    assert sorted(every.tolist()) == list(range(len(LABELS)))
    assert min(len(p) for p in parts) >= 1


def class_shares(parts):
    return np.array([np.bincount(LABELS[p], minlength=3) / len(p) for p in parts])


def test_a_small_alpha_skews_the_classes_and_a_large_one_does_not():
    skewed = class_shares(dirichlet_partition(LABELS, 4, 0.5, seed=0))
    even = class_shares(dirichlet_partition(LABELS, 4, 1000.0, seed=0))
    assert np.abs(skewed - 1 / 3).max() > 0.25  # some client's mix is far from the global one
    assert np.abs(even - 1 / 3).max() < 0.1


def test_the_stratified_split_gives_every_client_every_class():
    parts = stratified_partition(LABELS, 4, seed=0)
    counts = np.array([np.bincount(LABELS[p], minlength=3) for p in parts])
    assert counts.min() == counts.max() == 50
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(LABELS)))


def fit_result(arrays, examples):
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    return None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrays), examples, {"train_loss": 1.0})


def test_fedavg_weights_each_client_by_its_images_and_refuses_foreign_shapes():
    from flwr.common import parameters_to_ndarrays

    strategy = metered_fedavg(clients=2, local_epochs=1, lr=1e-3)
    strategy.head_shapes = [(3, 4), (3,)]
    small = fit_result([np.full((3, 4), 1.0, np.float32), np.full(3, 1.0, np.float32)], 1)
    large = fit_result([np.full((3, 4), 5.0, np.float32), np.full(3, 5.0, np.float32)], 3)
    foreign = fit_result([np.zeros((8, 8), np.float32)], 100)  # e.g. a feature matrix: must not be used
    parameters, _ = strategy.aggregate_fit(1, [small, large, foreign], [])
    weight, bias = parameters_to_ndarrays(parameters)
    assert np.allclose(weight, 4.0) and np.allclose(bias, 4.0)  # (1 * 1 + 3 * 5) / 4
    row = strategy.rounds[1]
    assert row["refused"] == 1 and row["examples"] == 4
    assert row["bytes_from_clients"] == sum(parameter_bytes(r.parameters) for _, r in (small, large, foreign))
    assert row["client_shapes"][:2] == [[[3, 4], [3]], [[3, 4], [3]]]


def test_the_audit_hook_records_an_image_being_opened(tmp_path):
    image = tmp_path / "frame.jpg"
    image.write_bytes(b"\xff\xd8\xff")
    code = ("from firedetd.training.federated import watch_image_opens\n"
            "opened = watch_image_opens()\nopen(%r, 'rb').close()\nopen(%r, 'rb').close()\nprint(opened)\n"
            % (str(image), os.path.join(REPO, "pyproject.toml")))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, check=True, timeout=120)
    assert out.stdout.decode().strip() == repr([str(image)])


@pytest.fixture(scope="module")
def tiny_federation(tmp_path_factory):
    if not os.path.isdir(os.path.join(SHARED, "data", "fire-smoke")):
        pytest.skip("../shared/data is not beside this checkout")
    from pathlib import Path

    from firedetd.training.federated import free_port

    work = tmp_path_factory.mktemp("federated")
    cfg = FederatedConfig(data=Path(SHARED) / "data" / "fire-smoke", work=work, weights=Path(SHARED) / "weights",
                          clients=2, alpha=0.5, rounds=2, local_epochs=3, lr=1e-3, head_views=1, size=96,
                          max_per_class=10, threads=2)
    return cfg, simulate(cfg, "127.0.0.1:%d" % free_port(), timeout_s=600)


def test_two_clients_over_grpc_train_a_head_better_than_its_start(tiny_federation):
    cfg, result = tiny_federation
    federated, central = result["federated"]["rounds"], result["centralised"]["rounds"]
    assert [r["round"] for r in federated] == [1, 2]
    start = central[0]  # the starting head, scored on the same val/test images
    assert federated[-1]["val_loss"] < start["val_loss"]
    assert federated[-1]["test_accuracy"] >= start["test_accuracy"]
    assert sum(m["images"] for m in result["client_mix"]) == 30
    assert json.loads((cfg.work / "federated.json").read_text())["rounds"] == 2


def test_the_server_opens_no_image_and_receives_only_the_heads_arrays(tiny_federation):
    cfg, result = tiny_federation
    server = result["federated"]
    assert server["image_files_opened"] == []
    assert server["head_shapes"] == [[3, 1280], [3]]
    for row in server["rounds"]:
        assert row["client_shapes"] == [[[3, 1280], [3]]] * 2 and row["refused"] == 0
        # fit down and evaluate down to each client, fit up from each: all of them the head's bytes
        head_bytes = row["bytes_from_clients"] // 2
        assert row["bytes_to_clients"] == 4 * head_bytes and 3 * 1281 * 4 < head_bytes < 3 * 1281 * 4 + 512


def test_the_saved_head_on_the_backbone_scores_the_test_images_as_the_federation_did(clean_torch_process,
                                                                                    tiny_federation, tmp_path):
    """The server keeps the best round's head; `federate apply` puts it on the backbone; that checkpoint, run on
    the images themselves, gives exactly the confusion matrix the clients reported from their cached features."""
    from firedetd.training.data import load_images
    from firedetd.training.export import load_checkpoint
    from firedetd.training.federated import apply_head, client_samples
    from firedetd.training.train import clean_batch

    cfg, result = tiny_federation
    saved = result["federated"]["saved_head"]
    rounds = {r["round"]: r for r in result["federated"]["rounds"]}
    assert saved["val_accuracy"] == max(r["val_accuracy"] for r in rounds.values())
    info = apply_head(cfg.work / "head.npz", "mobilenetv2", cfg.weights, None, tmp_path / "federated.pt")
    assert info["round"] == saved["round"]

    model = load_checkpoint(tmp_path / "federated.pt", "mobilenetv2")
    samples = [s for i in range(cfg.clients) for s in client_samples(cfg, i)["test"]]
    with torch.no_grad():
        predicted = model(clean_batch(load_images(samples, progress=False), cfg.size)).argmax(1).numpy()
    confusion = np.zeros((3, 3), dtype=int)
    for sample, guess in zip(samples, predicted):
        confusion[sample.label, guess] += 1
    assert confusion.tolist() == rounds[saved["round"]]["test_confusion"]


def test_applying_a_head_of_another_backbone_is_refused_by_name(tmp_path):
    from firedetd.errors import FiredetdError
    from firedetd.training.federated import apply_head

    if not os.path.isdir(os.path.join(SHARED, "weights")):
        pytest.skip("../shared/weights is not beside this checkout")
    head = tmp_path / "head.npz"
    np.savez(str(head), weight=np.zeros((3, 1024), np.float32), bias=np.zeros(3, np.float32), round=1,
             val_accuracy=0.5, test_accuracy=0.5)
    from pathlib import Path

    with pytest.raises(FiredetdError, match="does not fit mobilenetv2's classifier"):
        apply_head(head, "mobilenetv2", Path(SHARED) / "weights", None, tmp_path / "out.pt")


def test_a_client_that_fails_stops_the_simulation_instead_of_leaving_the_server_waiting(tmp_path):
    from firedetd.errors import FiredetdError
    from firedetd.training.federated import free_port

    cfg = FederatedConfig(data=tmp_path / "no-such-dataset", work=tmp_path / "work", clients=2, rounds=1)
    with pytest.raises(FiredetdError, match=r"client-(\d) exited with") as failure:
        simulate(cfg, "127.0.0.1:%d" % free_port(), timeout_s=300)
    failed_log = tmp_path / "work" / ("client-%s.log" % failure.value.args[0].split("client-")[1][0])
    assert "split folder not found" in failed_log.read_text()
