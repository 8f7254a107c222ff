"""firedetd/training/augment.py: the views that hide an image's source and teach night, grey and no-picture."""

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs torch (the train extra, Python 3.8+)")

from firedetd.signal_quality import classify_picture  # noqa: E402
from firedetd.training import augment as A  # noqa: E402


def textured(size=224, seed=0):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(30, 220, (size // 8, size // 8, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((8, 8, 1), np.uint8))


def sharpness(image):
    grey = image.astype(np.float32).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=1)).mean())


def fine_detail(size=224, seed=0):
    """Detail down to single pixels, as in a sharp 400 px photo scaled to 224."""
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 0.6)


def test_the_source_chain_makes_a_sharp_photo_as_soft_as_a_thumbnail():
    rng = np.random.default_rng(0)
    sharp = fine_detail()
    thumb = A.resize_stretch(A.resize_stretch(sharp, 100), 224)    # what a 100 px source looks like at 224
    chained = [A.source_chain(sharp, rng, A.AugmentConfig()) for _ in range(20)]
    assert all(c.shape == sharp.shape and c.dtype == np.uint8 for c in chained)
    assert np.median([sharpness(c) for c in chained]) < 0.8 * sharpness(sharp)
    assert abs(np.median([sharpness(c) for c in chained]) - sharpness(thumb)) < 0.5 * sharpness(sharp)


def test_night_views_are_darker_and_sometimes_grey():
    rng = np.random.default_rng(1)
    day = textured()
    nights = [A.darken_to_night(day, rng) for _ in range(30)]
    assert all(n.mean() < 0.6 * day.mean() for n in nights)
    grey = [n for n in nights if (n[..., 0] == n[..., 1]).all() and (n[..., 1] == n[..., 2]).all()]
    assert 0 < len(grey) < len(nights)


def test_poor_signal_views_are_what_the_daemons_gate_rejects_most_of_the_time():
    rng = np.random.default_rng(2)
    views = [A.poor_signal_image(rng, 224, textured()) for _ in range(200)]
    assert all(v.shape == (224, 224, 3) and v.dtype == np.uint8 for v in views)
    rejected = sum(classify_picture(v)[0] is not None for v in views)
    # ramps and out-of-focus scenes are pictures to the gate; the model must call them none itself
    assert 0.5 < rejected / len(views) < 1.0


def test_only_none_images_get_night_and_poor_signal_views():
    cfg = A.AugmentConfig(p_poor_signal_none=1.0, p_night_none=1.0, p_zoom_out=0.0)
    fire = textured(seed=3)
    rng = np.random.default_rng(3)
    as_fire = A.augment(fire, rng, cfg, None, is_none=False)
    as_none = A.augment(fire, rng, cfg, None, is_none=True)
    assert sharpness(as_fire) > 1.0                        # still a picture of the image
    assert classify_picture(as_none)[0] is not None or sharpness(as_none) < 1.0 or as_none.mean() < 60
