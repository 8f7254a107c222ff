"""The host-side simulator of a firedetd-micro board: a video file stands in for the camera, the TFLM interpreter
for the chip, and the daemon's own decision logic, outbox and MQTT sink for the firmware's alerting, so the
events reach a real broker on the same topics and in the same JSON as the daemon's (docs/mqtt.md).

Per decided frame, as the firmware loop in docs/micro.md: frame -> stretch to 96x96 (area) -> int8 via the
input table -> invoke -> dequantize -> softmax -> smoothing and thresholds (incidents.CameraTracker) ->
alert event -> outbox -> MQTT. A board decides a few frames a second; `decide_fps` drops the frames between.
"""

import os
import shutil
import tempfile
import time

import cv2
import numpy as np

from ..clock import wall_ns
from ..incidents import CameraTracker
from ..types import RAISED, Alert
from . import dequantize_output, quantize_frame, softmax


class BoardSimulator(object):
    """One simulated board (one camera): decide frames, keep the incident state, deliver events to the sinks (the
    device id travels in each sink, as in the daemon)."""

    def __init__(self, spec, interpreter, detection, camera="micro", sinks=(), outbox_path=None):
        from ..alerts.outbox import Outbox

        self.spec = spec
        self.interpreter = interpreter
        self.detection = detection
        self.camera = camera
        self.model_name = "%s-%s" % (spec.name, spec.version)
        self.tracker = CameraTracker(camera, spec.labels)
        self.sinks = list(sinks)
        self._tmp = None
        if outbox_path is None:
            self._tmp = tempfile.mkdtemp(prefix="firedetd-micro-")
            outbox_path = os.path.join(self._tmp, "outbox.sqlite3")
        self.outbox = Outbox(outbox_path)
        self.events = []

    def decide(self, rgb, seq, pts_ns):
        """Run one frame through the model and the decision logic; return its probabilities."""
        started = time.perf_counter()
        q_logits = self.interpreter.invoke(quantize_frame(rgb, self.spec))
        probs = softmax(dequantize_output(q_logits, self.spec))[0]
        latency_ms = (time.perf_counter() - started) * 1000.0
        for kind, state in self.tracker.update(probs, pts_ns, self.detection):
            self._emit(kind, state, seq, pts_ns, latency_ms)
        return probs

    def _emit(self, kind, state, seq, pts_ns, latency_ms):
        incident = self.tracker.incident_for(state)
        alert = Alert(id=incident.id, camera=self.camera, kind=kind, state=state,
                      started_ns=incident.started_wall_ns, event_ns=wall_ns(),
                      score=round(self.tracker.score(kind), 4), peak_score=round(incident.peak, 4),
                      frame_seq=seq, latency_ms=round(latency_ms, 2), model=self.model_name, snapshot_jpeg=None)
        self.events.append({"kind": kind, "state": state, "frame": seq, "t_s": round(pts_ns / 1e9, 2),
                            "score": alert.score})
        self.outbox.enqueue(alert, [sink.name for sink in self.sinks])
        self.deliver_pending()

    def deliver_pending(self):
        """Hand every undelivered event to each sink, oldest first (the daemon's delivery threads, inline)."""
        for sink in self.sinks:
            while True:
                event = self.outbox.next_pending(sink.name, 2 ** 62)
                if event is None:
                    break
                sink.deliver(event)
                self.outbox.mark_delivered(sink.name, event["row_id"])

    def close(self):
        self.outbox.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def run_video(board, video, decide_fps=5.0, truth_segments=None, max_frames=0):
    """Feed `video` to `board`, deciding about `decide_fps` frames a second of media time; return a report with
    the events and, given truth segments [(first, last, label)], the share of decided frames called right."""
    capture = cv2.VideoCapture(video)
    if not capture.isOpened():
        raise ValueError("%s: cannot open the video" % video)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    step = max(1, int(round(fps / decide_fps)))
    labels = board.spec.labels
    decided, right, seq = 0, 0, 0
    confusion = np.zeros((len(labels), len(labels)), np.int64)
    started = time.perf_counter()
    while True:
        ok, bgr = capture.read()
        if not ok or (max_frames and seq >= max_frames):
            break
        if seq % step == 0:
            probs = board.decide(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), seq, int(seq / fps * 1e9))
            decided += 1
            truth = _label_at(truth_segments, seq) if truth_segments else None
            if truth is not None:
                confusion[labels.index(truth), int(probs.argmax())] += 1
                right += int(labels[int(probs.argmax())] == truth)
        seq += 1
    capture.release()
    scored = int(confusion.sum())
    return {"video": os.path.basename(video), "frames": seq, "decided": decided, "decide_every": step,
            "seconds": round(time.perf_counter() - started, 1),
            "frame_accuracy": round(right / scored, 4) if scored else None,
            "confusion": confusion.tolist() if scored else None,
            "raised": [e for e in board.events if e["state"] == RAISED], "events": list(board.events)}


def _label_at(segments, frame):
    for first, last, label in segments:
        if first <= frame <= last:
            return label
    return None
