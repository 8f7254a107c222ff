"""Frame sources: the interface, and the registry that picks a backend for what the user writes (a URI scheme).

A source is "open, read frames until stopped, close". `read()` returns one `RawFrame` (already scaled
to the model's input size, and to snapshot size when asked), None when no frame came within the
timeout, and raises `EndOfStream` at a file's end or `SourceError` when the source failed. The
capture thread (`capture.py`) owns reconnection, sequencing and the queue; backends only read.
"""

import importlib
from typing import NamedTuple, Optional, Tuple

import numpy as np

from ..errors import SourceError


class EndOfStream(Exception):
    """The source has no more frames (a file reached its end)."""


class Geometry(NamedTuple):
    """What the pipeline wants from a source: model input size and colour, snapshot width (0 = none)."""

    width: int
    height: int
    color: str            # "RGB" or "BGR", as the model spec says
    resize: str           # "stretch" or "center_crop"
    snapshot_width: int   # 0: no snapshot frames


class RawFrame(NamedTuple):
    pts_ns: int                       # stream time of the frame
    captured_ns: int                  # monotonic clock when it was captured (best known)
    image: np.ndarray                 # (height, width, 3) uint8 at model size and colour order
    snapshot: Optional[np.ndarray]    # (h, snapshot_width, 3) uint8 RGB, or None


class FrameSource(object):
    """Interface of a frame source backend."""

    name = "abstract"
    live = True   # a live source is never blocked: the queue drops instead
    # Counters a backend may keep (the capture thread adds them to the metrics); 0 where it cannot tell.
    frames_superseded = 0   # stale frames a live backend skipped to hand out the newest: counted as drops
    frames_lost = 0         # frames of a file its decoder never delivered: counted as bad frames

    def open(self):
        raise NotImplementedError

    def read(self, timeout_s):
        # type: (float) -> Optional[RawFrame]
        raise NotImplementedError

    def close(self):
        raise NotImplementedError


class SourceBackend(NamedTuple):
    """Where a backend's class lives, and how to ask whether it can run here."""

    target: str             # "module:Class", imported only when the backend is used
    probe: Optional[str]    # "module:function" -> True when it can run here; None: always


BACKENDS = {
    "gst": SourceBackend("firedetd.sources.gst:GstSource", "firedetd.sources:gst_available"),
    "opencv": SourceBackend("firedetd.sources.opencv:OpenCVSource", None),
}

# What the user writes -> the backends that read it, in `auto`'s order of preference. The config accepts these
# schemes and no others (a scheme no backend reads is refused at validation, never guessed at), and a backend
# named for a camera must be listed for its scheme. Each backend keeps its own table of the schemes it reads
# (gst.INPUTS, opencv.OPENERS); tests/sources/test_registry.py checks that they agree with this one.
SCHEMES = {
    "csi": ("gst",),                # nvarguscamerasrc: GStreamer only
    "v4l2": ("gst", "opencv"),
    "rtsp": ("gst", "opencv"),
    "rtsps": ("gst", "opencv"),
    "http": ("gst", "opencv"),
    "https": ("gst", "opencv"),
    "file": ("gst", "opencv"),
    "test": ("gst", "opencv"),
}


def source_schemes() -> Tuple[str, ...]:
    """Every URI scheme some backend reads, in the registry's order."""
    return tuple(SCHEMES)


def backends_for_scheme(scheme: str) -> Tuple[str, ...]:
    """The backends that read `scheme`, in `auto`'s order; () for a scheme none reads."""
    return SCHEMES.get(scheme, ())


def _import_target(target):
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def load_backend(name):
    """The FrameSource class of backend `name`."""
    return _import_target(BACKENDS[name].target)


def backend_available(name: str) -> bool:
    """True when backend `name` can run on this machine (its probe says so, or it has none)."""
    probe = BACKENDS[name].probe
    return probe is None or bool(_import_target(probe)())


def gst_available():
    """True when PyGObject and GStreamer 1.x import (the preferred backend)."""
    try:
        from .gst import import_gst

        import_gst()
        return True
    except (ImportError, ValueError, SourceError):
        return False


def choose_backend(source_config):
    """The backend name for a source config: its `backend`, or for `auto` the first backend listed for its scheme
    that can run here; if none can, the first listed, whose open() then says what to install."""
    if source_config.backend != "auto":
        return source_config.backend
    candidates = backends_for_scheme(source_config.scheme)
    for name in candidates:
        if backend_available(name):
            return name
    return candidates[0]


def create_source(source_config, geometry):
    # type: (object, Geometry) -> FrameSource
    """Build (not open) the source backend for a camera's SourceConfig."""
    return load_backend(choose_backend(source_config))(source_config, geometry)
