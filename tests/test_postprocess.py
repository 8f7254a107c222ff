"""firedetd/postprocess.py: the thread around incidents.py: snapshots, outbox hand-off, unusable frames, degraded
cameras, per-camera settings. The decision rules themselves are tested in test_incidents.py."""

import queue

import cv2
import numpy as np
import pytest

from firedetd.config import (
    CameraDetectionConfig,
    CameraThresholds,
    CropConfig,
    DetectionConfig,
    MotionConfig,
    SignalConfig,
    SnapshotConfig,
    ThresholdConfig,
)
from firedetd.metrics import Metrics
from firedetd.postprocess import Postprocessor, encode_snapshot
from firedetd.signal_quality import DARK, SignalReading
from firedetd.types import CLEARED, ESCALATED, RAISED, Frame, Prediction

LABELS = ("fire", "smoke", "none")
FIRE = (0.9, 0.05, 0.05)
NONE = (0.02, 0.03, 0.95)
SMOKE = (0.05, 0.9, 0.05)
S = 1000000000


def detection(**kw):
    base = dict(smoothing_alpha=1.0, fire=ThresholdConfig(on=0.6, off=0.4, raise_frames=3, clear_frames=2),
                smoke=ThresholdConfig(on=0.6, off=0.4, raise_frames=3, clear_frames=2), cooldown_s=10,
                ongoing_interval_s=0, clear_after_s=0, motion=MotionConfig(enabled=False),
                signal=SignalConfig(degraded_after_s=1.0))
    base.update(kw)
    return DetectionConfig(**base)


def test_snapshot_is_a_decodable_jpeg_of_the_snapshot_frame():
    snap = np.zeros((90, 160, 3), np.uint8)
    snap[..., 0] = 255  # red in RGB
    f = Frame("cam", 1, 0, 0, np.zeros((8, 8, 3), np.uint8), snap)
    jpeg = encode_snapshot(f, SnapshotConfig())
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (90, 160, 3)
    assert decoded[..., 2].mean() > 200 and decoded[..., 0].mean() < 50  # BGR: red channel high
    assert encode_snapshot(f, SnapshotConfig(enabled=False)) is None


class RecordingWriter(object):
    def __init__(self):
        self.alerts = []

    def enqueue(self, alert):
        self.alerts.append(alert)

    def flush_backlog(self):
        pass


def feed(post, probs_list, camera="cam", step_ns=S // 10, reason=None):
    """Hand the postprocessor one prediction per entry (None: a frame the gate found unusable for `reason`)."""
    for i, probs in enumerate(probs_list):
        signal = SignalReading(reason if probs is None else None, 0.0, 0.0, None)
        frame = Frame(camera, i, i * step_ns, 0, np.zeros((224, 224, 3), np.uint8), signal=signal)
        post.handle(Prediction(frame, probs, 1.0, decided_ns=1000))


def test_postprocessor_thread_writes_events_to_the_outbox_writer(spec):
    writer = RecordingWriter()
    predictions = queue.Queue()
    post = Postprocessor(spec, detection(), predictions, writer, Metrics())
    post.start()
    for i, probs in enumerate([FIRE] * 4 + [NONE] * 3):
        frame = Frame("cam", i, i * S // 10, 0, np.zeros((224, 224, 3), np.uint8))
        predictions.put(Prediction(frame, probs, 1.0, decided_ns=1000))
    predictions.join()
    post.stop()
    post.join(5)
    assert [(a.kind, a.state) for a in writer.alerts] == [("fire", RAISED), ("fire", CLEARED)]
    raised, cleared = writer.alerts
    assert raised.id == cleared.id and raised.event_key != cleared.event_key
    assert raised.snapshot_jpeg[:2] == b"\xff\xd8" and cleared.snapshot_jpeg is None
    assert raised.frame_seq == 2 and raised.model.startswith(spec.name)
    assert post.decided == 7


def test_escalation_is_one_incident_with_both_kinds_active_in_metrics(spec):
    writer, metrics = RecordingWriter(), Metrics()
    post = Postprocessor(spec, detection(), queue.Queue(), writer, metrics)
    feed(post, [SMOKE] * 4 + [FIRE] * 4)
    assert [(a.kind, a.state) for a in writer.alerts] == [("smoke", RAISED), ("fire", ESCALATED)]
    assert len({a.id for a in writer.alerts}) == 1
    # the escalation carries the picture of the flames, as the raise carried the smoke's
    assert writer.alerts[0].snapshot_jpeg[:2] == writer.alerts[1].snapshot_jpeg[:2] == b"\xff\xd8"
    assert writer.alerts[1].event_key.endswith(":escalated")
    active = {k: metrics.alert_active.labels("cam", k)._value.get() for k in ("fire", "smoke")}
    assert active == {"fire": 1, "smoke": 1}


def test_unusable_frames_are_counted_never_decided_and_degrade_the_camera(spec):
    writer, metrics = RecordingWriter(), Metrics()
    changes = []
    post = Postprocessor(spec, detection(), queue.Queue(), writer, metrics,
                         on_camera_problem=lambda camera, reason: changes.append((camera, reason)))
    feed(post, [None] * 30, reason=DARK)   # 3 s of black frames, degraded after 1 s
    assert writer.alerts == [] and post.decided == 0 and post.seen == 30
    assert metrics.frames_unusable.labels("cam", DARK)._value.get() == 30
    assert post.camera_problems() == {"cam": DARK} and changes == [("cam", DARK)]
    assert metrics.camera_degraded.labels("cam", DARK)._value.get() == 1
    feed(post, [NONE] * 15)                # 1.5 s of pictures: well again
    assert post.camera_problems() == {} and changes[-1] == ("cam", None)
    assert metrics.camera_degraded.labels("cam", DARK)._value.get() == 0


def test_a_camera_with_its_own_thresholds_is_decided_with_them(spec):
    writer = RecordingWriter()
    strict = CameraDetectionConfig(fire=CameraThresholds(on=0.95))
    post = Postprocessor(spec, detection(), queue.Queue(), writer, Metrics(),
                         camera_detection={"fireplace": strict.over})
    feed(post, [FIRE] * 5, camera="fireplace")
    feed(post, [FIRE] * 5, camera="garage")
    assert [(a.camera, a.state) for a in writer.alerts] == [("garage", RAISED)]


def fire_map(rows, cols):
    """A (3, 7, 7) map in logit units, all negative, with the fire class strong on rows x cols."""
    cam = np.full((3, 7, 7), -6.0, np.float32)
    cam[0, rows, cols] = -1.0
    return cam


def feed_maps(post, steps):
    """One prediction per (probs, map) step."""
    for i, (probs, cam) in enumerate(steps):
        frame = Frame("cam", i, i * S // 10, 0, np.zeros((224, 224, 3), np.uint8))
        post.handle(Prediction(frame, probs, 1.0, decided_ns=1000, cam=cam))


def test_alert_region_is_where_the_smoothed_map_of_its_kind_is_strong(spec):
    writer = RecordingWriter()
    fire = ThresholdConfig(on=0.6, off=0.4, raise_frames=1, clear_frames=2)
    post = Postprocessor(spec, detection(smoothing_alpha=0.3, fire=fire), queue.Queue(), writer, Metrics())
    lower_right, glare = fire_map(slice(4, 7), slice(5, 7)), fire_map(slice(0, 1), slice(0, 1))
    # the fire sits in the lower right; the frame that raises the alarm (the 4th of fire: smoothed 0.69 > 0.6) has
    # glare top left, which alone would be the region, and smoothing keeps it out (-4.5 < half way, -4.25)
    feed_maps(post, [(NONE, lower_right)] * 3 + [(FIRE, lower_right)] * 3 + [(FIRE, glare)])
    assert [(a.kind, a.state, a.frame_seq) for a in writer.alerts] == [("fire", RAISED, 6)]
    assert writer.alerts[0].region == pytest.approx((5 / 7, 4 / 7, 2 / 7, 3 / 7), abs=1e-4)


def test_alert_region_is_in_shares_of_the_frame_for_a_cropped_camera(spec):
    writer = RecordingWriter()
    post = Postprocessor(spec, detection(), queue.Queue(), writer, Metrics())
    post.crops["cam"] = CropConfig(x=0.5, y=0.25, width=0.5, height=0.5)
    feed_maps(post, [(FIRE, fire_map(slice(0, 7), slice(0, 7)))] * 4)   # the whole watched region
    assert writer.alerts[0].region == pytest.approx((0.5, 0.25, 0.5, 0.5))


def test_a_model_without_a_map_gives_alerts_without_a_region(spec):
    writer = RecordingWriter()
    feed(Postprocessor(spec, detection(), queue.Queue(), writer, Metrics()), [FIRE] * 4)
    assert writer.alerts[0].region is None


def red_pixels(jpeg):
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return (bgr[..., 2] > 150) & (bgr[..., 1] < 80) & (bgr[..., 0] < 80)


def test_the_snapshot_outlines_the_alerts_region_in_red_unless_told_not_to(spec):
    lower_right = fire_map(slice(4, 7), slice(5, 7))   # region (5/7, 4/7, 2/7, 3/7) of the (black) frame
    drawn, plain = RecordingWriter(), RecordingWriter()
    for writer, draw in ((drawn, True), (plain, False)):
        config = detection(snapshot=SnapshotConfig(draw_region=draw))
        feed_maps(Postprocessor(spec, config, queue.Queue(), writer, Metrics()), [(FIRE, lower_right)] * 4)
    red = red_pixels(drawn.alerts[0].snapshot_jpeg)
    rows, cols = np.nonzero(red)
    # the outline runs along the region's edges (x from 5/7 of 224 = 160, y from 4/7 = 128), nowhere top left
    assert red.sum() > 200 and cols.min() >= 150 and rows.min() >= 120
    assert not red[:100, :100].any()
    assert not red_pixels(plain.alerts[0].snapshot_jpeg).any()
    assert drawn.alerts[0].region == plain.alerts[0].region
