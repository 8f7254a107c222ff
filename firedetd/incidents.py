"""One camera's decisions: smoothed probabilities -> incidents (raised, escalated, ongoing, cleared).

Pure and clocked by the frames' own timestamps (media time), so a recording gives the same incidents however
fast it is read. The rules, in the words a site uses:

- **One incident per fire.** A camera has at most one incident open. It opens (`raised`) when fire or smoke
  stays at or above its `on` threshold for `raise_frames` decided frames in a row; fire wins when both do.
- **Smoke that becomes fire** is the same incident: an `escalated` event, kind `fire`, same id.
- **It ends after quiet time.** The incident clears only when no alerting class has reached its `off`
  threshold for `clear_after_s` seconds of media time (and at least `clear_frames` decided frames). A fire
  that dies down and flares up within that time continues the incident.
- **A still scene needs more confidence.** Flames flicker and smoke drifts; a neon sign, a red coat or a
  photo of a fire does not. While almost nothing in the (unmasked) picture has changed over the last
  `motion.window_s`, `on` is raised by `motion.static_boost` (docs/detection.md shows what this gains and
  costs on videos).
- **Unusable frames are no evidence.** A frame the signal gate rejects (black, frozen...) neither raises nor
  keeps an incident open; the quiet-time clock runs on.
"""

import uuid
from collections import deque
from typing import Dict, List, Optional, Tuple

import numpy as np

from .clock import wall_ns
from .types import CLEARED, ESCALATED, ONGOING, RAISED

ALERT_KINDS = ("fire", "smoke")
SEVERITY = {"smoke": 1, "fire": 2}


class Incident(object):
    """The open incident of one camera (mutable; only its CameraTracker changes it)."""

    def __init__(self, kind: str, t_ns: int, score: float):
        self.id = uuid.uuid4().hex
        self.kind = kind
        self.kinds_seen = {kind}
        self.started_wall_ns = wall_ns()
        self.started_t = t_ns
        self.peak = score
        self.last_event_t = t_ns
        self.last_evidence_t = t_ns


class MotionHistory(object):
    """The change readings of the last `window_s` of media time; says whether the scene stood still."""

    def __init__(self):
        self._readings = deque()  # type: Deque[Tuple[int, float]]

    def add(self, t_ns: int, change: Optional[float], window_s: float) -> None:
        readings = self._readings
        if readings and t_ns < readings[-1][0]:   # the clock restarted (reconnect, looped file)
            readings.clear()
        if change is not None:
            readings.append((t_ns, change))
        while readings and t_ns - readings[0][0] > window_s * 1e9:
            readings.popleft()

    def is_still(self, motion) -> bool:
        """True when no reading of the window saw more than `still_below` of the picture change: a camera that
        has just started is still until it shows movement. Without readings (no gate) nothing is assumed."""
        readings = self._readings
        return bool(readings) and max(change for _, change in readings) < motion.still_below


class CameraTracker(object):
    """Exponential smoothing of one camera's probabilities and its incident."""

    def __init__(self, camera: str, labels):
        self.camera = camera
        self.labels = tuple(labels)
        self.smoothed = None              # type: Optional[np.ndarray]
        self.index = {k: self.labels.index(k) for k in ALERT_KINDS if k in self.labels}
        self.above = {k: 0 for k in self.index}
        self.below = 0
        self.incident = None              # type: Optional[Incident]
        self.last_incident = None         # type: Optional[Incident]  (for the cleared event)
        self.cleared_t = None             # type: Optional[int]
        self.motion = MotionHistory()
        self.still = False                # whether the last decision saw a still scene

    # -- what the rest of the daemon reads

    @property
    def active_kinds(self) -> Tuple[str, ...]:
        """The kinds the open incident has shown (smoke stays listed after an escalation to fire), or ()."""
        if self.incident is None:
            return ()
        return tuple(k for k in ALERT_KINDS if k in self.incident.kinds_seen)

    def score(self, kind: str) -> float:
        return float(self.smoothed[self.index[kind]]) if self.smoothed is not None else 0.0

    # -- decisions

    def update(self, probs, t_ns: int, detection, change: Optional[float] = None) -> List[Tuple[str, str]]:
        """Smooth one decided frame's probabilities at media time t_ns; return the [(kind, state)] events due."""
        p = np.asarray(probs, dtype=np.float64)
        a = detection.smoothing_alpha
        self.smoothed = p if self.smoothed is None else a * p + (1.0 - a) * self.smoothed
        self.motion.add(t_ns, change, detection.motion.window_s)
        self.still = detection.motion.enabled and self.motion.is_still(detection.motion)
        qualified = self._count_above(detection)
        if self.incident is None:
            return self._maybe_raise(qualified, t_ns, detection)
        return self._follow(qualified, t_ns, detection)

    def skip(self, t_ns: int, detection) -> List[Tuple[str, str]]:
        """An unusable frame at t_ns: no evidence either way, but the quiet-time clock runs on."""
        for kind in self.above:
            self.above[kind] = 0
        if self.incident is None:
            return []
        return self._maybe_clear(t_ns, detection, evidence=False)

    def _count_above(self, detection) -> List[str]:
        qualified = []
        for kind in self.above:
            thresholds = detection.thresholds(kind)
            on = thresholds.on
            if self.still:
                on = min(0.99, on + detection.motion.static_boost)
            self.above[kind] = self.above[kind] + 1 if self.score(kind) >= on else 0
            if self.above[kind] >= thresholds.raise_frames:
                qualified.append(kind)
        return qualified

    def _maybe_raise(self, qualified, t_ns, detection):
        if not qualified or self._cooling_down(t_ns, detection.cooldown_s):
            return []
        kind = max(qualified, key=lambda k: SEVERITY[k])
        self.incident = Incident(kind, t_ns, self.score(kind))
        self.below = 0
        return [(kind, RAISED)]

    def _follow(self, qualified, t_ns, detection):
        incident = self.incident
        if t_ns < incident.last_event_t or t_ns < incident.last_evidence_t:
            # the stream restarted its clock (reconnect, looped file): measure from here
            incident.last_event_t = incident.last_evidence_t = t_ns
        incident.peak = max(incident.peak, max(self.score(k) for k in self.index))
        events = []
        stronger = [k for k in qualified if SEVERITY[k] > SEVERITY[incident.kind]]
        if stronger:
            incident.kind = max(stronger, key=lambda k: SEVERITY[k])
            incident.kinds_seen.add(incident.kind)
            incident.last_event_t = t_ns
            events.append((incident.kind, ESCALATED))
        for kind in qualified:
            incident.kinds_seen.add(kind)
        evidence = any(self.score(k) >= detection.thresholds(k).off for k in self.index)
        cleared = self._maybe_clear(t_ns, detection, evidence)
        if cleared:
            return events + cleared
        interval = detection.ongoing_interval_s
        if not events and interval > 0 and t_ns - incident.last_event_t >= interval * 1e9:
            incident.last_event_t = t_ns
            events.append((incident.kind, ONGOING))
        return events

    def _maybe_clear(self, t_ns, detection, evidence):
        incident = self.incident
        if evidence:
            self.below = 0
            incident.last_evidence_t = t_ns
            return []
        self.below += 1
        if t_ns < incident.last_evidence_t:
            incident.last_evidence_t = t_ns
        quiet_s = (t_ns - incident.last_evidence_t) / 1e9
        if quiet_s < detection.clear_after_s or self.below < detection.thresholds(incident.kind).clear_frames:
            return []
        self.last_incident, self.incident = incident, None
        self.cleared_t = t_ns
        for kind in self.above:
            self.above[kind] = 0
        return [(incident.kind, CLEARED)]

    def _cooling_down(self, t_ns, cooldown_s):
        if self.cleared_t is None or cooldown_s <= 0:
            return False
        if t_ns < self.cleared_t:  # clock restarted
            self.cleared_t = t_ns
        return t_ns - self.cleared_t < cooldown_s * 1e9

    def incident_for(self, state: str) -> Optional[Incident]:
        """The incident an event of `state` belongs to (a cleared one has just left `incident`)."""
        return self.last_incident if state == CLEARED else self.incident


def tracker_summary(tracker: CameraTracker) -> Dict[str, object]:
    """The tracker's state for status displays: active kinds, the incident id and whether the scene stands still."""
    incident = tracker.incident
    return {"active": list(tracker.active_kinds), "incident": incident.id if incident else None,
            "still": tracker.still}
