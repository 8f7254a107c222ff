"""The small frozen values that travel between pipeline stages."""

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

# alert lifecycle
RAISED = "raised"
ONGOING = "ongoing"
CLEARED = "cleared"
ALERT_STATES = (RAISED, ONGOING, CLEARED)


@dataclass(frozen=True)
class Frame:
    """One captured frame, already scaled to the model's input size (H, W, 3 uint8, colour per the model spec).

    `snapshot` is the same instant at snapshot size (H, W, 3 uint8 RGB) for alert pictures, or None.
    `pts_ns` is the stream's presentation time; `captured_ns` is time.monotonic_ns()-style clock of arrival.
    """

    camera: str
    seq: int
    pts_ns: int
    captured_ns: int
    image: np.ndarray = field(repr=False)
    snapshot: Optional[np.ndarray] = field(default=None, repr=False)


@dataclass(frozen=True)
class Prediction:
    """The engine's class probabilities for one frame (order = the model spec's labels)."""

    frame: Frame
    probs: Tuple[float, ...]
    engine_ms: float
    decided_ns: int


@dataclass(frozen=True)
class Alert:
    """One alert event; `id` is stable across the raised/ongoing/cleared events of one incident."""

    id: str
    camera: str
    kind: str                  # a model label: "fire" or "smoke"
    state: str                 # raised | ongoing | cleared
    started_ns: int            # wall clock (time.time_ns) when the incident was raised
    event_ns: int              # wall clock of this event
    score: float               # smoothed probability at this event
    peak_score: float
    frame_seq: int
    latency_ms: float          # capture -> decision for the frame that produced this event
    model: str
    snapshot_jpeg: Optional[bytes] = field(default=None, repr=False)

    @property
    def event_key(self):
        """The idempotency key of this event: the same on every retry and after a restart."""
        return "%s:%s" % (self.id, self.state if self.state != ONGOING else "ongoing-%d" % self.event_ns)
