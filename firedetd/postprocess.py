"""Predictions -> alert events: the postprocessor thread.

The decision logic (`incidents.CameraTracker`: smoothing, thresholds, one incident per camera episode, quiet
time, motion) is pure and clocked by the frames' own timestamps. This thread feeds it, counts the frames the
signal gate found unusable and says when a camera is degraded (`signal_quality.DegradedMonitor`), encodes the
snapshot of the frame that raised an incident, and hands every event to the durable outbox before anything
tries to deliver it.
"""

import logging
import queue
import threading

import numpy as np

from .clock import monotonic_ns, wall_ns
from .incidents import ALERT_KINDS, CameraTracker
from .region import half_peak_region, in_frame
from .signal_quality import PROBLEMS, DegradedMonitor
from .types import ESCALATED, RAISED, Alert

log = logging.getLogger(__name__)

# the decision logic lives in incidents.py; these names are imported from here by older callers
__all__ = ["ALERT_KINDS", "CameraTracker", "Postprocessor", "encode_snapshot"]


def encode_snapshot(frame, snapshot_config, overlays=None):
    """JPEG of the frame's snapshot (or its model-size image when no snapshot was captured), or None.
    `overlays`: [(name, corners as shares of the frame)] outlined on it (the live view's masks and crop)."""
    if not snapshot_config.enabled:
        return None
    import cv2

    rgb = frame.snapshot if frame.snapshot is not None else frame.image
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    if overlays:
        draw_overlays(bgr, overlays)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, snapshot_config.jpeg_quality])
    return buf.tobytes() if ok else None


# outline colours (BGR): what raised the alarm in red, the watched region in cyan, masks in amber
_OVERLAY_COLOURS = {"fire": (0, 0, 255), "smoke": (0, 0, 255), "watched region": (255, 255, 0)}


def draw_overlays(bgr, overlays):
    """Outline each (name, corners) on a BGR image in place: an alert's region (named by its kind) in red, the
    watched region in cyan, masks in amber."""
    import cv2

    height, width = bgr.shape[:2]
    for name, corners in overlays:
        points = np.array([[int(round(x * (width - 1))), int(round(y * (height - 1)))] for x, y in corners],
                          np.int32)
        colour = _OVERLAY_COLOURS.get(name, (0, 215, 255))
        cv2.polylines(bgr, [points], True, colour, 2)
        cv2.putText(bgr, name, tuple(int(v) for v in points.min(axis=0) + (4, 14)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, colour, 1, cv2.LINE_AA)


def region_corners(region):
    """(x, y, w, h) in shares of the frame -> the four corners draw_overlays outlines."""
    x, y, w, h = region
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


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
                 sensor_view=None, camera_detection=None, on_camera_problem=None):
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
        # camera -> callable(global DetectionConfig) -> that camera's DetectionConfig; replaced whole on SIGHUP
        self.camera_detection = dict(camera_detection or {})
        self.on_camera_problem = on_camera_problem   # (camera, reason or None) when a camera degrades or recovers
        self.trackers = {}
        self.maps = {}      # camera -> class activation map smoothed like the probabilities (models with a map)
        self.crops = {}     # camera -> its cameras[].crop (None: whole frame), set as each capture starts
        self.monitors = {}
        self.fps = FpsMeter()
        self.stop_event = threading.Event()
        self.last_beat_ns = monotonic_ns()
        self.decided = 0
        self.seen = 0   # every frame handed on, usable or not
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
        detection = self.detection_for(frame.camera)
        if self.sensor_view is not None:
            detection = self.sensor_view.adjust(detection, frame.camera)
        self.seen += 1
        self._watch_signal(frame, detection)
        if prediction.probs is None or not frame.usable:
            events = tracker.skip(frame.pts_ns, detection)
        else:
            change = frame.signal.change if frame.signal is not None else None
            events = tracker.update(prediction.probs, frame.pts_ns, detection, change)
            self._smooth_map(frame.camera, prediction.cam, detection.smoothing_alpha)
            self._observe(prediction, tracker)
        for kind, state in events:
            self._emit(tracker, kind, state, prediction, detection)

    def _smooth_map(self, camera, cam, alpha):
        """The same exponential smoothing as the probabilities, so the region follows the fire the score follows
        and one frame's glare does not move it."""
        if cam is None:
            return
        previous = self.maps.get(camera)
        self.maps[camera] = cam if previous is None or previous.shape != cam.shape else (
            alpha * cam + (1.0 - alpha) * previous)

    def region_of(self, camera, kind):
        """(x, y, w, h) as shares of the camera's frame where the smoothed map of `kind` is strong, or None."""
        smoothed = self.maps.get(camera)
        if smoothed is None:
            return None
        region = in_frame(half_peak_region(smoothed[self.spec.label_index(kind)]), self.crops.get(camera))
        return tuple(round(float(v), 4) for v in region)

    def detection_for(self, camera):
        """The camera's detection settings: its own overrides (cameras[].detection) over the global ones."""
        detection = self.detection
        overrides = self.camera_detection.get(camera)
        return overrides(detection) if overrides is not None else detection

    def _watch_signal(self, frame, detection):
        """Count an unusable frame; say when the camera becomes degraded or well again."""
        reading = frame.signal
        if reading is None:
            return
        if reading.reason is not None:
            self.metrics.frames_unusable.labels(frame.camera, reading.reason).inc()
        monitor = self.monitors.get(frame.camera)
        if monitor is None:
            monitor = self.monitors[frame.camera] = DegradedMonitor(detection.signal.degraded_after_s)
        changed = monitor.update(reading, frame.pts_ns)
        if changed is None:
            return
        for reason in PROBLEMS:
            self.metrics.camera_degraded.labels(frame.camera, reason).set(1 if reason == changed else 0)
        if changed:
            log.warning("%s: camera degraded: %s (frame %d)", frame.camera, PROBLEMS[changed], frame.seq)
        else:
            log.info("%s: camera picture is back (frame %d)", frame.camera, frame.seq)
        if self.on_camera_problem is not None:
            self.on_camera_problem(frame.camera, changed or None)

    def camera_problems(self):
        """{camera: reason} of every camera now degraded."""
        return {camera: m.problem for camera, m in list(self.monitors.items()) if m.problem is not None}

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
        incident = tracker.incident_for(state)
        frame = prediction.frame
        # the picture of the moment an incident opens, and of the moment it becomes fire: what a person deciding
        # whether to call the fire brigade needs to see; ongoing and cleared events carry none
        region = self.region_of(frame.camera, kind)
        snapshot = None
        if state in (RAISED, ESCALATED):
            outline = [(kind, region_corners(region))] if region and detection.snapshot.draw_region else None
            snapshot = encode_snapshot(frame, detection.snapshot, outline)
        alert = Alert(id=incident.id, camera=frame.camera, kind=kind, state=state,
                      started_ns=incident.started_wall_ns, event_ns=wall_ns(),
                      score=round(tracker.score(kind), 4), peak_score=round(incident.peak, 4),
                      frame_seq=frame.seq, latency_ms=round((prediction.decided_ns - frame.captured_ns) / 1e6, 2),
                      model=self.model_name, snapshot_jpeg=snapshot, region=region)
        self.metrics.alert_events.labels(frame.camera, kind, state).inc()
        if state == RAISED:
            self.metrics.alerts_raised.labels(frame.camera, kind).inc()
        active = tracker.active_kinds
        for each in ALERT_KINDS:
            self.metrics.alert_active.labels(frame.camera, each).set(1 if each in active else 0)
        self.outbox_writer.enqueue(alert)
        log.info("alert %s %s camera=%s incident=%s score=%.3f frame=%d pts=%.2fs", kind, state, frame.camera,
                 incident.id[:8], alert.score, frame.seq, frame.pts_ns / 1e9)
        if self.on_event is not None:
            self.on_event(alert, frame)
