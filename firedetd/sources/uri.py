"""Source URIs taken apart the same way by every backend (GStreamer and OpenCV).

`csi://N`, `v4l2:///dev/videoN`, `file://PATH` and `test://?pattern=ball&fps=30&width=640&height=480&live=true`
(plus `frames=N`: a test source that ends after N frames). Bad values raise a permanent SourceError naming the
URI: retrying cannot fix a typo in the config.
"""

import re
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from ..config import TEST_PATTERNS, SourceConfig
from ..errors import SourceError

DECODING_SCHEMES = ("v4l2", "rtsp", "rtsps", "http", "https", "file")


class SyntheticVideoSpec(NamedTuple):
    """What a `test://` URI asks for."""

    pattern: str
    width: int
    height: int
    fps: float
    live: bool
    frames: int     # 0: endless


def uri_rest(uri: str) -> str:
    """The part of a URI after `scheme://`."""
    return uri.split("://", 1)[1] if "://" in uri else ""


def csi_sensor_id(uri: str) -> int:
    """`csi://N` -> N, the sensor-id of nvarguscamerasrc."""
    rest = uri_rest(uri).strip("/")
    if not rest.isdigit():
        raise SourceError("%s: a CSI camera URI is csi://N with N the sensor number, e.g. csi://0" % uri,
                          permanent=True)
    return int(rest)


def v4l2_device(uri: str) -> str:
    """`v4l2:///dev/video0` (or `v4l2://0`) -> `/dev/video0`."""
    rest = unquote(uri_rest(uri))
    if rest.isdigit():
        return "/dev/video" + rest
    if not rest.startswith("/"):
        raise SourceError("%s: a V4L2 camera URI is v4l2:///dev/videoN" % uri, permanent=True)
    return rest


def v4l2_index(uri: str) -> int:
    """`v4l2:///dev/video2` -> 2, the index cv2.VideoCapture wants."""
    match = re.match(r"^/dev/video(\d+)$", v4l2_device(uri))
    if not match:
        raise SourceError("%s: the OpenCV backend opens V4L2 cameras as /dev/videoN only" % uri, permanent=True)
    return int(match.group(1))


def file_path(uri: str) -> str:
    """`file:///abs/video.mp4` -> `/abs/video.mp4`; `file://rel.mp4` -> `rel.mp4` (relative to the cwd)."""
    path = unquote(uri_rest(uri).split("?", 1)[0])
    if not path:
        raise SourceError("%s: a file URI is file:///path/to/video.mp4" % uri, permanent=True)
    return path


def parse_test_uri(uri: str, source_config: SourceConfig) -> SyntheticVideoSpec:
    """`test://?pattern=..&fps=..&width=..&height=..&live=..&frames=..`; missing keys come from the SourceConfig."""
    query = parse_qs(urlsplit(uri).query, keep_blank_values=True)
    known = ("pattern", "fps", "width", "height", "live", "frames")
    unknown = sorted(set(query) - set(known))
    if unknown:
        raise SourceError("%s: unknown test source option(s) %s; known: %s" % (
            uri, ", ".join(unknown), ", ".join(known)), permanent=True)

    def value(key, default):
        return query[key][-1] if key in query else default

    pattern = value("pattern", "ball")
    if pattern not in TEST_PATTERNS:
        raise SourceError("%s: unknown test pattern %r; known: %s" % (uri, pattern, ", ".join(TEST_PATTERNS)),
                          permanent=True)
    live = value("live", "true").lower()
    if live not in ("true", "false", "1", "0", "yes", "no"):
        raise SourceError("%s: live=%s must be true or false" % (uri, live), permanent=True)
    try:
        spec = SyntheticVideoSpec(pattern=pattern, width=int(value("width", source_config.width)),
                                  height=int(value("height", source_config.height)),
                                  fps=float(value("fps", source_config.fps)), live=live in ("true", "1", "yes"),
                                  frames=int(value("frames", 0)))
    except ValueError as e:
        raise SourceError("%s: %s" % (uri, e), permanent=True)
    if not (16 <= spec.width <= 8192 and 16 <= spec.height <= 8192 and 0.1 <= spec.fps <= 240 and spec.frames >= 0):
        raise SourceError("%s: width/height must be 16-8192, fps 0.1-240, frames >= 0" % uri, permanent=True)
    return spec
