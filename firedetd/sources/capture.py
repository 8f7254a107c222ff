"""The capture thread of one camera: open the source, read frames into the camera's queue, reconnect.

A failing source is reopened with exponential backoff (with jitter, capped), and `source_up` says
whether frames flow. A source that stops delivering for `stall_timeout_s` is restarted. The end
of a file ends the thread cleanly; a permanent failure (an element missing on this machine) is
reported to the pipeline, which decides whether the daemon can go on.

A camera that stays dead is retried every few seconds (so it is watched again soon after it comes back) but
logged only at its first failure and then at doubling intervals, up to one line in ten minutes; metrics count
every attempt. Its recovery is one line.
"""

import logging
import random
import threading

from ..clock import monotonic_ns
from ..config import redact_url
from ..errors import SourceError
from ..framequeue import BLOCK, LATEST
from ..signal_quality import SignalGate
from ..types import Frame
from . import EndOfStream, create_source
from .region import WatchedRegion

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.5
FAILURE_LOG_FIRST_GAP_S = 15.0
FAILURE_LOG_MAX_GAP_S = 600.0

# how a capture thread ended
RUNNING = "running"
FINISHED = "finished"     # end of a file
FAILED = "failed"         # permanent source error
STOPPED = "stopped"


class FailureLogSchedule(object):
    """Which failures of a failing camera get a log line: the first, then one after gaps that double from
    `first_gap_s` up to `max_gap_s`, so a camera dead for a day writes about 150 lines instead of 30000."""

    def __init__(self, first_gap_s=FAILURE_LOG_FIRST_GAP_S, max_gap_s=FAILURE_LOG_MAX_GAP_S):
        self.first_gap_s = first_gap_s
        self.max_gap_s = max_gap_s
        self.reset()

    def reset(self):
        """The camera delivers again: its next failure is a new streak, logged at once."""
        self.attempts = 0            # failed attempts in this streak
        self.started_ns = 0
        self._unlogged = 0
        self._gap_s = self.first_gap_s
        self.next_gap_s = self.first_gap_s   # from the last line to the next one, if failures go on
        self._next_line_ns = None

    def note_failure(self, now_ns):
        """Count one failed attempt; the number of attempts since the last line when this one gets a line, else 0."""
        self.attempts += 1
        self._unlogged += 1
        if self._next_line_ns is None:
            self.started_ns = now_ns
        elif now_ns < self._next_line_ns:
            return 0
        self.next_gap_s = self._gap_s
        self._next_line_ns = now_ns + int(self._gap_s * 1e9)
        self._gap_s = min(self.max_gap_s, self._gap_s * 2)
        attempts, self._unlogged = self._unlogged, 0
        return attempts


def describe_duration(seconds):
    """`45 s`, `12 min`, `3.5 h`: how long a camera has been failing, in the unit a reader wants."""
    if seconds < 120:
        return "%.0f s" % seconds
    if seconds < 7200:
        return "%.0f min" % (seconds / 60)
    return "%.1f h" % (seconds / 3600)


class CaptureThread(threading.Thread):
    """Reads one camera into its FrameQueue until stopped, the file ends, or the source fails for good."""

    def __init__(self, camera, geometry, frame_queues, metrics, on_exit=None, source_factory=create_source,
                 region=None, gate=None, failure_log=None):
        super(CaptureThread, self).__init__(name="capture-%s" % camera.name, daemon=True)
        self.camera = camera
        self.geometry = geometry
        # the crop, masks and tiles of the camera, and the signal-quality gate; both see every captured frame
        self.region = region or WatchedRegion(camera, geometry.width, geometry.height)
        self.gate = gate or SignalGate()
        self.frame_queues = frame_queues
        self.queue = None
        self.metrics = metrics
        self.on_exit = on_exit
        self.source_factory = source_factory
        self.stop_event = threading.Event()
        self.state = RUNNING
        self.error = ""
        self.last_beat_ns = monotonic_ns()
        self.last_frame_ns = 0
        self.seq = 0
        self.up = False
        self.frames_lost = 0     # frames the decoder skipped or a truncated file lacked (counted as bad frames)
        self._failures = 0
        self._lost_seen = 0      # the current source's frames_lost already counted
        self._superseded_seen = 0
        self.failure_log = failure_log or FailureLogSchedule()

    def stop(self):
        self.stop_event.set()

    def _init_metrics(self):
        """Export every per-camera series from the start (as 0), so rates and alerts see them before a failure."""
        for counter in (self.metrics.frames_captured, self.metrics.frames_processed, self.metrics.frames_bad,
                        self.metrics.source_errors, self.metrics.source_reconnects):
            counter.labels(self.camera.name)
        self.metrics.source_up.labels(self.camera.name).set(0)
        self.metrics.fps.labels(self.camera.name).set(0)

    def run(self):
        self._init_metrics()
        self.metrics.thread_alive.labels(self.name).set(1)
        try:
            self._run_until_done()
        except Exception as e:  # the loop below already catches source errors; this is a bug guard
            log.exception("%s: capture thread crashed: %s", self.camera.name, e)
            self.state, self.error = FAILED, "capture thread crashed: %s" % e
        finally:
            self._set_up(False)
            self.metrics.thread_alive.labels(self.name).set(0)
            if self.state == RUNNING:
                self.state = STOPPED
            if self.on_exit is not None:
                self.on_exit(self)

    def _run_until_done(self):
        while not self.stop_event.is_set():
            self.last_beat_ns = monotonic_ns()
            source = self.source_factory(self.camera.source, self.geometry)
            self._lost_seen = self._superseded_seen = 0
            try:
                source.open()
                self._ensure_queue(source.live)
                self._read_until_failure(source)
                return
            except EndOfStream:
                self._count_lost_frames(source)
                log.info("%s: end of stream after %d frames%s", self.camera.name, self.seq,
                         " (%d more could not be decoded)" % self.frames_lost if self.frames_lost else "")
                self.state = FINISHED
                return
            except SourceError as e:
                self._note_failure(e)
                if e.permanent:
                    self.state = FAILED
                    log.error("%s: %s (not retrying: this cannot succeed on this machine)", self.camera.name,
                              self.error)
                    return
                self._log_failure()
            finally:
                self._count_lost_frames(source)
                self._close_quietly(source)
                self._set_up(False)
            self._wait_backoff()

    def _ensure_queue(self, live):
        if self.queue is None:
            policy = LATEST if live else BLOCK
            self.queue = self.frame_queues.add(self.camera.name, self.camera.queue_size, policy)

    def _read_until_failure(self, source):
        stall_ns = int(self.camera.source.stall_timeout_s * 1e9)
        last_progress = monotonic_ns()
        while not self.stop_event.is_set():
            raw = source.read(READ_TIMEOUT_S)
            now = monotonic_ns()
            self.last_beat_ns = now
            self._count_lost_frames(source)
            if raw is None:
                if now - last_progress > stall_ns:
                    raise SourceError("%s: no frame for %.1f s (stalled)" % (self.camera.source.uri,
                                                                             (now - last_progress) / 1e9))
                continue
            last_progress = now
            if not self._frame_is_usable(raw):
                continue
            self._set_up(True)
            self._failures = 0
            self._enqueue(raw, now)

    def _count_lost_frames(self, source):
        # a live backend that skipped stale frames to deliver the newest (gst) counts them as the queue's drops
        superseded = source.frames_superseded
        if superseded > self._superseded_seen and self.queue is not None:
            self.queue.count_dropped(superseded - self._superseded_seen)
            self._superseded_seen = superseded
        # a backend that can tell (gst on files) reports frames its decoder skipped; they are bad frames too
        lost = source.frames_lost
        if lost > self._lost_seen:
            self.metrics.frames_bad.labels(self.camera.name).inc(lost - self._lost_seen)
            self.frames_lost += lost - self._lost_seen
            self._lost_seen = lost

    def _frame_is_usable(self, raw):
        g = self.geometry
        image = raw.image
        if image is None or image.ndim != 3 or image.shape[0] != g.height or image.shape[1] != g.width \
                or image.shape[2] != 3:
            self.metrics.frames_bad.labels(self.camera.name).inc()
            log.debug("%s: frame of shape %s skipped", self.camera.name, getattr(image, "shape", None))
            return False
        return True

    def _enqueue(self, raw, now):
        views = self.region.views(raw.image)
        reading = self.gate.assess(views.raw, raw.pts_ns, watched=views.image)
        frame = Frame(camera=self.camera.name, seq=self.seq, pts_ns=raw.pts_ns,
                      captured_ns=raw.captured_ns or now, image=views.image, snapshot=raw.snapshot, signal=reading,
                      tiles=views.tiles)
        self.seq += 1
        self.last_frame_ns = now
        self.metrics.frames_captured.labels(self.camera.name).inc()
        self.queue.put(frame, self.stop_event)

    def _note_failure(self, error):
        self._failures += 1
        self.error = redact_url(str(error))   # an rtsp://user:password@ URL must not reach logs or /healthz
        self.metrics.source_errors.labels(self.camera.name).inc()

    def _log_failure(self):
        schedule = self.failure_log
        attempts = schedule.note_failure(monotonic_ns())
        if not attempts:
            return
        if schedule.attempts == 1:
            log.warning("%s: source failed (%s); reconnecting every %g s at most, logged again after %s if it "
                        "still fails", self.camera.name, self.error, self.camera.source.reconnect_max_s,
                        describe_duration(schedule.next_gap_s))
            return
        log.warning("%s: source still failing after %d attempts over %s (%d since the last line; latest: %s); "
                    "next line in %s if it goes on", self.camera.name, schedule.attempts,
                    describe_duration((monotonic_ns() - schedule.started_ns) / 1e9), attempts, self.error,
                    describe_duration(schedule.next_gap_s))

    def backoff_s(self):
        """Exponential backoff with jitter: initial * 2^(failures-1), capped, times 0.5..1."""
        cfg = self.camera.source
        base = min(cfg.reconnect_max_s, cfg.reconnect_initial_s * (2 ** max(0, self._failures - 1)))
        return base * random.uniform(0.5, 1.0)

    def _wait_backoff(self):
        delay = self.backoff_s()
        self.metrics.source_reconnects.labels(self.camera.name).inc()
        deadline = monotonic_ns() + int(delay * 1e9)
        while not self.stop_event.is_set() and monotonic_ns() < deadline:
            self.last_beat_ns = monotonic_ns()
            self.stop_event.wait(min(0.5, max(0.0, (deadline - monotonic_ns()) / 1e9)))

    def _set_up(self, up):
        if up != self.up:
            self.up = up
            schedule = self.failure_log
            if up and schedule.attempts:
                log.info("%s: source up again after %d failed attempt(s) over %s", self.camera.name,
                         schedule.attempts, describe_duration((monotonic_ns() - schedule.started_ns) / 1e9))
                schedule.reset()
            else:
                log.info("%s: source %s", self.camera.name, "up" if up else "down")
        self.metrics.source_up.labels(self.camera.name).set(1 if up else 0)

    def _close_quietly(self, source):
        try:
            source.close()
        except Exception as e:  # closing a broken pipeline must not kill the thread
            log.debug("%s: close failed: %s", self.camera.name, e)
