"""The engine runner thread: newest frame of each camera -> one batched engine call -> Predictions.

It owns the engine: creates it in this thread (a first TensorRT build takes minutes on a Nano, and the
pipeline waits for `ready` with a timeout instead of blocking on it), runs it and closes it here, and
hands each Prediction to the postprocessor's queue. An engine call that fails is counted and
logged and the frames are skipped; a run of failures stops the daemon (the model cannot be served).
"""

import logging
import threading

import numpy as np

from .clock import monotonic_ns
from .inference.preprocess import Preprocessor, to_probabilities
from .types import Prediction

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 20


class EngineRunner(threading.Thread):
    def __init__(self, engine_factory, spec, model_config, frame_queues, prediction_queue, metrics, on_fatal=None):
        super(EngineRunner, self).__init__(name="engine", daemon=True)
        self.engine_factory = engine_factory
        self.spec = spec
        self.model_config = model_config
        self.frame_queues = frame_queues
        self.prediction_queue = prediction_queue
        self.metrics = metrics
        self.on_fatal = on_fatal
        self.preprocess = Preprocessor(spec.input)
        self.none_index = spec.labels.index("none") if "none" in spec.labels else None
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.engine = None
        self.error = None
        self.last_beat_ns = monotonic_ns()
        self.last_decision_ns = 0
        self.processed = 0
        self._failures = 0

    def stop(self):
        self.stop_event.set()
        self.frame_queues.wake()

    def run(self):
        self.metrics.thread_alive.labels(self.name).set(1)
        try:
            self.engine = self.engine_factory()
            self.ready.set()
            self._serve()
        except Exception as e:
            self.error = e
            log.error("engine: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
            self.ready.set()
            if self.on_fatal is not None:
                self.on_fatal(e)
        finally:
            self.metrics.thread_alive.labels(self.name).set(0)
            if self.engine is not None:
                self.engine.close()

    def _serve(self):
        max_batch = min(self.model_config.max_batch, self.engine.max_batch)
        fill_s = self.model_config.batch_timeout_ms / 1000.0
        while not self.stop_event.is_set():
            self.last_beat_ns = monotonic_ns()
            frames = self.frame_queues.take_batch(max_batch, wait_s=0.25, fill_s=fill_s)
            if frames:
                try:
                    self.decide(frames)
                finally:
                    self.frame_queues.release(len(frames))

    def decide(self, frames):
        """Run one batch through the engine and queue a Prediction per frame. Frames the signal gate found
        unusable skip the engine (a covered camera costs nothing) and go on with no probabilities."""
        usable = [f for f in frames if f.usable]
        started = monotonic_ns()
        probs, maps = [], []
        if usable:
            try:
                probs, maps = self._infer_views(usable)
            except Exception as e:
                self._note_failure(e, usable)
                usable, probs, maps = [], [], []
        done = monotonic_ns()
        if usable:
            self._failures = 0
            engine_s = (done - started) / 1e9
            self.metrics.engine_seconds.observe(engine_s)
            self.metrics.batch_size.observe(len(usable))
        per_frame_ms = (done - started) / 1e6 / max(1, len(usable))
        decided = dict(zip((id(f) for f in usable), zip(probs, maps)))
        for frame in frames:
            if frame.usable and id(frame) not in decided:
                continue  # the engine failed on it: counted and logged above
            row, cam = decided.get(id(frame), (None, None))
            self.prediction_queue.put(Prediction(frame=frame, probs=row, engine_ms=per_frame_ms if row else 0.0,
                                                 decided_ns=done, cam=cam))
        self.processed += len(usable)
        self.last_decision_ns = done

    def _infer_views(self, frames):
        """Probabilities and class activation map (or None) per frame: each frame's whole view and its tiles (if
        any) go through the engine in batches of at most engine.max_batch; a frame with tiles takes, for every
        class but the last (`none`), its highest probability over the views, and for `none` its lowest. The map is
        the whole view's."""
        images, owner = [], []
        for index, frame in enumerate(frames):
            images.append(frame.image)
            owner.append(index)
            if frame.tiles is not None:
                images.extend(frame.tiles)
                owner.extend([index] * len(frame.tiles))
        step = max(1, self.engine.max_batch)
        outputs = [self._run_engine(self.preprocess(images[i:i + step])) for i in range(0, len(images), step)]
        rows = to_probabilities(np.concatenate([logits for logits, _ in outputs]), self.spec.output.kind)
        whole_view = [owner.index(index) for index in range(len(frames))]
        maps = [None] * len(frames)
        if all(cam is not None for _, cam in outputs):
            cams = np.concatenate([cam for _, cam in outputs])
            maps = [cams[i] for i in whole_view]
        if len(rows) == len(frames):
            return [tuple(float(p) for p in row) for row in rows], maps
        return [combine_views(rows[[i for i, o in enumerate(owner) if o == index]], self.none_index)
                for index in range(len(frames))], maps

    def _run_engine(self, batch):
        """(outputs, map or None); engines without infer_with_map (older plug-ins, test doubles) give no map."""
        if getattr(self.spec, "cam", None) is None or not hasattr(self.engine, "infer_with_map"):
            return self.engine.infer(batch), None
        return self.engine.infer_with_map(batch)

    def _note_failure(self, error, frames):
        self._failures += 1
        self.metrics.engine_errors.inc()
        log.warning("engine: inference failed on %d frame(s) of %s: %s", len(frames),
                    ", ".join(sorted({f.camera for f in frames})), error)
        if self._failures >= MAX_CONSECUTIVE_FAILURES:
            raise RuntimeError("engine failed %d times in a row; last error: %s" % (self._failures, error))


def combine_views(rows, none_index):
    """One frame's probabilities from its views (whole region + tiles): a fire seen in any tile is seen."""
    combined = rows.max(axis=0)
    if none_index is not None:
        combined[none_index] = rows[:, none_index].min()
    return tuple(float(p) for p in combined)
