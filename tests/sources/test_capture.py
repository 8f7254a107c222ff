"""firedetd/sources/capture.py: what the capture thread tells about a failing camera, and the frames it hands on.

A fake source stands in for a camera that refuses the connection where only the capture thread's side is tested;
the dead-camera log test opens a real rtsp:// URI where nothing listens."""

import logging
import math
import time

import numpy as np

from firedetd.config import CameraConfig, CropConfig, SourceConfig
from firedetd.errors import SourceError
from firedetd.framequeue import FrameQueues
from firedetd.metrics import Metrics
from firedetd.sources import FrameSource, Geometry, RawFrame, create_source
from firedetd.sources.capture import CaptureThread, FailureLogSchedule
from firedetd.sources.region import WatchedRegion

SECRET_URI = "rtsp://admin:hunter2@192.0.2.7:554/stream1"
GEOMETRY = Geometry(224, 224, "RGB", "stretch", 0)


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


def capture_warnings(caplog):
    return [r for r in caplog.records if r.name == "firedetd.sources.capture" and r.levelno == logging.WARNING]


def test_a_camera_dead_for_an_hour_gets_a_dozen_lines_that_account_for_every_attempt():
    schedule = FailureLogSchedule(first_gap_s=15, max_gap_s=600)
    logged = [(t, schedule.note_failure(int(t * 1e9))) for t in range(0, 3600, 3)]   # a retry every 3 s
    lines = [(t, attempts) for t, attempts in logged if attempts]
    assert [t for t, _ in lines][:7] == [0, 15, 45, 105, 225, 465, 945]   # gaps double from 15 s ...
    assert all(b - a == 600 for (a, _), (b, _) in zip(lines[6:], lines[7:]))   # ... up to ten minutes
    unlogged_since_the_last_line = len(range(lines[-1][0] + 3, 3600, 3))
    assert len(lines) == 11 and sum(a for _, a in lines) + unlogged_since_the_last_line == schedule.attempts == 1200
    schedule.reset()
    assert schedule.note_failure(int(4000 * 1e9)) == 1   # the next outage is logged at once


def test_a_dead_rtsp_camera_logs_logarithmically_many_lines_while_retrying_throughout(caplog):
    from support.daemon import free_port

    seconds, first_gap_s = 4.0, 0.2
    camera = CameraConfig(name="porch", source=SourceConfig(uri="rtsp://127.0.0.1:%d/live" % free_port(),
                                                            reconnect_initial_s=0.05, reconnect_max_s=0.1))
    capture = CaptureThread(camera, GEOMETRY, FrameQueues(), Metrics(),
                            failure_log=FailureLogSchedule(first_gap_s=first_gap_s, max_gap_s=60))
    caplog.set_level(logging.INFO, logger="firedetd.sources.capture")
    capture.start()
    time.sleep(seconds)
    capture.stop()
    capture.join(10)
    lines = capture_warnings(caplog)
    # lines at 0, 0.2, 0.6, 1.4, 3.0 s...: at most log2(N / first gap + 1) + 1 of them, whatever the retry rate
    assert 2 <= len(lines) <= math.log2(seconds / first_gap_s + 1) + 1, [r.getMessage() for r in lines]
    assert capture._failures >= 3 * len(lines)
    gaps = [b.created - a.created for a, b in zip(lines, lines[1:])]
    assert gaps == sorted(gaps)
    assert "porch: source failed" in lines[0].getMessage()
    assert "porch: source still failing after" in lines[-1].getMessage() and "since the last line" in \
        lines[-1].getMessage()


def test_a_camera_that_comes_back_logs_one_failure_and_one_recovery(caplog):
    attempts = []

    def refuse_three_times_then_play(source_config, geometry):
        attempts.append(1)
        if len(attempts) <= 3:
            return RefusingSource(source_config, geometry)
        return create_source(SourceConfig(uri="test://?pattern=ball&frames=5&live=false"), geometry)

    camera = CameraConfig(name="shed", source=SourceConfig(uri="rtsp://192.0.2.9/live", reconnect_initial_s=0.05,
                                                           reconnect_max_s=0.1), queue_size=8)
    queues = FrameQueues()
    capture = CaptureThread(camera, GEOMETRY, queues, Metrics(), source_factory=refuse_three_times_then_play)
    caplog.set_level(logging.INFO, logger="firedetd.sources.capture")
    capture.start()
    capture.join(20)
    messages = [r.getMessage() for r in caplog.records if r.name == "firedetd.sources.capture"]
    assert len(capture_warnings(caplog)) == 1, messages
    recoveries = [m for m in messages if "up again" in m]
    assert recoveries == [m for m in messages if "shed: source up" in m] and len(recoveries) == 1, messages
    assert "after 3 failed attempt(s)" in recoveries[0] and capture.failure_log.attempts == 0
