"""firedetd/signal_quality.py: which frames hold no picture, frozen pictures, change over time, degraded cameras.

Real pictures: the bundled house fire's frames (and, where ../shared is beside the checkout, every image of the
dataset) must all be usable; synthetic non-pictures must each be named for what they are."""

import glob
import os

import cv2
import numpy as np
import pytest
from support.daemon import REPO

from firedetd.signal_quality import (
    DARK,
    FROZEN,
    NOISE,
    OVEREXPOSED,
    TEST_PATTERN,
    UNIFORM,
    DegradedMonitor,
    SignalGate,
    SignalReading,
    classify_picture,
)

S = 224
NS = 10 ** 9
RNG = np.random.default_rng(0)


def house_frames(count=30, step=30):
    """Real frames of the bundled house-fire video, at model size (RGB)."""
    cap = cv2.VideoCapture(os.path.join(REPO, "samples", "furg_house6.mp4"))
    frames = []
    index = 0
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(cv2.cvtColor(cv2.resize(bgr, (S, S)), cv2.COLOR_BGR2RGB))
        index += 1
    cap.release()
    assert frames, "could not read the bundled sample video"
    return frames


def smpte_bars():
    colours = np.array([[192, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0], [192, 0, 192], [192, 0, 0],
                        [0, 0, 192]], np.uint8)
    top = colours[np.arange(S) * 7 // S][None].repeat(150, axis=0)
    middle = colours[::-1][np.arange(S) * 7 // S][None].repeat(18, axis=0)
    bottom = np.zeros((S - 168, S, 3), np.uint8)
    bottom[:, :56], bottom[:, 56:112], bottom[:, 112:168] = (0, 33, 76), (255, 255, 255), (50, 0, 106)
    return np.concatenate([top, middle, bottom])


NON_PICTURES = {
    "black": (np.zeros((S, S, 3), np.uint8), DARK),
    "black with sensor noise": (np.clip(RNG.normal(8, 5, (S, S, 3)), 0, 255).astype(np.uint8), DARK),
    "dark grey": (np.full((S, S, 3), 40, np.uint8), UNIFORM),
    "a covered lens (flat brown)": (np.full((S, S, 3), (90, 60, 40), np.uint8), UNIFORM),
    "white": (np.full((S, S, 3), 250, np.uint8), OVEREXPOSED),
    "SMPTE colour bars": (smpte_bars(), TEST_PATTERN),
    "colour snow": (RNG.integers(0, 256, (S, S, 3)).astype(np.uint8), NOISE),
    "grey snow": (RNG.integers(0, 256, (S, S, 1)).repeat(3, axis=2).astype(np.uint8), NOISE),
}


@pytest.mark.parametrize("name", sorted(NON_PICTURES))
def test_a_frame_without_a_picture_is_named_for_what_it_is(name):
    image, reason = NON_PICTURES[name]
    assert classify_picture(image)[0] == reason


def test_real_frames_of_a_fire_are_pictures_even_dark_or_dim():
    for frame in house_frames():
        for gain in (1.0, 0.3):
            assert classify_picture((frame * gain).astype(np.uint8))[0] is None


def test_a_small_flame_in_a_black_night_is_a_picture():
    night = np.zeros((S, S, 3), np.uint8)
    night[100:110, 100:106] = (255, 180, 50)   # 60 pixels of flame
    assert classify_picture(night)[0] is None


def test_every_dataset_image_is_a_picture(shared_dir):
    paths = sorted(glob.glob(os.path.join(shared_dir, "data", "fire-smoke", "*", "*", "*.jpg")))
    rejected = [p for p in paths if classify_picture(cv2.resize(cv2.imread(p), (S, S)))[0] is not None]
    assert len(paths) > 1000 and rejected == []


def test_the_same_picture_for_frozen_after_s_is_frozen_and_one_changed_pixel_resets_it():
    gate = SignalGate(frozen_after_s=2.0)
    frame = house_frames(1)[0]
    reasons = [gate.assess(frame, int(t * NS)).reason for t in (0, 1, 1.9, 2.0, 3.0)]
    assert reasons == [None, None, None, FROZEN, FROZEN]
    moved = frame.copy()
    moved[0, 0, 0] ^= 1
    assert gate.assess(moved, 4 * NS).reason is None


def test_change_is_measured_against_the_picture_half_a_second_ago_and_ignores_masked_regions():
    gate = SignalGate(window_s=0.5)
    frames = house_frames(10, step=3)  # a real fire: flames move between frames 0.1 s apart
    changes = [gate.assess(f, int(i * 0.1 * NS)).change for i, f in enumerate(frames)]
    assert changes[0] is None and all(c > 0.003 for c in changes[6:])
    still = SignalGate(window_s=0.5)
    picture = frames[0]
    noisy = [np.clip(picture + RNG.normal(0, 3, picture.shape), 0, 255).astype(np.uint8) for _ in range(10)]
    assert max(still.assess(f, int(i * 0.1 * NS)).change or 0 for i, f in enumerate(noisy)) < 0.003
    masked = SignalGate(window_s=0.5)   # the flames painted over (a mask): the rest of the scene is still
    flat = frames[0].copy()
    watched = [flat] * 10
    values = [masked.assess(f, int(i * 0.1 * NS), watched=w).change for i, (f, w) in enumerate(zip(frames, watched))]
    assert max(v or 0 for v in values) == 0.0


def test_a_disabled_gate_never_rejects_but_still_measures_change():
    gate = SignalGate(enabled=False)
    black = np.zeros((S, S, 3), np.uint8)
    readings = [gate.assess(black, i * NS) for i in range(8)]
    assert all(r.usable for r in readings) and readings[-1].change == 0.0


def test_a_camera_is_degraded_only_when_unusable_frames_persist_and_well_again_after_as_long():
    monitor = DegradedMonitor(after_s=5.0)
    bad, good = SignalReading(DARK, 0, 0, None), SignalReading(None, 80, 30, 0.1)
    events = []
    timeline = [(t, good) for t in range(0, 10)] + [(t, bad) for t in range(10, 13)] + \
        [(t, good) for t in range(13, 15)] + [(t, bad) for t in range(15, 25)] + [(t, good) for t in range(25, 35)]
    for t, reading in timeline:
        change = monitor.update(reading, t * NS)
        if change is not None:
            events.append((t, change))
    assert events == [(20, DARK), (30, "")]   # the 3 s glitch at 10 s is not a problem
