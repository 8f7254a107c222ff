"""The real daemon (subprocess, bundled fire video looping, the shipped model) publishing to a real mosquitto on
127.0.0.1: a fire alert arrives on the camera's alert topic, Home Assistant discovery and state are retained,
the FPS and the source's connectivity are published, and SIGTERM leaves the device "offline" with no retained
fire or smoke state."""

import json
import os
import signal

import pytest
from support.daemon import REPO, DaemonProcess, free_port
from support.mqtt_broker import MOSQUITTO, SKIP_REASON, MosquittoBroker, Recorder

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (the mqtt extra)")
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason=SKIP_REASON)

VIDEO = os.path.join(REPO, "samples", "furg_house6.mp4")
BASE = "firedetd/e2e-dev"
WAIT_S = 120  # the first alert needs the engine loaded and a few frames decided on 2 busy cores


def write_config(tmp_path, broker_port):
    path = tmp_path / "firedetd.yaml"
    path.write_text(
        "cameras:\n  - name: house\n    source:\n      uri: file://%s\n      loop: true\n"
        "alerts:\n  mqtt:\n    host: 127.0.0.1\n    port: %d\n    status_interval_s: 1\n"
        "  outbox:\n    retry_initial_s: 0.2\n    retry_max_s: 1.0\n"
        "http:\n  addr: 127.0.0.1:%d\n"
        "device_id: e2e-dev\nstate_dir: %s\n" % (VIDEO, broker_port, free_port(), tmp_path / "state"))
    return path


def test_the_daemon_publishes_a_fire_alert_discovery_state_and_fps_and_goes_offline_on_stop_leaving_no_fire_state(
        tmp_path):
    broker = MosquittoBroker(tmp_path / "broker").start()
    watcher = Recorder(broker.port).wait_subscribed()
    daemon = DaemonProcess(write_config(tmp_path, broker.port)).start()
    try:
        watcher.wait_for(lambda ms: any(json.loads(m.payload.decode("utf-8"))["kind"] == "fire"
                                        for m in ms if m.topic == BASE + "/house/alert"), WAIT_S)
        watcher.wait_for(lambda ms: any(float(m.payload) > 0 for m in watcher.on(BASE + "/house/fps")), WAIT_S)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, daemon.log()
    finally:
        daemon.kill()
        watcher.close()
    try:
        late = Recorder(broker.port).wait_subscribed()
        late.wait_for(lambda ms: late.on("homeassistant/binary_sensor/e2e-dev_house_fire/config")
                      and late.on("homeassistant/binary_sensor/e2e-dev_house_connected/config")
                      and late.on(BASE + "/availability"))
        fire_config = json.loads(late.on("homeassistant/binary_sensor/e2e-dev_house_fire/config")[0].payload)
        late.close()
    finally:
        broker.stop()
    raised = [json.loads(m.payload.decode("utf-8")) for m in watcher.on(BASE + "/house/alert")]
    assert raised[0]["state"] == "raised" and raised[0]["device"] == "e2e-dev" and raised[0]["camera"] == "house"
    assert fire_config["state_topic"] == BASE + "/house/fire"
    assert late.payloads(BASE + "/availability") == [b"offline"]  # said on the way out, retained
    fire = watcher.payloads(BASE + "/house/fire")
    assert b"ON" in fire and fire[-1] == b""  # ON during the run, deleted at the stop
    assert late.on(BASE + "/house/fire") == [] and late.on(BASE + "/house/smoke") == []
    assert b"ON" in watcher.payloads(BASE + "/house/connected")  # OFF at first while the file source opens
