"""Reading helpers for frame source tests (any FrameSource backend)."""

import pytest

from firedetd.sources import EndOfStream


def read_frames(source, count, timeout_s=10.0):
    """Read exactly `count` frames, failing the test if one does not come within timeout_s."""
    frames = []
    while len(frames) < count:
        frame = source.read(timeout_s)
        assert frame is not None, "no frame within %s s" % timeout_s
        frames.append(frame)
    return frames


def read_until_end(source, limit=1000):
    """Read until EndOfStream (which must come within `limit` frames); the frames read."""
    frames = []
    with pytest.raises(EndOfStream):
        while len(frames) < limit:
            frame = source.read(10.0)
            assert frame is not None
            frames.append(frame)
    return frames
