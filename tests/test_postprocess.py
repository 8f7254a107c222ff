"""firedetd/postprocess.py: smoothing, hysteresis, cooldown, alert lifecycle, snapshots, outbox hand-off."""

import queue

import cv2
import numpy as np
import pytest

from firedetd.config import DetectionConfig, SnapshotConfig, ThresholdConfig
from firedetd.metrics import Metrics
from firedetd.postprocess import CameraTracker, Postprocessor, encode_snapshot
from firedetd.types import CLEARED, ONGOING, RAISED, Frame, Prediction

LABELS = ("fire", "smoke", "none")
FIRE = (0.9, 0.05, 0.05)
NONE = (0.02, 0.03, 0.95)
SMOKE = (0.05, 0.9, 0.05)
S = 1000000000


def detection(**kw):
    base = dict(smoothing_alpha=1.0, fire=ThresholdConfig(on=0.6, off=0.4, raise_frames=3, clear_frames=2),
                smoke=ThresholdConfig(on=0.6, off=0.4, raise_frames=3, clear_frames=2), cooldown_s=10,
                ongoing_interval_s=0)
    base.update(kw)
    return DetectionConfig(**base)


def run(tracker, seq_of_probs, det, start_s=0.0, step_s=1.0):
    events = []
    for i, probs in enumerate(seq_of_probs):
        for kind, state in tracker.update(probs, int((start_s + i * step_s) * S), det):
            events.append((i, kind, state))
    return events


def test_raises_after_k_frames_above_on_and_clears_after_m_below_off():
    events = run(CameraTracker("cam", LABELS), [NONE, FIRE, FIRE, FIRE, FIRE, NONE, NONE, NONE], detection())
    assert events == [(3, "fire", RAISED), (6, "fire", CLEARED)]


def test_interrupted_run_of_high_frames_does_not_raise():
    events = run(CameraTracker("cam", LABELS), [FIRE, FIRE, NONE, FIRE, FIRE, NONE], detection())
    assert events == []


def test_hysteresis_keeps_alert_between_off_and_on():
    middle = (0.5, 0.2, 0.3)  # below on, above off
    events = run(CameraTracker("cam", LABELS), [FIRE] * 3 + [middle] * 10 + [NONE] * 2, detection())
    assert events == [(2, "fire", RAISED), (14, "fire", CLEARED)]


def test_cooldown_suppresses_a_new_alert_until_it_expires():
    det = detection(cooldown_s=5)
    probs = [FIRE] * 3 + [NONE] * 2 + [FIRE] * 3 + [NONE] * 2 + [FIRE] * 3
    events = run(CameraTracker("cam", LABELS), probs, det, step_s=1.0)
    raised = [i for i, _, state in events if state == RAISED]
    # cleared at frame 4 (t=4 s): frames 5-7 are within 5 s, so the second raise waits until t >= 9 s
    assert raised[0] == 2 and all(i >= 9 for i in raised[1:]) and len(raised) == 2


def test_ongoing_events_while_active():
    events = run(CameraTracker("cam", LABELS), [FIRE] * 10, detection(ongoing_interval_s=3), step_s=1.0)
    assert [(i, s) for i, _, s in events] == [(2, RAISED), (5, ONGOING), (8, ONGOING)]


def test_smoothing_delays_a_single_spike():
    det = detection(smoothing_alpha=0.3)
    events = run(CameraTracker("cam", LABELS), [NONE] * 5 + [FIRE] + [NONE] * 5, det)
    assert events == []
    unsmoothed = run(CameraTracker("cam", LABELS), [NONE] * 3 + [FIRE] * 10, detection())
    smoothed = run(CameraTracker("cam", LABELS), [NONE] * 3 + [FIRE] * 10, det)
    assert unsmoothed[0][0] == 5 and smoothed[0][0] > 5  # the average must climb past `on` first


def test_fire_and_smoke_are_independent():
    events = run(CameraTracker("cam", LABELS), [SMOKE] * 4 + [FIRE] * 4, detection())
    kinds = [(k, s) for _, k, s in events]
    assert ("smoke", RAISED) in kinds and ("fire", RAISED) in kinds


def test_restarted_stream_clock_does_not_block_ongoing_forever():
    tracker = CameraTracker("cam", LABELS)
    det = detection(ongoing_interval_s=2)
    run(tracker, [FIRE] * 3, det, start_s=100)
    events = run(tracker, [FIRE] * 4, det, start_s=0)  # reconnect: pts restart at 0
    assert [s for _, _, s in events] == [ONGOING]


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


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_smoothed_probabilities_stay_a_distribution(alpha):
    tracker = CameraTracker("cam", LABELS)
    for probs in [FIRE, NONE, SMOKE, FIRE]:
        tracker.update(probs, 0, detection(smoothing_alpha=alpha))
        assert abs(tracker.smoothed.sum() - 1.0) < 1e-9
