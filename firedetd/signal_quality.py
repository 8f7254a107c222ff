"""The signal-quality gate: is this frame a picture of a scene at all, and is the scene moving?

A camera that starts up, loses its signal, is covered, faces a wall of light or hands out the same
frame again and again sends pictures that say nothing about fire: they are counted as unusable
(`firedetd_frames_unusable_total{camera,reason}`) and never decided. When they persist the camera is
reported degraded (`/healthz`, the status page, MQTT): a camera that goes dark is a camera problem,
never a fire alarm.

The same pass measures how much of the picture changed over the last fraction of a second (on a
small grey thumbnail, masked regions excluded): flames flicker and smoke drifts, a neon sign or a red
coat does not, and the postprocessor asks for more confidence in a scene that does not move.

Everything here is pure numpy on the model-size image (224x224: about 0.1 ms a frame) and clocked by
the frames' own timestamps, so a recording gives the same answer however fast it is read.
"""

from collections import deque
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

# why a frame was not decided (the `reason` label of firedetd_frames_unusable_total)
DARK = "dark"                  # black or nearly: lens cap, lost signal, night without IR
UNIFORM = "uniform"            # one flat colour: covered lens, a blank encoder screen
OVEREXPOSED = "overexposed"    # white: blinded by a light, iris wide open
TEST_PATTERN = "test_pattern"  # colour bars: an encoder or a cable without a camera
NOISE = "noise"                # snow: an analogue receiver without signal
FROZEN = "frozen"              # the same picture over and over: a stuck decoder or camera
REASONS = (DARK, UNIFORM, OVEREXPOSED, TEST_PATTERN, NOISE, FROZEN)

# what a persisting reason means to the person who has to go and look
PROBLEMS = {
    DARK: "no picture: the image is black (signal lost, lens covered, or night without infrared)",
    UNIFORM: "no picture: the image is one flat colour (lens covered or blank video)",
    OVEREXPOSED: "no picture: the image is white (camera blinded or overexposed)",
    TEST_PATTERN: "no picture: the camera sends a test pattern (colour bars)",
    NOISE: "no picture: the image is noise (no signal)",
    FROZEN: "frozen: the camera sends the same picture again and again",
}

THUMB = 32              # side of the grey thumbnail motion is measured on (7x7 pixel cells at 224: noise averages out)
CHANGE_LEVEL = 10.0     # a thumbnail cell "changed" when its grey level moved by more than this (of 255)


@dataclass(frozen=True)
class SignalReading:
    """One frame's verdict: `reason` is None for a usable picture; `change` is the share of the (unmasked)
    picture that changed over the last `window` (0..1; None until there is a frame to compare with)."""

    reason: Optional[str]
    brightness: float
    contrast: float
    change: Optional[float]

    @property
    def usable(self) -> bool:
        return self.reason is None


def grey_of(image: np.ndarray) -> np.ndarray:
    """Luma as uint8 (the channel order barely matters for what is measured here)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def thumbnail(grey: np.ndarray, side: int = THUMB) -> np.ndarray:
    """Area-averaged side x side float32 thumbnail."""
    import cv2

    return cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)


def neighbour_correlation(grey: np.ndarray) -> float:
    """Correlation of each pixel with its right-hand neighbour: near 1 in any photograph, near 0 for snow."""
    g = grey.astype(np.float32)
    a = g[:, :-1] - g[:, :-1].mean()
    b = g[:, 1:] - g[:, 1:].mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 1.0


def is_colour_bars(image: np.ndarray, block: int = 4) -> bool:
    """Colour bars (SMPTE over a PLUGE strip, EBU bars): most horizontal strips of a 32x32 colour thumbnail are
    vertical bars of one flat, saturated colour each. Scenes never are: a foggy horizon or a sky is flat but
    grey and has no bars; a striped awning is not flat within a bar."""
    import cv2

    thumb = cv2.resize(np.ascontiguousarray(image), (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    if float((thumb.max(axis=2) - thumb.min(axis=2)).mean()) < 30.0:   # grey pictures are not colour bars
        return False
    strips = thumb.reshape(-1, block, THUMB, 3)
    column_means = strips.mean(axis=1, keepdims=True)
    residual = (strips - column_means).std(axis=(1, 2)).max(axis=1)
    spread = column_means.std(axis=(1, 2)).max(axis=1)
    return float(((residual < 1.5) & (spread > 20.0)).mean()) >= 0.6


def classify_picture(image: np.ndarray) -> Tuple[Optional[str], float, float]:
    """(reason or None, mean luma, thumbnail luma std) of one frame, from its pixels alone (frozen needs history).

    The limits are deliberately tight: a dark scene with one small bright light, a foggy yard or a room
    filling with smoke are pictures and must be decided; only frames with (almost) nothing in them are not."""
    import cv2

    grey = grey_of(image)
    thumb = thumbnail(grey)
    mean, full_std = (float(v[0][0]) for v in cv2.meanStdDev(grey))
    std = float(thumb.std())
    # a few bright pixels (a flame, a lamp) make a dark frame a picture: 0.03 % is 15 pixels at 224x224
    bright_share = float(np.count_nonzero(grey > 90)) / grey.size
    if mean < 14.0 and std < 6.0 and bright_share < 0.0003:
        return DARK, mean, std
    if mean > 235.0 and std < 6.0:
        return OVEREXPOSED, mean, std
    if full_std < 3.0:
        return UNIFORM, mean, std
    if is_colour_bars(image):
        return TEST_PATTERN, mean, std
    # snow: pixels that do not agree with their neighbours; a dark noisy frame is a dark frame
    if full_std > 8.0 and neighbour_correlation(grey) < 0.35:
        return (DARK if mean < 40.0 and bright_share < 0.01 else NOISE), mean, std
    return None, mean, std


class SignalGate(object):
    """One camera's gate: classifies each frame, detects a frozen picture and measures change over time.

    `frozen_after_s`: exact repeats of one picture for this long are `frozen` (a static scene through a real
    sensor never repeats exactly; an encoder's skipped frames can, briefly). `window_s`: change is measured
    against the picture about this long ago."""

    def __init__(self, frozen_after_s: float = 5.0, window_s: float = 0.5, enabled: bool = True):
        self.enabled = enabled           # False: change is still measured, no frame is ever called unusable
        self.frozen_after_ns = int(frozen_after_s * 1e9)
        self.window_ns = int(window_s * 1e9)
        self._last_image = None          # type: Optional[np.ndarray]
        self._same_since_ns = None       # type: Optional[int]
        self._thumbs = deque()           # type: Deque[Tuple[int, np.ndarray]]

    def assess(self, image: np.ndarray, pts_ns: int, watched: Optional[np.ndarray] = None) -> SignalReading:
        """Judge one frame at media time `pts_ns`. `watched` is the same frame with masked regions painted over
        (motion there does not count); default: the whole frame."""
        reason, mean, std = classify_picture(image)
        if not self.enabled:
            reason = None
        elif reason is None and self._is_frozen(image, pts_ns):
            reason = FROZEN
        elif reason is not None:
            self._remember(image, pts_ns)
        change = self._change(grey_of(image if watched is None else watched), pts_ns)
        return SignalReading(reason=reason, brightness=round(mean, 1), contrast=round(std, 1), change=change)

    def _remember(self, image, pts_ns):
        self._last_image, self._same_since_ns = image, pts_ns

    def _is_frozen(self, image: np.ndarray, pts_ns: int) -> bool:
        last = self._last_image
        if last is None or last.shape != image.shape or not np.array_equal(last, image) \
                or self._same_since_ns is None or pts_ns < self._same_since_ns:
            self._remember(image, pts_ns)
            return False
        return pts_ns - self._same_since_ns >= self.frozen_after_ns

    def _change(self, grey: np.ndarray, pts_ns: int) -> Optional[float]:
        """Share of thumbnail cells whose level moved by more than CHANGE_LEVEL since ~window_s ago."""
        thumb = thumbnail(grey)
        thumbs = self._thumbs
        if thumbs and pts_ns < thumbs[-1][0]:   # the stream restarted its clock (a reconnect, a looped file)
            thumbs.clear()
        thumbs.append((pts_ns, thumb))
        while len(thumbs) > 2 and pts_ns - thumbs[1][0] >= self.window_ns:
            thumbs.popleft()
        then_ns, then = thumbs[0]
        if then_ns == pts_ns:
            return None
        return float((np.abs(thumb - then) > CHANGE_LEVEL).mean())


class DegradedMonitor(object):
    """Says a camera is degraded when unusable frames have persisted for `after_s` of media time, and well
    again after `after_s` of usable frames; short glitches (a dark frame while the exposure settles) do not
    count. One per camera."""

    def __init__(self, after_s: float = 5.0):
        self.after_ns = int(after_s * 1e9)
        self.problem = None              # type: Optional[str]
        self._bad_since = None           # type: Optional[int]
        self._good_since = None          # type: Optional[int]

    def update(self, reading: SignalReading, pts_ns: int) -> Optional[str]:
        """Feed one reading; return the reason when the degraded state changes (the new problem, or '' when
        the camera is well again), else None."""
        if reading.usable:
            self._bad_since = None
            if self.problem is None:
                return None
            if self._good_since is None or pts_ns < self._good_since:
                self._good_since = pts_ns
            if pts_ns - self._good_since >= self.after_ns:
                self.problem, self._good_since = None, None
                return ""
            return None
        self._good_since = None
        if self._bad_since is None or pts_ns < self._bad_since:
            self._bad_since = pts_ns
        if pts_ns - self._bad_since >= self.after_ns and self.problem != reading.reason:
            self.problem = reading.reason
            return reading.reason
        return None
