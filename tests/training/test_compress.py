"""firedetd/training/compress.py: clustering keeps k values per layer, pruning removes channels, zipped size."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (the train extra, Python 3.8+)")

from firedetd.training.compress import (  # noqa: E402
    cluster_weights,
    distinct_values_per_channel,
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
    assert distinct_values_per_channel(model) <= 16
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    optimizer.step()
    assert distinct_values_per_channel(model) > 16  # the step spread the values...
    resnap_clusters(clustered)
    assert distinct_values_per_channel(model) <= 16  # ...and re-snapping restores k per channel


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


def test_compact_tensor_names_shortens_the_int8_file_and_keeps_its_answers(tmp_path):
    # the shipped INT8 model as the quantizer wrote it would do; renaming must change nothing but the names
    import shutil

    import onnx
    import onnxruntime as ort

    from firedetd.training.ship import compact_tensor_names

    path = tmp_path / "int8.onnx"
    shutil.copy("engines/firedetd-int8.onnx", path)
    model = onnx.load(str(path))
    for index, tensor in enumerate(model.graph.initializer):  # long names, as onnxruntime's quantizer writes
        old = tensor.name
        tensor.name = f"{old}_quantized_with_a_long_descriptive_suffix_{index}"
        for node in model.graph.node:
            node.input[:] = [tensor.name if name == old else name for name in node.input]
    onnx.save(model, str(path))
    outputs = [o.name for o in model.graph.output]   # logits, and the class activation map where shipped
    x = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)

    def answer():
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    before, size_before = answer(), path.stat().st_size
    compact_tensor_names(path)
    assert np.array_equal(answer(), before)
    assert path.stat().st_size < size_before - 30_000
    renamed = onnx.load(str(path)).graph
    assert [i.name for i in renamed.input] == ["input"] and [o.name for o in renamed.output] == outputs
    assert outputs[0] == "logits"
    assert max(len(t.name) for t in renamed.initializer) <= 4
