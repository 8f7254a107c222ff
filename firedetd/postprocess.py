"""Predictions -> alert events: temporal smoothing, per-class hysteresis, cooldown, alert lifecycle.

The decision logic (`CameraTracker`, `KindTracker`) is pure and clocked by the frames' own
timestamps, so a recording gives the same alerts however fast it is read. The `Postprocessor`
thread feeds it, encodes the snapshot of the frame that raised an alert, and hands every event to
the durable outbox before anything tries to deliver it.
"""

import logging
import queue
import threading
import uuid

import numpy as np

from .clock import monotonic_ns, wall_ns
from .types import CLEARED, ONGOING, RAISED, Alert

log = logging.getLogger(__name__)

ALERT_KINDS = ("fire", "smoke")


class KindTracker(object):
    """One camera x one class: raise after `raise_frames` at or above `on`, clear after `clear_frames`
    below `off`, no new alert within `cooldown_s` of the last clear, `ongoing` events while active."""

    def __init__(self, kind):
        self.kind = kind
        self.active = False
        self.above = 0
        self.below = 0
        self.alert_id = None
        self.started_wall_ns = 0
        self.peak = 0.0
        self.last_event_t = None
        self.cleared_t = None

    def update(self, score, t_ns, thresholds, cooldown_s, ongoing_s):
        """Feed one smoothed score at media time t_ns; return the new state name if an event is due, else None."""
        if self.active:
            return self._update_active(score, t_ns, thresholds, ongoing_s)
        self.above = self.above + 1 if score >= thresholds.on else 0
        if self.above < thresholds.raise_frames or self._cooling_down(t_ns, cooldown_s):
            return None
        self.active, self.below, self.peak = True, 0, score
        self.alert_id = uuid.uuid4().hex
        self.started_wall_ns = wall_ns()
        self.last_event_t = t_ns
        return RAISED

    def _update_active(self, score, t_ns, thresholds, ongoing_s):
        self.peak = max(self.peak, score)
        self.below = self.below + 1 if score < thresholds.off else 0
        if self.below >= thresholds.clear_frames:
            self.active, self.above = False, 0
            self.cleared_t = t_ns
            return CLEARED
        if self.last_event_t is not None and t_ns < self.last_event_t:
            self.last_event_t = t_ns  # the stream restarted its clock (reconnect): measure from here
        if ongoing_s > 0 and t_ns - self.last_event_t >= ongoing_s * 1e9:
            self.last_event_t = t_ns
            return ONGOING
        return None

    def _cooling_down(self, t_ns, cooldown_s):
        if self.cleared_t is None or cooldown_s <= 0:
            return False
        if t_ns < self.cleared_t:  # clock restarted
            self.cleared_t = t_ns
        return t_ns - self.cleared_t < cooldown_s * 1e9


class CameraTracker(object):
    """Exponential smoothing of one camera's probabilities and a KindTracker per alerting class."""

    def __init__(self, camera, labels):
        self.camera = camera
        self.labels = labels
        self.smoothed = None
        self.kinds = {k: KindTracker(k) for k in ALERT_KINDS if k in labels}
        self.index = {k: labels.index(k) for k in self.kinds}

    def update(self, probs, t_ns, detection):
        """Smooth one frame's probabilities; return [(kind, state)] events due."""
        p = np.asarray(probs, dtype=np.float64)
        a = detection.smoothing_alpha
        self.smoothed = p if self.smoothed is None else a * p + (1.0 - a) * self.smoothed
        events = []
        for kind, tracker in self.kinds.items():
            state = tracker.update(float(self.smoothed[self.index[kind]]), t_ns, detection.thresholds(kind),
                                   detection.cooldown_s, detection.ongoing_interval_s)
            if state is not None:
                events.append((kind, state))
        return events


def encode_snapshot(frame, snapshot_config):
    """JPEG of the frame's snapshot (or its model-size image when no snapshot was captured), or None."""
    if not snapshot_config.enabled:
        return None
    import cv2

    rgb = frame.snapshot if frame.snapshot is not None else frame.image
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, snapshot_config.jpeg_quality])
    return buf.tobytes() if ok else None


class FpsMeter(object):
    """Decided frames per second per camera, over windows of about two seconds."""

    def __init__(self, window_s=2.0):
        self.window_ns = int(window_s * 1e9)
        self._start = {}
        self._count = {}
        self.value = {}

    def tick(self, camera, now_ns):
        start = self._start.setdefault(camera, now_ns)
        self._count[camera] = self._count.get(camera, 0) + 1
        if now_ns - start >= self.window_ns:
            self.value[camera] = self._count[camera] * 1e9 / (now_ns - start)
            self._start[camera], self._count[camera] = now_ns, 0
            return self.value[camera]
        return None


class Postprocessor(threading.Thread):
    """Consumes Predictions, keeps each camera's state, writes alert events to the outbox."""

    def __init__(self, spec, detection, prediction_queue, outbox_writer, metrics, on_event=None, live_view=None,
                 sensor_view=None):
        super(Postprocessor, self).__init__(name="postprocess", daemon=True)
        self.spec = spec
        self.model_name = "%s-%s" % (spec.name, spec.version)
        self.detection = detection  # replaced whole on SIGHUP; read once per prediction
        self.prediction_queue = prediction_queue
        self.outbox_writer = outbox_writer
        self.metrics = metrics
        self.on_event = on_event
        self.live_view = live_view
        self.sensor_view = sensor_view  # external sensors (sensors.py): adjust(detection, camera) per prediction
        self.trackers = {}
        self.fps = FpsMeter()
        self.stop_event = threading.Event()
        self.last_beat_ns = monotonic_ns()
        self.decided = 0
        self.latencies_ms = None  # a list when a benchmark wants every latency

    def stop(self):
        self.stop_event.set()

    def run(self):
        self.metrics.thread_alive.labels(self.name).set(1)
        try:
            while not self.stop_event.is_set() or not self.prediction_queue.empty():
                self.last_beat_ns = monotonic_ns()
                self.outbox_writer.flush_backlog()
                try:
                    prediction = self.prediction_queue.get(timeout=0.25)
                except queue.Empty:
                    continue
                try:
                    self._guarded_handle(prediction)
                finally:
                    self.prediction_queue.task_done()
        finally:
            self.metrics.thread_alive.labels(self.name).set(0)

    def _guarded_handle(self, prediction):
        try:
            self.handle(prediction)
        except Exception as e:  # one bad prediction must not stop alerting for every camera
            log.exception("postprocess: failed on %s frame %d: %s", prediction.frame.camera, prediction.frame.seq, e)

    def handle(self, prediction):
        """Update the camera's state with one prediction and emit any alert events it causes."""
        frame = prediction.frame
        tracker = self.trackers.get(frame.camera)
        if tracker is None:
            tracker = self.trackers[frame.camera] = CameraTracker(frame.camera, self.spec.labels)
        detection = self.detection
        if self.sensor_view is not None:
            detection = self.sensor_view.adjust(detection, frame.camera)
        events = tracker.update(prediction.probs, frame.pts_ns, detection)
        self._observe(prediction, tracker)
        for kind, state in events:
            self._emit(tracker, kind, state, prediction, detection)

    def _observe(self, prediction, tracker):
        frame = prediction.frame
        latency_s = max(0.0, (prediction.decided_ns - frame.captured_ns) / 1e9)
        self.metrics.frames_processed.labels(frame.camera).inc()
        self.metrics.latency.labels(frame.camera).observe(latency_s)
        if self.latencies_ms is not None:
            self.latencies_ms.append(latency_s * 1000.0)
        for label, value in zip(self.spec.labels, tracker.smoothed):
            self.metrics.probability.labels(frame.camera, label).set(float(value))
        fps = self.fps.tick(frame.camera, prediction.decided_ns)
        if fps is not None:
            self.metrics.fps.labels(frame.camera).set(fps)
        self.decided += 1
        if self.live_view is not None:
            self.live_view.update(prediction, tracker)

    def _emit(self, tracker, kind, state, prediction, detection):
        kt = tracker.kinds[kind]
        frame = prediction.frame
        snapshot = encode_snapshot(frame, detection.snapshot) if state == RAISED else None
        alert = Alert(id=kt.alert_id, camera=frame.camera, kind=kind, state=state,
                      started_ns=kt.started_wall_ns, event_ns=wall_ns(),
                      score=round(float(tracker.smoothed[tracker.index[kind]]), 4), peak_score=round(kt.peak, 4),
                      frame_seq=frame.seq, latency_ms=round((prediction.decided_ns - frame.captured_ns) / 1e6, 2),
                      model=self.model_name, snapshot_jpeg=snapshot)
        self.metrics.alert_events.labels(frame.camera, kind, state).inc()
        if state == RAISED:
            self.metrics.alerts_raised.labels(frame.camera, kind).inc()
        self.metrics.alert_active.labels(frame.camera, kind).set(1 if state != CLEARED else 0)
        self.outbox_writer.enqueue(alert)
        log.info("alert %s %s camera=%s score=%.3f frame=%d pts=%.2fs", kind, state, frame.camera, alert.score,
                 frame.seq, frame.pts_ns / 1e9)
        if self.on_event is not None:
            self.on_event(alert, frame)
