"""firedetd/incidents.py: one incident per camera episode, escalation, quiet time, unusable frames, motion."""

import pytest

from firedetd.config import DetectionConfig, MotionConfig, ThresholdConfig
from firedetd.incidents import CameraTracker
from firedetd.types import CLEARED, ESCALATED, ONGOING, RAISED

LABELS = ("fire", "smoke", "none")
FIRE = (0.9, 0.05, 0.05)
NONE = (0.02, 0.03, 0.95)
SMOKE = (0.05, 0.9, 0.05)
S = 1000000000


def detection(**kw):
    base = dict(smoothing_alpha=1.0, fire=ThresholdConfig(on=0.6, off=0.4, raise_frames=3, clear_frames=2),
                smoke=ThresholdConfig(on=0.6, off=0.4, raise_frames=3, clear_frames=2), cooldown_s=10,
                ongoing_interval_s=0, clear_after_s=0, motion=MotionConfig(enabled=False))
    base.update(kw)
    return DetectionConfig(**base)


def run(tracker, seq_of_probs, det, start_s=0.0, step_s=1.0, change=None):
    events = []
    for i, probs in enumerate(seq_of_probs):
        t = int((start_s + i * step_s) * S)
        new = tracker.skip(t, det) if probs is None else tracker.update(probs, t, det, change)
        events.extend((i, kind, state) for kind, state in new)
    return events


def test_raises_after_k_frames_above_on_and_clears_after_m_below_off():
    events = run(CameraTracker("cam", LABELS), [NONE, FIRE, FIRE, FIRE, FIRE, NONE, NONE, NONE], detection())
    assert events == [(3, "fire", RAISED), (6, "fire", CLEARED)]


def test_interrupted_run_of_high_frames_does_not_raise():
    assert run(CameraTracker("cam", LABELS), [FIRE, FIRE, NONE, FIRE, FIRE, NONE], detection()) == []


def test_hysteresis_keeps_the_incident_between_off_and_on():
    middle = (0.5, 0.2, 0.3)  # below on, above off
    events = run(CameraTracker("cam", LABELS), [FIRE] * 3 + [middle] * 10 + [NONE] * 2, detection())
    assert events == [(2, "fire", RAISED), (14, "fire", CLEARED)]


def test_quiet_time_keeps_one_incident_through_a_lull():
    # 20 s of nothing inside a 30 s quiet time: the fire that flares up again is the same incident
    probs = [FIRE] * 5 + [NONE] * 20 + [FIRE] * 5 + [NONE] * 40
    tracker = CameraTracker("cam", LABELS)
    events = run(tracker, probs, detection(clear_after_s=30))
    assert [(i, s) for i, _, s in events] == [(2, RAISED), (59, CLEARED)]   # last evidence at 29 s, +30 s


def test_without_quiet_time_the_lull_splits_the_incident():
    probs = [FIRE] * 5 + [NONE] * 20 + [FIRE] * 5 + [NONE] * 40
    events = run(CameraTracker("cam", LABELS), probs, detection(clear_after_s=0, cooldown_s=0))
    assert [s for _, _, s in events].count(RAISED) == 2


def test_smoke_that_becomes_fire_escalates_the_same_incident():
    tracker = CameraTracker("cam", LABELS)
    events = run(tracker, [SMOKE] * 4 + [FIRE] * 4 + [NONE] * 3, detection())
    assert [(k, s) for _, k, s in events] == [("smoke", RAISED), ("fire", ESCALATED), ("fire", CLEARED)]
    assert tracker.last_incident.kinds_seen == {"smoke", "fire"}


def test_fire_then_smoke_stays_one_fire_incident():
    events = run(CameraTracker("cam", LABELS), [FIRE] * 4 + [SMOKE] * 6 + [NONE] * 3, detection())
    assert [(k, s) for _, k, s in events] == [("fire", RAISED), ("fire", CLEARED)]


def test_fire_wins_when_both_qualify_on_the_same_frame():
    both = (0.62, 0.62, 0.0)
    events = run(CameraTracker("cam", LABELS), [both] * 3, detection())
    assert events == [(2, "fire", RAISED)]


def test_cooldown_suppresses_a_new_incident_until_it_expires():
    probs = [FIRE] * 3 + [NONE] * 2 + [FIRE] * 3 + [NONE] * 2 + [FIRE] * 3
    events = run(CameraTracker("cam", LABELS), probs, detection(cooldown_s=5))
    raised = [i for i, _, state in events if state == RAISED]
    # cleared at frame 4 (t=4 s): frames 5-7 are within 5 s, so the second raise waits until t >= 9 s
    assert raised[0] == 2 and all(i >= 9 for i in raised[1:]) and len(raised) == 2


def test_ongoing_events_while_active():
    events = run(CameraTracker("cam", LABELS), [FIRE] * 10, detection(ongoing_interval_s=3))
    assert [(i, s) for i, _, s in events] == [(2, RAISED), (5, ONGOING), (8, ONGOING)]


def test_smoothing_delays_a_single_spike():
    det = detection(smoothing_alpha=0.3)
    assert run(CameraTracker("cam", LABELS), [NONE] * 5 + [FIRE] + [NONE] * 5, det) == []
    unsmoothed = run(CameraTracker("cam", LABELS), [NONE] * 3 + [FIRE] * 10, detection())
    smoothed = run(CameraTracker("cam", LABELS), [NONE] * 3 + [FIRE] * 10, det)
    assert unsmoothed[0][0] == 5 and smoothed[0][0] > 5  # the average must climb past `on` first


def test_unusable_frames_never_raise_and_break_a_run():
    # two fire frames, an unusable one, two more: never three decided in a row
    events = run(CameraTracker("cam", LABELS), [FIRE, FIRE, None, FIRE, FIRE, None] * 3, detection())
    assert events == []


def test_unusable_frames_let_the_quiet_time_run_out():
    tracker = CameraTracker("cam", LABELS)
    events = run(tracker, [FIRE] * 3 + [None] * 40, detection(clear_after_s=30))
    assert [(i, s) for i, _, s in events] == [(2, RAISED), (32, CLEARED)]


def test_looped_clock_keeps_the_incident_and_its_ongoing_events():
    tracker = CameraTracker("cam", LABELS)
    det = detection(ongoing_interval_s=2, clear_after_s=30)
    run(tracker, [FIRE] * 3, det, start_s=100)
    events = run(tracker, [FIRE] * 4, det, start_s=0)  # a looped file / reconnect: pts restart at 0
    assert [s for _, _, s in events] == [ONGOING]
    assert tracker.incident is not None


def test_a_still_scene_needs_more_confidence():
    moderate = (0.7, 0.1, 0.2)    # above on 0.6, below on + boost
    det = detection(motion=MotionConfig(enabled=True, window_s=2.0, still_below=0.003, static_boost=0.2))
    still = run(CameraTracker("cam", LABELS), [moderate] * 12, det, step_s=0.5, change=0.0)
    moving = run(CameraTracker("cam", LABELS), [moderate] * 12, det, step_s=0.5, change=0.02)
    unknown = run(CameraTracker("cam", LABELS), [moderate] * 12, det, step_s=0.5, change=None)
    assert still == []
    assert moving == [(2, "fire", RAISED)] and unknown == [(2, "fire", RAISED)]
    strong = run(CameraTracker("cam", LABELS), [FIRE] * 12, det, step_s=0.5, change=0.0)
    assert [s for _, _, s in strong] == [RAISED]   # a clear fire is raised still or not


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_smoothed_probabilities_stay_a_distribution(alpha):
    tracker = CameraTracker("cam", LABELS)
    for probs in [FIRE, NONE, SMOKE, FIRE]:
        tracker.update(probs, 0, detection(smoothing_alpha=alpha))
        assert abs(tracker.smoothed.sum() - 1.0) < 1e-9
