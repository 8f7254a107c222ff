"""firedetd/training/compress.py: clustering keeps k values per layer, pruning removes channels, zipped size."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (the train extra, Python 3.8+)")

from firedetd.training.compress import (  # noqa: E402
    cluster_weights,
    distinct_values_per_layer,
    kmeans_1d,
    resnap_clusters,
    zipped_size,
)
from firedetd.training.models import build_classifier, count_parameters  # noqa: E402


def test_kmeans_finds_separated_clusters():
    values = np.concatenate([np.full(50, -1.0), np.full(50, 2.0)]) + np.random.default_rng(0).normal(0, 0.01, 100)
    centroids, assignment = kmeans_1d(values, 2)
    assert sorted(np.round(centroids, 1)) == [-1.0, 2.0]
    assert len(set(assignment[:50])) == 1 and assignment[0] != assignment[-1]


def test_clustering_survives_an_optimiser_step():
    model = build_classifier("mobilenetv2", 3, None)
    clustered = cluster_weights(model, 16)
    assert distinct_values_per_layer(model) <= 16
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    optimizer.step()
    assert distinct_values_per_layer(model) > 16  # the step spread the values...
    resnap_clusters(clustered)
    assert distinct_values_per_layer(model) <= 16  # ...and re-snapping restores k per layer


def test_pruning_removes_channels_and_still_runs():
    pytest.importorskip("torch_pruning")
    from firedetd.training.compress import prune_channels

    model = build_classifier("mobilenetv2", 3, None)
    before = count_parameters(model)
    pruned = prune_channels(model, 0.5, size=64)
    assert count_parameters(pruned) < 0.6 * before
    with torch.no_grad():
        assert pruned(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_zipped_size_rewards_repetition(tmp_path):
    repetitive = tmp_path / "a.bin"
    repetitive.write_bytes(np.tile(np.arange(16, dtype=np.float32), 4096).tobytes())
    noisy = tmp_path / "b.bin"
    noisy.write_bytes(np.random.default_rng(0).standard_normal(65536).astype(np.float32).tobytes())
    assert zipped_size(repetitive) < zipped_size(noisy) / 4
