"""The board simulator: a video through the TFLM interpreter, the daemon's decision logic and outbox, and the
daemon's MQTT sink to a real mosquitto on 127.0.0.1: the same topics and the same JSON as the daemon."""

import json
import os

import numpy as np
import pytest
from support.mqtt_broker import MOSQUITTO, SKIP_REASON, Recorder
from support.video_files import write_mp4v

from firedetd.micro.runtime import MicroInterpreter
from firedetd.micro.simulate import BoardSimulator, run_video

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (the mqtt extra)")
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason=SKIP_REASON)

DEVICE, CAMERA = "board-1", "porch"


@pytest.fixture
def board(micro_spec, broker, tmp_path):
    from firedetd.alerts.mqtt import MqttSink
    from firedetd.config import MqttConfig, build_config

    sink = MqttSink("mqtt", MqttConfig(host="127.0.0.1", port=broker.port, timeout_s=5.0), DEVICE, "", (CAMERA,))
    simulator = BoardSimulator(micro_spec, MicroInterpreter(micro_spec.model_bytes(), micro_spec.arena_bytes),
                               build_config({}, {}).detection, camera=CAMERA, sinks=[sink],
                               outbox_path=str(tmp_path / "outbox.sqlite3"))
    yield simulator
    simulator.close()
    sink.close()


def daemon_payload_keys():
    """The keys of the daemon's alert JSON, from the function its sinks use."""
    from firedetd.alerts.webhook import event_fields

    event = {k: 0 for k in ("event_key", "id", "camera", "kind", "state", "score", "peak_score", "started_ns",
                            "event_ns", "frame_seq", "latency_ms", "model")}
    return set(event_fields(event, DEVICE))


def test_the_fire_segment_raises_a_fire_alert_in_the_daemons_json_on_its_topics(board, broker, micro_spec,
                                                                                 shared_dir):
    # ../shared's labelled video: test-split pictures, none for 0-8 s, fire for 8-16 s (VIDEO.md)
    video = os.path.join(shared_dir, "data", "video", "synthetic_fire_smoke_40s.mp4")
    recorder = Recorder(broker.port, ("firedetd/#",)).wait_subscribed()
    try:
        report = run_video(board, video, decide_fps=5.0, max_frames=400)
        raised = [e for e in report["raised"] if e["kind"] == "fire"]
        assert raised, "no fire alert during the fire segment: %r" % report["events"]
        assert 8.0 <= raised[0]["t_s"] < 16.0
        assert not [e for e in report["raised"] if e["t_s"] < 8.0], report["events"]
        topic = "firedetd/%s/%s/alert" % (DEVICE, CAMERA)
        messages = recorder.wait_for(lambda ms: [m for m in ms if m.topic == topic])
        payload = json.loads(messages[0].payload)
        assert set(payload) == daemon_payload_keys()
        assert (payload["kind"], payload["state"], payload["camera"], payload["device"]) == (
            "fire", "raised", CAMERA, DEVICE)
        assert payload["model"] == "%s-%s" % (micro_spec.name, micro_spec.version)
        assert payload["frame_seq"] == raised[0]["frame"]
        assert 0.0 < payload["score"] <= 1.0
        state = recorder.wait_for(lambda ms: [m for m in ms if m.topic == "firedetd/%s/%s/fire" % (DEVICE, CAMERA)])
        assert state[-1].payload == b"ON"
    finally:
        recorder.close()


def test_a_dark_empty_scene_raises_nothing(board, broker, tmp_path):
    rng = np.random.default_rng(0)

    def dusk(i):  # a dim, slightly noisy grey yard: nothing to alert on
        return np.clip(rng.normal(45 + i % 5, 6, (120, 160, 3)), 0, 255).astype(np.uint8)

    video = write_mp4v(tmp_path / "dusk.mp4", frames=100, fps=10.0, bgr=dusk)
    report = run_video(board, video, decide_fps=5.0)
    assert report["decided"] == 50
    assert report["raised"] == []
