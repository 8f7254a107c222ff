"""The engine runner thread: newest frame of each camera -> one batched engine call -> Predictions.

It owns the engine (created in this thread, since CUDA contexts belong to the thread that made them)
and hands each Prediction to the postprocessor's queue. An engine call that fails is counted and
logged and the frames are skipped; a run of failures stops the daemon (the model cannot be served).
"""

import logging
import threading

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
        """Run one batch through the engine and queue a Prediction per frame."""
        started = monotonic_ns()
        try:
            probs = to_probabilities(self.engine.infer(self.preprocess([f.image for f in frames])),
                                     self.spec.output.kind)
        except Exception as e:
            self._note_failure(e, frames)
            return
        done = monotonic_ns()
        self._failures = 0
        engine_s = (done - started) / 1e9
        self.metrics.engine_seconds.observe(engine_s)
        self.metrics.batch_size.observe(len(frames))
        per_frame_ms = engine_s * 1000.0 / len(frames)
        for frame, row in zip(frames, probs):
            self.prediction_queue.put(Prediction(frame=frame, probs=tuple(float(p) for p in row),
                                                 engine_ms=per_frame_ms, decided_ns=done))
        self.processed += len(frames)
        self.last_decision_ns = done

    def _note_failure(self, error, frames):
        self._failures += 1
        self.metrics.engine_errors.inc()
        log.warning("engine: inference failed on %d frame(s) of %s: %s", len(frames),
                    ", ".join(sorted({f.camera for f in frames})), error)
        if self._failures >= MAX_CONSECUTIVE_FAILURES:
            raise RuntimeError("engine failed %d times in a row; last error: %s" % (self._failures, error))
