"""The model report's federated section (firedetd/training/federated_report.py) renders a simulate result: the
comparison table with fire recall from the confusion matrices, a row per round, the traffic, and the figure."""

import pytest

pytest.importorskip("matplotlib", reason="the report needs matplotlib (the train extra)")

from firedetd.training.federated_report import federated_section  # noqa: E402

CONFUSION = [[8, 2, 0], [1, 9, 0], [0, 1, 9]]  # fire recall 80 %


def row(round_, val, test):
    return {"round": round_, "val_accuracy": val, "test_accuracy": test, "test_none_false_alarm_rate": 0.1,
            "test_confusion": CONFUSION, "val_loss": 0.5, "train_loss": 0.4, "bytes_to_clients": 4096,
            "bytes_from_clients": 2048}


def result(alpha, mu=0.0):
    return {"group": "federated", "backbone": "mobilenetv2", "clients": 2, "alpha": alpha, "rounds": 2,
            "local_epochs": 1, "lr": 1e-3, "head_views": 1, "strategy": "FedProx" if mu else "FedAvg",
            "proximal_mu": mu, "train_image_bytes": 2**20,
            "client_mix": [{"client": 0, "images": 3, "fire": 3, "smoke": 0, "none": 0},
                           {"client": 1, "images": 4, "fire": 0, "smoke": 2, "none": 2}],
            "federated": {"rounds": [row(1, 0.7, 0.6), row(2, 0.8, 0.9)]},
            "centralised": {"rounds": [row(0, 0.3, 0.3), row(1, 0.9, 0.95), row(2, 0.85, 0.9)]}}


def test_the_section_compares_each_federation_with_centralised_training(tmp_path):
    text = "\n".join(federated_section({"federated": result(0.5), "skewed": result(0.1, mu=1.0)}, tmp_path))
    assert "| FedAvg, 2 clients, α=0.5 | 2 | 90.0 % | 80.0 % | 10.0 % | 90.0 % | 95.0 % (epoch 1) | 80.0 % |" in text
    assert "FedProx μ=1, 2 clients, α=0.1" in text
    assert "| 2 | 80.0 % | 90.0 % | 85.0 % | 90.0 % | 4.0 KiB | 2.0 KiB |" in text
    assert "-5.0 points (FedAvg, 2 clients, α=0.5)" in text
    assert "With α = 0.1 the clients hold almost disjoint classes" in text  # shown only with a skewed run
    assert text.count("Training images per client") == 2
    assert (tmp_path / "federated.png").stat().st_size > 1000
