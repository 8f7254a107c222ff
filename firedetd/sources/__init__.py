"""Frame sources: the interface, and the registry that picks a backend by name.

A source is "open, read frames until stopped, close". `read()` returns one `RawFrame` (already scaled
to the model's input size, and to snapshot size when asked), None when no frame came within the
timeout, and raises `EndOfStream` at a file's end or `SourceError` when the source failed. The
capture thread (`capture.py`) owns reconnection, sequencing and the queue; backends only read.
"""

import importlib
from typing import NamedTuple, Optional

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

    def open(self):
        raise NotImplementedError

    def read(self, timeout_s):
        # type: (float) -> Optional[RawFrame]
        raise NotImplementedError

    def close(self):
        raise NotImplementedError


BACKENDS = {
    "gst": "firedetd.sources.gst:GstSource",
    "opencv": "firedetd.sources.opencv:OpenCVSource",
}


def load_backend(name):
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def gst_available():
    """True when PyGObject and GStreamer 1.x import (the preferred backend)."""
    try:
        from .gst import import_gst

        import_gst()
        return True
    except (ImportError, ValueError, SourceError):
        return False


def choose_backend(source_config):
    """The backend name for a source config: its `backend`, or for `auto` gst when available, else opencv."""
    if source_config.backend != "auto":
        return source_config.backend
    return "gst" if gst_available() else "opencv"


def create_source(source_config, geometry):
    # type: (object, Geometry) -> FrameSource
    """Build (not open) the source backend for a camera's SourceConfig."""
    return load_backend(choose_backend(source_config))(source_config, geometry)
