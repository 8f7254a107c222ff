"""The small frozen values that travel between pipeline stages."""

from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

import numpy as np

# alert lifecycle: one incident per camera episode; smoke that becomes fire escalates the same incident
RAISED = "raised"
ONGOING = "ongoing"
ESCALATED = "escalated"
CLEARED = "cleared"
ALERT_STATES = (RAISED, ONGOING, ESCALATED, CLEARED)


@dataclass(frozen=True)
class Frame:
    """One captured frame, already scaled to the model's input size (H, W, 3 uint8, colour per the model spec).

    `snapshot` is the same instant at snapshot size (H, W, 3 uint8 RGB) for alert pictures, or None.
    `pts_ns` is the stream's presentation time; `captured_ns` is time.monotonic_ns()-style clock of arrival.
    `signal` is the signal-quality gate's verdict (signal_quality.SignalReading), None where no gate ran.
    `tiles` (N, H, W, 3) are parts of the watched region at model size, decided with `image` in one batch.
    """

    camera: str
    seq: int
    pts_ns: int
    captured_ns: int
    image: np.ndarray = field(repr=False)
    snapshot: Optional[np.ndarray] = field(default=None, repr=False)
    signal: Optional[Any] = None
    tiles: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def usable(self):
        """False when the gate found no picture in this frame (black, uniform, frozen...): it is not decided."""
        return self.signal is None or self.signal.reason is None


@dataclass(frozen=True)
class Prediction:
    """The engine's class probabilities for one frame (order = the model spec's labels); None for a frame the
    signal gate found unusable, which never reaches the engine. With tiles, each alerting class's probability is
    its highest over the whole view and the tiles. `cam` is the whole view's class activation map (classes, h, w)
    float32 when the model has one (modelspec.MapSpec), else None."""

    frame: Frame
    probs: Optional[Tuple[float, ...]]
    engine_ms: float
    decided_ns: int
    cam: Optional[np.ndarray] = field(default=None, repr=False)


@dataclass(frozen=True)
class Alert:
    """One alert event; `id` is stable across the raised/ongoing/cleared events of one incident."""

    id: str
    camera: str
    kind: str                  # a model label: "fire" or "smoke" (after an escalation: fire)
    state: str                 # raised | ongoing | escalated | cleared
    started_ns: int            # wall clock (time.time_ns) when the incident was raised
    event_ns: int              # wall clock of this event
    score: float               # smoothed probability at this event
    peak_score: float
    frame_seq: int
    latency_ms: float          # capture -> decision for the frame that produced this event
    model: str
    snapshot_jpeg: Optional[bytes] = field(default=None, repr=False)
    # (x, y, w, h) as shares of the frame: where the smoothed class activation map of `kind` is strong
    # (region.half_peak_region); None when the model has no map
    region: Optional[Tuple[float, float, float, float]] = None

    @property
    def event_key(self):
        """The idempotency key of this event: the same on every retry and after a restart."""
        return "%s:%s" % (self.id, self.state if self.state != ONGOING else "ongoing-%d" % self.event_ns)
