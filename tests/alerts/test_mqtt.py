"""firedetd/alerts/mqtt.py against a real mosquitto on 127.0.0.1 and a real paho subscriber: alert events, retained
state, Home Assistant discovery, availability and the last will, and a broker outage with the real outbox."""

import json
import os
import signal
import socket

import pytest
from support.ha_discovery import discovery_errors
from support.mqtt_broker import MOSQUITTO, SKIP_REASON, WAIT_S, MosquittoBroker, Recorder, free_port

from firedetd.alerts.delivery import DeliveryThread
from firedetd.config import MqttConfig, OutboxConfig
from firedetd.errors import SinkError
from firedetd.types import CLEARED, ESCALATED, RAISED

pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (the mqtt extra)")
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason=SKIP_REASON)

DEVICE = "dev-1"
BASE = "firedetd/dev-1"


@pytest.fixture
def recorder():
    recorders = []

    def start(port, topics=("#",), **kwargs):
        recorders.append(Recorder(port, topics, **kwargs).wait_subscribed())
        return recorders[-1]

    yield start
    for r in recorders:
        r.close()


@pytest.fixture
def mqtt_sink():
    from firedetd.alerts.mqtt import MqttSink

    sinks = []

    def build(port, device=DEVICE, cameras=(), **options):
        options.setdefault("timeout_s", 5.0)
        sinks.append(MqttSink("mqtt", MqttConfig(host="127.0.0.1", port=port, **options), device, "", cameras))
        return sinks[-1]

    yield build
    for sink in sinks:
        sink.close()


def pending_event(outbox, alert, sink="mqtt"):
    """The event dict the delivery thread hands a sink, read back from a real outbox."""
    outbox.enqueue(alert, [sink])
    event = outbox.next_pending(sink, 2 ** 62)
    outbox.mark_delivered(sink, event["row_id"])
    return event


@pytest.mark.parametrize("qos", [1, 2])
def test_an_alert_event_arrives_as_json_on_the_camera_alert_topic_with_the_configured_qos(
        broker, recorder, mqtt_sink, outbox, make_alert, qos):
    watcher = recorder(broker.port)
    sink = mqtt_sink(broker.port, qos=qos)
    event = pending_event(outbox, make_alert(1))

    sink.deliver(event)

    alerts = watcher.wait_for(lambda ms: [m for m in ms if m.topic == BASE + "/cam1/alert"])
    assert len(alerts) == 1 and alerts[0].qos == qos and not alerts[0].retain
    body = json.loads(alerts[0].payload.decode("utf-8"))
    assert body == {"id": "alert-0001:raised", "alert_id": "alert-0001", "device": DEVICE, "camera": "cam1",
                    "kind": "fire", "state": "raised", "score": event["score"], "peak_score": 0.95,
                    "started_at": "2024-05-01T12:00:01.000Z", "event_at": "2024-05-01T12:00:01.123Z",
                    "frame_seq": 1001, "latency_ms": 13.5, "model": "firedetd-test"}
    assert watcher.on(BASE + "/cam1/snapshot") == []  # include_snapshot is off by default


def test_snapshot_goes_to_its_own_retained_topic_before_the_event(broker, recorder, mqtt_sink, outbox, make_alert):
    watcher = recorder(broker.port)
    sink = mqtt_sink(broker.port, include_snapshot=True)
    alert = make_alert(2)

    sink.deliver(pending_event(outbox, alert))

    wanted = (BASE + "/cam1/snapshot", BASE + "/cam1/alert")
    topics = watcher.wait_for(lambda ms: [m.topic for m in ms if m.topic in wanted] if watcher.on(wanted[1]) else None)
    assert topics == list(wanted)
    late = recorder(broker.port, [BASE + "/cam1/snapshot"])
    retained = late.wait_for(lambda ms: ms)
    assert retained[0].retain and retained[0].payload == alert.snapshot_jpeg


def test_a_late_subscriber_finds_online_the_camera_state_and_home_assistant_discovery(
        broker, recorder, mqtt_sink, outbox, make_alert):
    sink = mqtt_sink(broker.port)
    topic_of = {"fire": "homeassistant/binary_sensor/dev-1_yard_east_fire/config",
                "smoke": "homeassistant/binary_sensor/dev-1_yard_east_smoke/config",
                "fps": "homeassistant/sensor/dev-1_yard_east_fps/config"}
    early = recorder(broker.port)
    sink.deliver(pending_event(outbox, make_alert(3, camera="yard.east")))
    # the broker must hold everything before the late subscriber comes, or it gets some of it live (retain=0)
    early.wait_for(lambda ms: set(topic_of.values()) <= {m.topic for m in ms} and early.on(BASE + "/yard.east/fire"))

    late = recorder(broker.port)
    late.wait_for(lambda ms: set(topic_of.values()) <= {m.topic for m in ms} and late.on(BASE + "/yard.east/fire")
                  and late.on(BASE + "/availability"))
    assert [(m.payload, m.retain) for m in late.on(BASE + "/availability")] == [(b"online", True)]
    assert [(m.payload, m.retain) for m in late.on(BASE + "/yard.east/fire")] == [(b"ON", True)]
    fire = json.loads(late.on(topic_of["fire"])[0].payload.decode("utf-8"))
    smoke = json.loads(late.on(topic_of["smoke"])[0].payload.decode("utf-8"))
    fps = json.loads(late.on(topic_of["fps"])[0].payload.decode("utf-8"))
    assert (fire["device_class"], smoke["device_class"]) == ("safety", "smoke")
    assert (fire["state_topic"], fire["payload_on"], fire["payload_off"]) == (BASE + "/yard.east/fire", "ON", "OFF")
    assert (fps["state_topic"], fps["unit_of_measurement"], fps["state_class"]) == (
        BASE + "/yard.east/fps", "fps", "measurement")
    for config in (fire, smoke, fps):
        assert config["availability_topic"] == BASE + "/availability"
        assert config["device"]["identifiers"] == ["firedetd_dev-1_yard_east"]
        assert set(config["device"]) >= {"name", "model", "sw_version"}
    assert len({fire["unique_id"], smoke["unique_id"], fps["unique_id"]}) == 3

    sink.deliver(pending_event(outbox, make_alert(3, camera="yard.east", state=CLEARED)))
    # the state follows the event's acknowledgement, so it reaches the broker just after deliver returns
    late.wait_for(lambda ms: [m.payload for m in late.on(BASE + "/yard.east/fire")][-1:] == [b"OFF"])
    later = recorder(broker.port, [BASE + "/yard.east/fire"])
    assert later.wait_for(lambda ms: [m.payload for m in ms]) == [b"OFF"]


def test_the_last_will_says_offline_when_the_connection_dies_and_online_returns_on_reconnect(
        broker, recorder, mqtt_sink, outbox, make_alert):
    sink = mqtt_sink(broker.port)
    sink.deliver(pending_event(outbox, make_alert(4)))
    watcher = recorder(broker.port, [BASE + "/availability"])
    watcher.wait_for(lambda ms: [m.payload for m in ms] == [b"online"])

    # a network cut: the TCP connection ends without an MQTT DISCONNECT, so the broker publishes the will
    sink.connection.client.socket().shutdown(socket.SHUT_RDWR)

    assert watcher.wait_for(lambda ms: [m.payload for m in ms][:3] == [b"online", b"offline", b"online"])
    sink.deliver(pending_event(outbox, make_alert(5)))  # and the sink works on the new connection


def test_a_clean_stop_leaves_offline_and_no_retained_fire_smoke_or_camera_state(
        broker, recorder, mqtt_sink, outbox, make_alert):
    sink = mqtt_sink(broker.port)
    sink.publish_status({"cam1": {"fire": False, "smoke": True, "fps": 9.0, "problem": None, "up": True}})
    sink.deliver(pending_event(outbox, make_alert(6)))  # an incident in progress at the stop: fire and smoke ON
    states = [BASE + "/cam1/" + leaf for leaf in ("fire", "smoke", "connected", "problem", "problem/attributes")]
    before = recorder(broker.port, [BASE + "/cam1/#"])
    before.wait_for(lambda ms: {m.topic for m in ms} >= set(states) and before.payloads(BASE + "/cam1/fire"))
    assert before.payloads(BASE + "/cam1/fire") == [b"ON"] and before.payloads(BASE + "/cam1/smoke") == [b"ON"]

    sink.close()

    late = recorder(broker.port)
    late.wait_for(lambda ms: late.on(BASE + "/availability"))
    assert [(m.payload, m.retain) for m in late.on(BASE + "/availability")] == [(b"offline", True)]
    assert not [m.topic for m in late.messages if m.topic in states]  # gone from the broker, not turned OFF
    # what a subscriber that stayed saw: the retained states deleted (empty payloads), then offline
    cleared = before.wait_for(lambda ms: [m for m in ms if m.payload == b""] if len(ms) >= 2 * len(states) else None)
    assert sorted(m.topic for m in cleared) == sorted(states)


def test_an_event_is_delivered_only_once_the_broker_acknowledges_it_and_a_retry_reuses_the_sent_copy(
        broker, recorder, mqtt_sink, outbox, make_alert):
    watcher = recorder(broker.port)
    sink = mqtt_sink(broker.port, timeout_s=3.0)
    sink.deliver(pending_event(outbox, make_alert(9)))
    event = pending_event(outbox, make_alert(10))

    os.kill(broker.proc.pid, signal.SIGSTOP)  # connected, but the broker answers nothing
    try:
        with pytest.raises(SinkError) as raised:
            sink.deliver(event)
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)
    assert raised.value.retryable and raised.value.reason == "timeout"

    sink.deliver(event)  # the outbox's retry: paho's copy is acknowledged now
    watcher.wait_for(lambda ms: watcher.on(BASE + "/cam1/fire") and len(watcher.on(BASE + "/cam1/alert")) >= 2)
    ids = [json.loads(m.payload.decode("utf-8"))["id"] for m in watcher.on(BASE + "/cam1/alert")]
    assert ids == ["alert-0009:raised", "alert-0010:raised"]  # not sent twice


def test_without_a_broker_deliver_raises_a_retryable_sink_error(mqtt_sink, outbox, make_alert):
    sink = mqtt_sink(free_port(), timeout_s=0.3)
    with pytest.raises(SinkError) as raised:
        sink.deliver(pending_event(outbox, make_alert(7)))
    assert raised.value.retryable and raised.value.reason == "connection"
    assert "not connected to broker 127.0.0.1:" in str(raised.value)


def test_a_broker_outage_loses_nothing_and_events_arrive_in_order(tmp_path, recorder, mqtt_sink, outbox,
                                                                  make_alert):
    # persistence: the broker keeps the recorder's session across the restart, so what the sink publishes
    # before the recorder is back is queued for it rather than missed
    server = MosquittoBroker(tmp_path / "broker", persistence=True).start()
    thread = None
    try:
        watcher = recorder(server.port, [BASE + "/cam1/alert"], qos=1, client_id="outage-recorder",
                           persistent_session=True)
        sink = mqtt_sink(server.port, timeout_s=0.5)
        thread = DeliveryThread(sink, outbox, OutboxConfig(retry_initial_s=0.05, retry_max_s=0.5))
        thread.start()
        alerts = [make_alert(n, state=RAISED if n % 2 == 0 else CLEARED) for n in range(8)]
        for alert in alerts[:3]:
            outbox.enqueue(alert, ["mqtt"])
        thread.wake()
        watcher.wait_for(lambda ms: len(ms) >= 3)

        server.stop()
        for alert in alerts[3:]:
            outbox.enqueue(alert, ["mqtt"])
        thread.wake()
        watcher.wait_for(lambda ms: sum(thread.stats.failures.values()) >= 2)
        assert outbox.pending_count("mqtt") == 5  # held in the outbox while the broker is gone

        server.start()
        watcher.wait_for(lambda ms: outbox.pending_count("mqtt") == 0)
        keys = [json.loads(m.payload.decode("utf-8"))["id"] for m in watcher.wait_for(
            lambda ms: ms if len({m.payload for m in ms}) >= 8 else None)]
    finally:
        if thread is not None:
            assert thread.stop(WAIT_S)
        server.stop()
    first_seen = []
    for key in keys:
        if key not in first_seen:
            first_seen.append(key)
    assert first_seen == [a.event_key for a in alerts]


def test_publish_status_announces_cameras_sends_state_changes_and_fps(broker, recorder, mqtt_sink):
    watcher = recorder(broker.port)
    sink = mqtt_sink(broker.port, status_interval_s=60)
    sink.publish_status({"gate": {"fire": False, "smoke": False, "fps": None}})
    watcher.wait_for(lambda ms: watcher.on("homeassistant/binary_sensor/dev-1_gate_fire/config")
                     and watcher.on(BASE + "/gate/smoke"))

    sink.publish_status({"gate": {"fire": True, "smoke": False, "fps": 12.5}})
    sink.publish_status({"gate": {"fire": True, "smoke": False, "fps": 12.5}})  # no change: nothing new

    watcher.wait_for(lambda ms: watcher.on(BASE + "/gate/fps") and b"ON" in watcher.payloads(BASE + "/gate/fire"))
    # a state published while the connection comes up is sent again with the connection's announcements (retained,
    # so harmless); what must hold is the order of changes and that an unchanged status sends nothing new
    fire = watcher.payloads(BASE + "/gate/fire")
    assert collapse_repeats(fire) == [b"OFF", b"ON"] and fire.count(b"ON") == 1
    assert watcher.payloads(BASE + "/gate/fps") == [b"12.50"]
    assert collapse_repeats(watcher.payloads(BASE + "/gate/smoke")) == [b"OFF"]


def collapse_repeats(payloads):
    return [p for i, p in enumerate(payloads) if i == 0 or payloads[i - 1] != p]


def test_a_camera_without_a_picture_turns_its_problem_sensor_on_with_the_reason(broker, recorder, mqtt_sink):
    watcher = recorder(broker.port)
    sink = mqtt_sink(broker.port)
    sink.publish_status({"gate": {"fire": False, "smoke": False, "fps": 0.0, "problem": "dark"}})
    watcher.wait_for(lambda ms: watcher.on(BASE + "/gate/problem") and watcher.on(BASE + "/gate/problem/attributes")
                     and watcher.on("homeassistant/binary_sensor/dev-1_gate_problem/config"))
    sink.publish_status({"gate": {"fire": False, "smoke": False, "fps": 10.0, "problem": None}})
    watcher.wait_for(lambda ms: len(watcher.payloads(BASE + "/gate/problem")) >= 2)
    assert watcher.payloads(BASE + "/gate/problem") == [b"ON", b"OFF"]
    attributes = json.loads(watcher.payloads(BASE + "/gate/problem/attributes")[0].decode("utf-8"))
    assert attributes["reason"] == "dark" and "black" in attributes["text"]
    config = json.loads(watcher.on("homeassistant/binary_sensor/dev-1_gate_problem/config")[0].payload)
    assert (config["device_class"], config["state_topic"], config["json_attributes_topic"]) == (
        "problem", BASE + "/gate/problem", BASE + "/gate/problem/attributes")


def test_an_escalated_incident_turns_fire_on_and_its_clear_turns_both_off(
        broker, recorder, mqtt_sink, outbox, make_alert):
    watcher = recorder(broker.port)
    sink = mqtt_sink(broker.port)
    sink.deliver(pending_event(outbox, make_alert(4, kind="smoke")))
    sink.deliver(pending_event(outbox, make_alert(4, kind="fire", state=ESCALATED)))
    sink.deliver(pending_event(outbox, make_alert(4, kind="fire", state=CLEARED)))
    watcher.wait_for(lambda ms: len(watcher.payloads(BASE + "/cam1/smoke")) >= 2
                     and len(watcher.payloads(BASE + "/cam1/fire")) >= 2)
    assert watcher.payloads(BASE + "/cam1/smoke") == [b"ON", b"OFF"]
    assert watcher.payloads(BASE + "/cam1/fire") == [b"ON", b"OFF"]


def test_discovery_can_be_turned_off(broker, recorder, mqtt_sink, outbox, make_alert):
    watcher = recorder(broker.port)
    sink = mqtt_sink(broker.port, discovery=False)
    sink.deliver(pending_event(outbox, make_alert(8)))
    watcher.wait_for(lambda ms: watcher.on(BASE + "/cam1/fire"))
    assert not [m for m in watcher.messages if m.topic.startswith("homeassistant/")]


def test_names_are_made_safe_for_topics_and_home_assistant_ids():
    from firedetd.alerts.mqtt import object_id, topic_segment

    assert topic_segment("lab/1 #+") == "lab_1___"
    assert topic_segment("yard.east-2") == "yard.east-2"
    assert object_id("dev.1", "yard.east") == "dev_1_yard_east"


def test_every_discovery_config_passes_home_assistants_discovery_schema(broker, recorder, mqtt_sink):
    watcher = recorder(broker.port, ["homeassistant/#"])
    sink = mqtt_sink(broker.port, include_snapshot=True)
    sink.publish_status({"gate": {"fire": False, "smoke": False, "fps": 5.0, "problem": None, "up": True}})
    entities = ("binary_sensor/dev-1_gate_fire", "binary_sensor/dev-1_gate_smoke", "binary_sensor/dev-1_gate_problem",
                "binary_sensor/dev-1_gate_connected", "sensor/dev-1_gate_fps", "image/dev-1_gate_snapshot")
    topics = ["homeassistant/%s/config" % entity for entity in entities]
    watcher.wait_for(lambda ms: set(topics) <= {m.topic for m in ms})

    assert sorted({m.topic for m in watcher.messages}) == sorted(topics)
    for topic in topics:
        config = json.loads(watcher.on(topic)[0].payload.decode("utf-8"))
        assert discovery_errors(topic.split("/")[1], config) == [], topic
    unique_ids = {json.loads(watcher.on(topic)[0].payload.decode("utf-8"))["unique_id"] for topic in topics}
    assert len(unique_ids) == len(topics)


def test_the_discovery_schema_check_rejects_what_home_assistant_would_refuse_or_drop():
    fire = {"state_topic": BASE + "/gate/fire", "device_class": "safety", "device": {"identifiers": ["x"]}}
    assert discovery_errors("binary_sensor", fire) == []
    assert discovery_errors("binary_sensor", dict(fire, device_class="fire"))  # no such class
    assert discovery_errors("binary_sensor", dict(fire, state_topic="a/+/fire"))  # a wildcard is not a state topic
    assert discovery_errors("binary_sensor", dict(fire, snapshot_topic="x"))  # dropped without a word
    assert discovery_errors("binary_sensor", dict(fire, device={"name": "no identifiers"}))
    image = {"image_topic": BASE + "/gate/snapshot", "content_type": "image/jpeg"}
    assert discovery_errors("image", image) == []
    assert discovery_errors("image", {"content_type": "image/jpeg"})  # neither image_topic nor url_topic
    assert discovery_errors("image", dict(image, url_topic=BASE + "/gate/url"))  # both


def test_the_snapshot_image_entity_shows_the_last_raised_alerts_jpeg_and_stays_after_a_stop(
        broker, recorder, mqtt_sink, outbox, make_alert):
    sink = mqtt_sink(broker.port, include_snapshot=True)
    alert = make_alert(11)
    sink.deliver(pending_event(outbox, alert))
    sink.close()

    late = recorder(broker.port)
    topic = "homeassistant/image/dev-1_cam1_snapshot/config"
    late.wait_for(lambda ms: late.on(topic) and late.on(BASE + "/cam1/snapshot"))
    config = json.loads(late.on(topic)[0].payload.decode("utf-8"))
    assert (config["image_topic"], config["content_type"]) == (BASE + "/cam1/snapshot", "image/jpeg")
    assert "availability_topic" not in config  # the picture is history: viewable while firedetd is stopped
    assert config["device"]["identifiers"] == ["firedetd_dev-1_cam1"]  # on the camera's device, beside its sensors
    assert [(m.payload, m.retain) for m in late.on(BASE + "/cam1/snapshot")] == [(alert.snapshot_jpeg, True)]


def test_without_include_snapshot_no_image_entity_is_announced(broker, recorder, mqtt_sink, outbox, make_alert):
    watcher = recorder(broker.port)
    sink = mqtt_sink(broker.port)
    sink.deliver(pending_event(outbox, make_alert(12)))
    watcher.wait_for(lambda ms: watcher.on("homeassistant/binary_sensor/dev-1_cam1_connected/config")
                     and watcher.on(BASE + "/cam1/fire"))
    assert not [m for m in watcher.messages if m.topic.startswith("homeassistant/image/")]


def test_the_connectivity_sensor_follows_the_cameras_source_up_and_down(broker, recorder, mqtt_sink):
    watcher = recorder(broker.port)
    sink = mqtt_sink(broker.port)
    sink.publish_status({"gate": {"fire": False, "smoke": False, "fps": 5.0, "up": True}})
    watcher.wait_for(lambda ms: watcher.on(BASE + "/gate/connected"))  # connected: each change goes out now
    for up in (True, False, False, True):
        sink.publish_status({"gate": {"fire": False, "smoke": False, "fps": 5.0 if up else 0.0, "up": up}})

    watcher.wait_for(lambda ms: len(watcher.payloads(BASE + "/gate/connected")) >= 3
                     and watcher.on("homeassistant/binary_sensor/dev-1_gate_connected/config"))
    assert watcher.payloads(BASE + "/gate/connected") == [b"ON", b"OFF", b"ON"]  # changes only
    late = recorder(broker.port, [BASE + "/gate/connected"])
    assert late.wait_for(lambda ms: [(m.payload, m.retain) for m in ms]) == [(b"ON", True)]
    config = json.loads(watcher.on("homeassistant/binary_sensor/dev-1_gate_connected/config")[0].payload)
    assert (config["device_class"], config["state_topic"], config["entity_category"]) == (
        "connectivity", BASE + "/gate/connected", "diagnostic")
    assert config["availability_topic"] == BASE + "/availability"
