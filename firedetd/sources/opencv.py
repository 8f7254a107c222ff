"""OpenCV capture backend: the fallback when PyGObject/GStreamer are missing.

cv2.VideoCapture (FFmpeg) reads files, RTSP and HTTP streams, and V4L2 cameras (by index); `test://` is a
numpy/OpenCV generator. Frames come out of OpenCV as full-size BGR and are scaled and converted here with
vectorised cv2 calls (INTER_AREA when shrinking), so the CPU does work that the GStreamer backend leaves to the
pipeline (or, on a Jetson, to the VIC): prefer the gst backend where it imports. CSI cameras need GStreamer.
"""

import logging
import math
import os
import threading
import time
from typing import Optional

import cv2
import numpy as np

from ..clock import monotonic_ns
from ..config import SourceConfig
from ..errors import SourceError
from . import EndOfStream, FrameSource, Geometry, RawFrame
from .sizing import center_crop_box, snapshot_height
from .uri import DECODING_SCHEMES, file_path, parse_test_uri, v4l2_index

log = logging.getLogger(__name__)

# OpenCV reads FFmpeg options (the RTSP transport) from one process-wide environment variable at open time.
_ffmpeg_options_lock = threading.Lock()
_FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


def scale_to_model(bgr: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A full-size BGR frame -> (geometry.height, geometry.width, 3) in the model's colour order."""
    height, width = bgr.shape[:2]
    if geometry.resize == "center_crop":
        left, top, width, height = center_crop_box(width, height, geometry.width, geometry.height)
        bgr = bgr[top:top + height, left:left + width]
    image = cv2.resize(bgr, (geometry.width, geometry.height), interpolation=_interpolation(
        width, height, geometry.width, geometry.height))
    return _read_only(cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if geometry.color == "RGB" else image)


def scale_to_snapshot(bgr: np.ndarray, snapshot_width: int) -> np.ndarray:
    """A full-size BGR frame -> RGB, snapshot_width wide, height keeping the aspect (square pixels assumed)."""
    height, width = bgr.shape[:2]
    size = (snapshot_width, snapshot_height(width, height, snapshot_width))
    # a picture for people: INTER_AREA averages what a shrink drops (no aliasing)
    shrink = size[0] < width and size[1] < height
    image = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return _read_only(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def _interpolation(src_width, src_height, dst_width, dst_height):
    # Bilinear, as GStreamer's videoscale scales and as the model was validated (training/augment.resize_stretch):
    # both backends hand the model the same picture to within 2 grey levels. INTER_AREA, used before, looked
    # better but moved the house fire's escalation to fire from 17.0 s (gst) to 28.2 s on the OpenCV path.
    return cv2.INTER_LINEAR


def _read_only(image):
    # Frames are values shared between stages: nobody may draw on the one another stage reads.
    image.flags.writeable = False
    return image


class SyntheticVideo(object):
    """The `test://` patterns drawn with numpy/OpenCV, as BGR frames; `ball` is a white ball moving on black, as
    GStreamer's videotestsrc draws it, so both backends hand the model and the signal gate the same picture."""

    _SMPTE_BGR = ((191, 191, 191), (0, 191, 191), (191, 191, 0), (0, 191, 0), (191, 0, 191), (0, 0, 191),
                  (191, 0, 0))
    _SOLID_BGR = {"black": (0, 0, 0), "white": (255, 255, 255), "red": (0, 0, 255), "green": (0, 255, 0),
                  "blue": (255, 0, 0)}

    def __init__(self, spec):
        self.spec = spec
        self._random = np.random.RandomState(0)
        self._background = self._draw_background()

    def _draw_background(self):
        width, height, pattern = self.spec.width, self.spec.height, self.spec.pattern
        frame = np.empty((height, width, 3), np.uint8)
        if pattern in self._SOLID_BGR or pattern == "ball":
            frame[:] = self._SOLID_BGR.get(pattern, (0, 0, 0))
        elif pattern == "smpte":
            edges = np.linspace(0, width, len(self._SMPTE_BGR) + 1).astype(int)
            for colour, left, right in zip(self._SMPTE_BGR, edges[:-1], edges[1:]):
                frame[:, left:right] = colour
        else:   # gradient: dark blue at the left to orange at the right
            ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[:, None]
            frame[:] = (np.array((90, 40, 10), np.float32) * (1 - ramp) + np.array((20, 140, 255), np.float32) * ramp
                        ).astype(np.uint8)[None, :, :]
        return frame

    def frame(self, index: int) -> np.ndarray:
        """Frame number `index` (BGR)."""
        if self.spec.pattern == "snow":
            return self._random.randint(0, 256, self._background.shape, dtype=np.uint8)
        if self.spec.pattern != "ball":
            return self._background
        frame = self._background.copy()
        radius = max(2, min(self.spec.width, self.spec.height) // 10)
        phase = 2 * math.pi * index / (self.spec.fps * 4)   # one lap every four seconds
        centre = (int(self.spec.width / 2 + (self.spec.width / 2 - radius) * math.cos(phase)),
                  int(self.spec.height / 2 + (self.spec.height / 2 - radius) * math.sin(2 * phase)))
        cv2.circle(frame, centre, radius, (255, 255, 255), -1)
        return frame


class OpenCVSource(FrameSource):
    """Frames from cv2.VideoCapture (or the synthetic test video), scaled to the model and snapshot sizes."""

    name = "opencv"

    def __init__(self, source_config: SourceConfig, geometry: Geometry) -> None:
        self.config = source_config
        self.geometry = geometry
        self.uri = source_config.uri
        self.scheme = source_config.scheme
        if self.scheme == "file":
            self.live = bool(source_config.realtime)
        elif self.scheme == "test":
            self.live = parse_test_uri(self.uri, source_config).live
        else:
            self.live = True
        self._capture = None
        self._synthetic = None
        self._index = 0                 # frames delivered since open (synthetic frame number)
        self._pts_base = 0              # added after a loop, so pts keeps increasing
        self._last_pts = None
        self._frame_duration = int(1e9 / source_config.fps)
        self._start_ns = None           # monotonic time of the first frame (pacing, live pts)
        self._start_pts = None
        self._held = None               # a realtime file frame read early, delivered by the next read()

    # -- open / close ------------------------------------------------------------------------------------------

    def open(self):
        """Open the capture; SourceError names the URI and what is wrong (permanent when retrying cannot help)."""
        if self._capture is not None or self._synthetic is not None:
            return
        if self.scheme == "csi":
            raise SourceError("%s: CSI cameras need the gst backend (GStreamer's nvarguscamerasrc on a Jetson); "
                              "install PyGObject (python3-gi) or use source.backend: gst" % self.uri, permanent=True)
        if self.scheme in DECODING_SCHEMES and self.config.decoder == "hardware":
            raise SourceError("%s: decoder: hardware needs the gst backend (nvv4l2decoder); the opencv backend "
                              "decodes in software" % self.uri, permanent=True)
        opener = OPENERS.get(self.scheme)
        if opener is None:
            # the registry lists a scheme for opencv that has no opener here: refuse it, never guess (FFmpeg would
            # try any string as a stream)
            raise SourceError("%s: the opencv backend has no opener for %s:// URIs (it reads %s)" % (
                self.uri, self.scheme, ", ".join(OPENERS)), permanent=True)
        self._index, self._start_ns, self._start_pts, self._held = 0, None, None, None
        self._capture = opener(self)
        log.info("%s: opened (opencv, %s)", self.uri, "live" if self.live else "every frame")

    def _open_synthetic(self):
        self._synthetic = SyntheticVideo(parse_test_uri(self.uri, self.config))
        self._frame_duration = int(1e9 / self._synthetic.spec.fps)
        # no cv2.VideoCapture: read() draws the frames

    def close(self):
        """Release the capture; safe to call twice or before open()."""
        capture, self._capture = self._capture, None
        self._synthetic = None
        self._held = None
        if capture is not None:
            capture.release()

    def _open_file(self):
        path = file_path(self.uri)
        if not os.path.isfile(path):
            raise SourceError("%s: video file %s does not exist" % (self.uri, os.path.abspath(path)), permanent=True)
        capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise SourceError("%s: OpenCV cannot read video file %s (not a video, or an unsupported codec)" % (
                self.uri, os.path.abspath(path)), permanent=True)
        fps = capture.get(cv2.CAP_PROP_FPS)
        if fps and fps > 0:
            self._frame_duration = int(1e9 / fps)
        return capture

    def _open_camera(self):
        capture = cv2.VideoCapture(v4l2_index(self.uri), cv2.CAP_V4L2)
        if not capture.isOpened():
            raise SourceError("%s: cannot open the V4L2 camera (unplugged, or busy in another process?)" % self.uri)
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
        capture.set(cv2.CAP_PROP_FPS, self.config.fps)
        return capture

    def _open_stream(self):
        timeout_ms = int(self.config.stall_timeout_s * 1000)
        options = "rtsp_transport;%s" % self.config.transport if self.scheme in ("rtsp", "rtsps") else None
        with _ffmpeg_options_lock:
            previous = os.environ.get(_FFMPEG_OPTIONS)
            if options:
                os.environ[_FFMPEG_OPTIONS] = options
            try:
                capture = _open_with_timeouts(self.uri, timeout_ms)
            finally:
                if options and previous is None:
                    del os.environ[_FFMPEG_OPTIONS]
                elif options:
                    os.environ[_FFMPEG_OPTIONS] = previous
        if not capture.isOpened():
            raise SourceError("%s: OpenCV could not open the stream (unreachable, refused, or not a video)" % self.uri)
        return capture

    # -- reading -----------------------------------------------------------------------------------------------

    def read(self, timeout_s: float) -> Optional[RawFrame]:
        """The next frame, None if none came within timeout_s; EndOfStream at a file's end; SourceError on failure."""
        if self._synthetic is not None:
            return self._read_synthetic(timeout_s)
        if self._capture is None:
            raise SourceError("%s: read() on a source that is not open" % self.uri)
        if self._held is not None:
            bgr, pts = self._held
            self._held = None
        else:
            bgr, pts = self._grab()
        if self.scheme == "file" and self.config.realtime and not self._wait_until_due(pts, timeout_s):
            self._held = (bgr, pts)
            return None
        return self._frame(bgr, pts, monotonic_ns())

    def _grab(self):
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            if self.scheme != "file":
                raise SourceError("%s: OpenCV returned no frame (stream lost or camera gone)" % self.uri)
            if not self.config.loop:
                raise EndOfStream(self.uri)
            bgr = self._loop_file()
        if self.scheme == "file":
            return bgr, self._pts_base + int(self._capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
        now = monotonic_ns()
        if self._start_ns is None:
            self._start_ns = now
        return bgr, now - self._start_ns

    def _loop_file(self):
        # Reopening is the one restart every FFmpeg build honours (seeking to frame 0 is not exact in all).
        self._capture.release()
        self._capture = self._open_file()
        self._pts_base = (self._last_pts + self._frame_duration) if self._last_pts is not None else 0
        self._start_ns = self._start_pts = None
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            raise SourceError("%s: the file has no readable frame after looping" % self.uri)
        log.debug("%s: looped", self.uri)
        return bgr

    def _wait_until_due(self, pts, timeout_s):
        """Realtime files: sleep until the frame's time; False if that is further away than timeout_s."""
        now = monotonic_ns()
        if self._start_ns is None:
            self._start_ns, self._start_pts = now, pts
        due = self._start_ns + (pts - self._start_pts)
        if due - now > timeout_s * 1e9:
            time.sleep(max(0.0, timeout_s))
            return False
        if due > now:
            time.sleep((due - now) / 1e9)
        return True

    def _read_synthetic(self, timeout_s):
        spec = self._synthetic.spec
        if spec.frames and self._index >= spec.frames:
            raise EndOfStream(self.uri)
        pts = self._index * self._frame_duration
        if spec.live:
            now = monotonic_ns()
            if self._start_ns is None:
                self._start_ns = now
            wait_ns = self._start_ns + pts - now
            if wait_ns > timeout_s * 1e9:
                time.sleep(max(0.0, timeout_s))
                return None
            if wait_ns > 0:
                time.sleep(wait_ns / 1e9)
        bgr = self._synthetic.frame(self._index)
        return self._frame(bgr, pts, monotonic_ns())

    def _frame(self, bgr, pts, captured_ns):
        self._index += 1
        self._last_pts = pts
        snapshot = scale_to_snapshot(bgr, self.geometry.snapshot_width) if self.geometry.snapshot_width else None
        return RawFrame(pts_ns=pts, captured_ns=captured_ns, image=scale_to_model(bgr, self.geometry),
                        snapshot=snapshot)


# The schemes this backend reads (sources/__init__.py's SCHEMES lists opencv for exactly these) and how each is
# opened: the method returns the cv2.VideoCapture, or None for the synthetic test video.
OPENERS = {
    "v4l2": OpenCVSource._open_camera,
    "rtsp": OpenCVSource._open_stream,
    "rtsps": OpenCVSource._open_stream,
    "http": OpenCVSource._open_stream,
    "https": OpenCVSource._open_stream,
    "file": OpenCVSource._open_file,
    "test": OpenCVSource._open_synthetic,
}


def _open_with_timeouts(uri, timeout_ms):
    """cv2.VideoCapture(uri) with open/read timeouts where this OpenCV has them (4.5.2+; JetPack's 4.1 has not)."""
    if hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC") and hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
        try:
            return cv2.VideoCapture(uri, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms,
                                                          cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms])
        except (TypeError, cv2.error):
            pass
    return cv2.VideoCapture(uri, cv2.CAP_FFMPEG)
