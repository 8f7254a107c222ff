"""firedetd/inference/preprocess.py: spec-driven normalisation, layout, batching, softmax."""

import numpy as np
import pytest

from firedetd.errors import EngineError
from firedetd.inference.preprocess import Preprocessor, softmax, to_probabilities
from firedetd.modelspec import InputSpec


def input_spec(**kw):
    base = dict(name="input", height=4, width=6, layout="NCHW", color="RGB", scale=1.0,
                mean=(128.0, 128.0, 128.0), std=(128.0, 128.0, 128.0), resize="stretch")
    base.update(kw)
    return InputSpec(**base)


def test_matches_the_formula_per_pixel_and_channel():
    spec = input_spec(scale=1 / 255.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    rng = np.random.default_rng(0) if hasattr(np.random, "default_rng") else None
    images = [(np.arange(72).reshape(4, 6, 3) * 3 % 256).astype(np.uint8) for _ in range(2)]
    if rng is not None:
        images[1] = rng.integers(0, 256, (4, 6, 3)).astype(np.uint8)
    out = Preprocessor(spec)(images)
    assert out.shape == (2, 3, 4, 6) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    for n in range(2):
        for c in range(3):
            expected = (images[n][:, :, c] * spec.scale - spec.mean[c]) / spec.std[c]
            assert np.allclose(out[n, c], expected, atol=1e-5)


def test_shipped_convention_maps_0_and_255_to_about_minus_one_and_one():
    out = Preprocessor(input_spec())([np.zeros((4, 6, 3), np.uint8), np.full((4, 6, 3), 255, np.uint8)])
    assert np.allclose(out[0], -1.0) and np.allclose(out[1], 127 / 128.0)


def test_wrong_frame_size_is_a_clear_error():
    with pytest.raises(EngineError, match=r"does not match the model input \(4, 6, 3\)"):
        Preprocessor(input_spec())([np.zeros((5, 6, 3), np.uint8)])


def test_softmax_rows_sum_to_one_and_survive_large_logits():
    p = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]]))
    assert np.allclose(p.sum(axis=1), 1.0) and p[0, 0] == pytest.approx(1.0)
    assert np.allclose(to_probabilities(np.array([[0.2, 0.3, 0.5]]), "probabilities"), [[0.2, 0.3, 0.5]])
