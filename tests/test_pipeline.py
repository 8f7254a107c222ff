"""firedetd/pipeline.py in-process: real test:// GStreamer source, real ONNX engine, real outbox."""

import threading
import time

import pytest

from firedetd.config import ModelConfig
from firedetd.inference.onnxruntime import OnnxRuntimeEngine
from firedetd.pipeline import Pipeline


class SlowedEngine(object):
    """The real ONNX engine plus a fixed delay per call: a stand-in for a slower device (no Nano here)."""

    def __init__(self, engine, delay_s):
        self.engine, self.delay_s = engine, delay_s
        self.name, self.provider, self.max_batch = engine.name, engine.provider, engine.max_batch

    def infer(self, batch):
        time.sleep(self.delay_s)
        return self.engine.infer(batch)

    def close(self):
        self.engine.close()


def test_live_source_faster_than_the_engine_keeps_the_queue_bounded_and_counts_drops(make_config, spec):
    config = make_config({"cameras": [{"name": "live", "source": "test://?pattern=ball&fps=30", "queue_size": 2}],
                          "http": {"enabled": False}})
    pipeline = Pipeline(config, spec, engine_factory=lambda: SlowedEngine(OnnxRuntimeEngine(spec, ModelConfig()), 0.1),
                        sink_factory=lambda cfg: [])
    pipeline.start()
    depths = []
    try:
        deadline = time.time() + 4
        while time.time() < deadline:
            depths.append(pipeline.frame_queues.depths().get("live", 0))
            time.sleep(0.01)
    finally:
        pipeline.stop(5)
    queue = pipeline.frame_queues.get("live")
    captured = pipeline.captures["live"].seq
    decided = pipeline.postprocessor.decided
    assert max(depths) <= 2
    assert queue.dropped > 0 and decided > 0
    assert captured - decided - queue.dropped <= 2 + 1  # left in the queue or in the engine when stopped


def test_two_cameras_are_batched_into_one_engine_call(make_config, spec):
    calls = []

    class CountingEngine(SlowedEngine):
        def infer(self, batch):
            calls.append(len(batch))
            return SlowedEngine.infer(self, batch)

    config = make_config({"cameras": [{"name": "a", "source": "test://?pattern=ball&fps=20"},
                                      {"name": "b", "source": "test://?pattern=ball&fps=20"}],
                          "model": {"batch_timeout_ms": 30}, "http": {"enabled": False}})
    engine = lambda: CountingEngine(OnnxRuntimeEngine(spec, ModelConfig()), 0.05)  # noqa: E731
    pipeline = Pipeline(config, spec, engine_factory=engine, sink_factory=lambda cfg: [])
    pipeline.start()
    try:
        time.sleep(3)
    finally:
        pipeline.stop(5)
    assert calls and max(calls) == 2
    assert sum(1 for n in calls if n == 2) > len(calls) / 2


def test_stop_returns_within_the_budget_and_threads_end(make_config, spec):
    config = make_config({"cameras": [{"name": "x", "source": "test://?pattern=smpte&fps=30"}],
                          "http": {"enabled": False}})
    pipeline = Pipeline(config, spec, sink_factory=lambda cfg: [])
    pipeline.start()
    time.sleep(1)
    started = time.time()
    pipeline.stop(5)
    assert time.time() - started < 5.5
    names = {t.name for t in threading.enumerate()}
    assert not {"engine", "postprocess", "capture-x"} & names


def test_health_reports_a_dead_stage(make_config, spec):
    config = make_config({"cameras": [{"name": "x", "source": "test://?pattern=smpte&fps=30"}],
                          "http": {"enabled": False}})
    pipeline = Pipeline(config, spec, sink_factory=lambda cfg: [])
    pipeline.start()
    try:
        time.sleep(0.5)
        assert pipeline.health()["ok"], pipeline.health()
        pipeline.postprocessor.stop()
        pipeline.postprocessor.join(5)
        report = pipeline.health()
        assert not report["ok"] and any("postprocess" in p for p in report["problems"])
    finally:
        pipeline.stop(5)


def test_alerts_a_full_disk_kept_in_memory_at_stop_are_stored_by_the_next_start(make_config, spec):
    """SIGTERM while the state disk is full: the alerts waiting in memory go to a spill file in /dev/shm and the
    next start stores and delivers them (before: lost, exit 0, no log line)."""
    import os

    from firedetd.statedir import spill_path
    from firedetd.types import RAISED, Alert

    config = make_config({"cameras": [{"name": "x", "source": "test://?pattern=ball&fps=10"}],
                          "http": {"enabled": False}})
    path = spill_path(config.state_dir)
    alert = Alert(id="a" * 32, camera="x", kind="fire", state=RAISED, started_ns=1, event_ns=2, score=0.9,
                  peak_score=0.9, frame_seq=7, latency_ms=5.0, model="m", snapshot_jpeg=b"\xff\xd8jpeg")
    first = Pipeline(config, spec, sink_factory=lambda cfg: [])
    first.start()
    try:
        first.writer._backlog.append(alert)          # as the postprocessor leaves it while the disk says full
        first.writer.outbox.close()                  # ...and the disk still refuses at stop
    finally:
        first.stop(5)
    try:
        assert os.path.isfile(path) and first.lost_alerts == 0
        second = Pipeline(config, spec, sink_factory=lambda cfg: [])
        second.start()
        try:
            stored = second.outbox.recent(5)
        finally:
            second.stop(5)
        assert [e["event_key"] for e in stored] == [alert.event_key] and not os.path.exists(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_an_engine_that_is_not_ready_within_the_start_timeout_fails_the_start_clearly(make_config, spec,
                                                                                     monkeypatch):
    """A TensorRT build that outlasts the start timeout (a Nano under memory pressure): start() must say so, and the
    engine that arrives afterwards must still be closed."""
    import firedetd.pipeline as pipeline_module
    from firedetd.errors import EngineError

    monkeypatch.setattr(pipeline_module, "ENGINE_START_TIMEOUT_S", 0.3)
    release, closed = threading.Event(), threading.Event()

    class LateEngine(object):
        name, provider, max_batch = "late", "test", 1

        def infer(self, batch):
            raise AssertionError("a pipeline that failed to start must not run its engine")

        def close(self):
            closed.set()

    def build_late_engine():
        release.wait(10)
        return LateEngine()

    config = make_config({"cameras": [{"name": "x", "source": "test://?pattern=ball&fps=5"}],
                          "http": {"enabled": False}})
    pipeline = Pipeline(config, spec, engine_factory=build_late_engine, sink_factory=lambda cfg: [])
    try:
        with pytest.raises(EngineError, match=r"not ready after 0\.3 s"):
            pipeline.start()
    finally:
        release.set()
        pipeline.stop(5)
    assert closed.wait(5)
    pipeline.runner.join(5)
    assert not pipeline.runner.is_alive() and pipeline.captures == {}
