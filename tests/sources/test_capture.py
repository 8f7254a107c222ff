"""firedetd/sources/capture.py: what the capture thread tells about a failing camera, and the frames it hands on.

A fake source stands in for a camera that refuses the connection (no RTSP server is needed to fail)."""

import logging
import time

import numpy as np

from firedetd.config import CameraConfig, CropConfig, SourceConfig
from firedetd.errors import SourceError
from firedetd.framequeue import FrameQueues
from firedetd.metrics import Metrics
from firedetd.sources import FrameSource, Geometry, RawFrame
from firedetd.sources.capture import CaptureThread
from firedetd.sources.region import WatchedRegion

SECRET_URI = "rtsp://admin:hunter2@192.0.2.7:554/stream1"


class RefusingSource(FrameSource):
    live = True

    def __init__(self, source_config, geometry):
        self.uri = source_config.uri

    def open(self):
        raise SourceError("%s: connection refused" % self.uri)

    def close(self):
        pass


class PictureSource(FrameSource):
    """Hands out `count` frames of random texture (a picture to the gate), then nothing."""

    live = False

    def __init__(self, geometry, count=3):
        self.geometry, self.count, self.sent = geometry, count, 0

    def open(self):
        pass

    def read(self, timeout_s):
        from firedetd.sources import EndOfStream

        if self.sent >= self.count:
            raise EndOfStream()
        self.sent += 1
        rng = np.random.default_rng(self.sent)
        image = rng.integers(0, 256, (self.geometry.height // 8, self.geometry.width // 8, 3), dtype=np.uint8)
        image = np.kron(image, np.ones((8, 8, 1), np.uint8))   # blocks: a textured picture, not snow
        return RawFrame(self.sent * 10 ** 8, 0, image, None)

    def close(self):
        pass


def test_a_camera_password_never_reaches_the_log_or_the_reported_error(caplog):
    camera = CameraConfig(name="gate", source=SourceConfig(uri=SECRET_URI, reconnect_initial_s=0.05,
                                                           reconnect_max_s=0.1))
    capture = CaptureThread(camera, Geometry(224, 224, "RGB", "stretch", 0), FrameQueues(), Metrics(),
                            source_factory=RefusingSource)
    caplog.set_level(logging.DEBUG)
    capture.start()
    deadline = time.time() + 5
    while capture._failures < 2 and time.time() < deadline:
        time.sleep(0.02)
    capture.stop()
    capture.join(5)
    assert capture._failures >= 2
    assert "hunter2" not in capture.error and "rtsp://***@192.0.2.7:554/stream1" in capture.error
    assert "hunter2" not in caplog.text and "***@192.0.2.7" in caplog.text


def test_frames_carry_the_gate_verdict_and_the_cropped_view():
    camera = CameraConfig(name="yard", source=SourceConfig(uri="test://"), crop=CropConfig(width=0.5), queue_size=4)
    region = WatchedRegion(camera, 224, 224)
    geometry = Geometry(region.size[0], region.size[1], "RGB", "stretch", 0)
    queues = FrameQueues()
    capture = CaptureThread(camera, geometry, queues, Metrics(), source_factory=lambda c, g: PictureSource(g),
                            region=region)
    capture.start()
    capture.join(10)
    frames = []
    while True:
        batch = queues.take_batch(4, wait_s=0.1, fill_s=0)
        if not batch:
            break
        frames.extend(batch)
        queues.release(len(batch))
    assert region.size == (448, 224) and len(frames) == 3
    assert all(f.image.shape == (224, 224, 3) and f.signal is not None and f.usable for f in frames)
    assert frames[0].signal.change is None and frames[2].signal.change > 0.5   # new texture every frame
