"""Scene dedupe (firedetd/scenes.py): cameras watching one scene give one incident per kind, the scene stays raised
until its last camera cleared plus the window, repeats are dropped; the config names its mistakes; and the relay,
against a real mosquitto on 127.0.0.1, turns two devices' raised/cleared events into one scene incident. The
dedupe runs on a settable clock, so the window is tested without sleeping."""

import json

import pytest
from support.mqtt_broker import MOSQUITTO, SKIP_REASON, MosquittoBroker, Recorder

from firedetd.config import MqttConfig
from firedetd.errors import ConfigError
from firedetd.scenes import SceneDedupe, SceneMap, SceneRelay, SceneRelayConfig, load_relay_config

SCENES = {"loading-bay": ["nano-1/dock-east", "nano-2/dock-west"]}
WINDOW_S = 60.0


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def event(device, camera, state, alert_id, kind="fire", seq=0):
    return {"id": "%s:%s:%d" % (alert_id, state, seq), "alert_id": alert_id, "device": device, "camera": camera,
            "kind": kind, "state": state, "score": 0.9}


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def dedupe(clock):
    return SceneDedupe(SceneMap(SCENES), WINDOW_S, clock)


def states(events):
    return [(e["device"], e["state"], e["scene"]) for e in events]


def test_two_cameras_on_one_scene_give_one_raised_event(dedupe):
    first = dedupe.feed(event("nano-1", "dock-east", "raised", "a1"))
    second = dedupe.feed(event("nano-2", "dock-west", "raised", "b1"))
    assert states(first) == [("nano-1", "raised", "loading-bay")]
    assert second == [] and dedupe.suppressed == 1


def test_only_the_leading_cameras_ongoing_events_are_forwarded(dedupe):
    dedupe.feed(event("nano-1", "dock-east", "raised", "a1"))
    dedupe.feed(event("nano-2", "dock-west", "raised", "b1"))
    assert states(dedupe.feed(event("nano-1", "dock-east", "ongoing", "a1"))) == [("nano-1", "ongoing", "loading-bay")]
    assert dedupe.feed(event("nano-2", "dock-west", "ongoing", "b1")) == []


def test_an_escalation_is_forwarded_and_its_one_clear_closes_smoke_and_fire(dedupe, clock):
    dedupe.feed(event("nano-1", "dock-east", "raised", "a1", kind="smoke"))
    escalated = dedupe.feed(event("nano-1", "dock-east", "escalated", "a1", kind="fire"))
    assert [(e["kind"], e["state"]) for e in escalated] == [("fire", "escalated")]
    assert dedupe.feed(event("nano-1", "dock-east", "cleared", "a1", kind="fire")) == []
    clock.now += WINDOW_S + 1
    cleared = dedupe.flush()
    assert sorted((e["kind"], e["state"]) for e in cleared) == [("fire", "cleared"), ("smoke", "cleared")]
    assert dedupe.open_scenes() == []


def test_the_scene_clears_only_after_its_last_camera_and_the_window(dedupe, clock):
    dedupe.feed(event("nano-1", "dock-east", "raised", "a1"))
    dedupe.feed(event("nano-2", "dock-west", "raised", "b1"))
    assert dedupe.feed(event("nano-1", "dock-east", "cleared", "a1")) == []  # nano-2 still sees the fire
    clock.now += 10 * WINDOW_S
    assert dedupe.flush() == [] and dedupe.open_scenes() == [("loading-bay", "fire")]
    assert dedupe.feed(event("nano-2", "dock-west", "cleared", "b1")) == []
    clock.now += WINDOW_S - 1
    assert dedupe.flush() == []
    clock.now += 1
    cleared = dedupe.flush()
    assert [(e["alert_id"], e["state"], e["scene"]) for e in cleared] == [("a1", "cleared", "loading-bay")]
    assert dedupe.open_scenes() == []


def test_a_camera_raising_again_within_the_window_joins_the_same_incident(dedupe, clock):
    dedupe.feed(event("nano-1", "dock-east", "raised", "a1"))
    dedupe.feed(event("nano-1", "dock-east", "cleared", "a1"))
    clock.now += WINDOW_S / 2
    assert dedupe.feed(event("nano-2", "dock-west", "raised", "b1")) == []
    dedupe.feed(event("nano-2", "dock-west", "cleared", "b1"))
    clock.now += WINDOW_S
    assert [e["alert_id"] for e in dedupe.flush()] == ["a1"]


def test_a_raise_after_the_window_is_a_new_incident(dedupe, clock):
    dedupe.feed(event("nano-1", "dock-east", "raised", "a1"))
    dedupe.feed(event("nano-1", "dock-east", "cleared", "a1"))
    clock.now += WINDOW_S
    again = dedupe.feed(event("nano-2", "dock-west", "raised", "b1"))
    assert [(e["alert_id"], e["state"]) for e in again] == [("a1", "cleared"), ("b1", "raised")]


def test_cameras_in_no_scene_and_other_kinds_are_separate_incidents(dedupe):
    assert dedupe.feed(event("nano-1", "dock-east", "raised", "a1"))
    assert dedupe.feed(event("nano-1", "dock-east", "raised", "s1", kind="smoke"))
    lone = dedupe.feed(event("nano-3", "yard", "raised", "c1"))
    assert states(lone) == [("nano-3", "raised", "nano-3/yard")]


def test_a_repeated_event_is_dropped(dedupe):
    raised = event("nano-1", "dock-east", "raised", "a1")
    assert dedupe.feed(raised)
    dedupe.feed(event("nano-1", "dock-east", "cleared", "a1"))
    assert dedupe.feed(dict(raised)) == []
    assert dedupe.open_scenes() == [("loading-bay", "fire")]  # the repeat did not reopen or extend anything


def test_a_relay_started_mid_incident_forwards_the_first_ongoing_event(dedupe):
    assert states(dedupe.feed(event("nano-2", "dock-west", "ongoing", "b1"))) == [("nano-2", "ongoing",
                                                                                   "loading-bay")]


def test_a_member_that_is_not_device_slash_camera_is_refused(tmp_path):
    path = tmp_path / "scenes.yaml"
    path.write_text("scenes:\n  bay: [nano-1-dock]\n")
    with pytest.raises(ConfigError, match="must be device/camera"):
        load_relay_config(str(path))
    path.write_text("scenes:\n  bay: [nano-1/dock]\n  yard: [nano-1/dock]\n")
    with pytest.raises(ConfigError, match="already in scene 'bay'"):
        load_relay_config(str(path))
    path.write_text("mqtt:\n  host: 127.0.0.1\nwindw_s: 5\n")
    with pytest.raises(ConfigError, match="did you mean 'window_s'"):
        load_relay_config(str(path))


@pytest.mark.skipif(MOSQUITTO is None, reason=SKIP_REASON)
def test_the_relay_turns_two_devices_events_into_one_scene_incident(tmp_path):
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (the mqtt extra)")
    broker = MosquittoBroker(tmp_path / "broker").start()
    config = SceneRelayConfig(mqtt=MqttConfig(host="127.0.0.1", port=broker.port), scenes=SCENES, window_s=0.2)
    relay = SceneRelay(config).start()
    watcher = Recorder(broker.port, topics=("firedetd-scenes/#",)).wait_subscribed()
    devices = Recorder(broker.port, topics=("firedetd/#",)).wait_subscribed()
    try:
        assert relay.connection.wait_connected(20)
        out = "firedetd-scenes/loading-bay/alert"

        def publish(e):
            devices.client.publish("firedetd/%s/%s/alert" % (e["device"], e["camera"]), json.dumps(e), qos=1)

        first = event("nano-1", "dock-east", "raised", "a1")
        # the relay may not have subscribed yet: repeat the first event until it comes out (the relay drops
        # repeats by id, as it must for the daemons' at-least-once delivery)
        watcher.wait_for(lambda ms: watcher.on(out) or publish(first))
        for e in (event("nano-2", "dock-west", "raised", "b1"), event("nano-1", "dock-east", "cleared", "a1"),
                  event("nano-2", "dock-west", "cleared", "b1")):
            publish(e)
        watcher.wait_for(lambda ms: len(watcher.on(out)) >= 2)
    finally:
        relay.stop()
        watcher.close()
        devices.close()
        broker.stop()
    forwarded = [json.loads(m.payload.decode("utf-8")) for m in watcher.on(out)]
    assert [(e["alert_id"], e["state"], e["scene"]) for e in forwarded] == [("a1", "raised", "loading-bay"),
                                                                          ("a1", "cleared", "loading-bay")]


def test_the_example_config_in_docs_loads():
    import os

    from support.daemon import REPO

    config = load_relay_config(os.path.join(REPO, "docs", "scene-relay.example.yaml"))
    assert SceneMap(config.scenes).scene_of("orin-001", "ceiling-3") == "warehouse-aisle-3"
    assert config.mqtt.password_env and config.window_s == 60
