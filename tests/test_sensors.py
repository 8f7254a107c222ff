"""firedetd/sensors.py: reading sensor payloads, the fusion rule (pure functions), and a real mosquitto on 127.0.0.1
feeding a real SensorInput whose alarms let the real postprocessor raise on image scores just under `on`.

The integration test drives the readings' age with a settable clock instead of sleeping past max_age_s."""

import json
import time

import numpy as np
import pytest

from firedetd.alerts.outbox import Outbox, OutboxWriter
from firedetd.config import DetectionConfig, SensorBrokerConfig, SensorConfig, ThresholdConfig
from firedetd.errors import ConfigError
from firedetd.metrics import Metrics
from firedetd.postprocess import CameraTracker, Postprocessor
from firedetd.sensors import Reading, fuse_thresholds, is_alarming, parse_reading, sensor_boosts
from firedetd.types import RAISED, Frame, Prediction

S = 1000000000
LABELS = ("fire", "smoke", "none")
JUST_UNDER = (0.55, 0.05, 0.40)  # fire just under on = 0.6
NONE = (0.02, 0.03, 0.95)
NOW = 1000 * S


def sensor(**kw):
    base = dict(name="heat", topic="home/kitchen/climate", kind="temperature", threshold=50.0, boost=0.15,
                max_age_s=60.0)
    base.update(kw)
    return SensorConfig(**base)


def detection(sensors=()):
    return DetectionConfig(smoothing_alpha=1.0, fire=ThresholdConfig(on=0.6, off=0.35, raise_frames=3),
                           smoke=ThresholdConfig(on=0.6, off=0.35, raise_frames=3), sensors=tuple(sensors))


def fresh(value, age_s=1.0):
    return Reading(value, NOW - int(age_s * S))


# ---- payloads

@pytest.mark.parametrize("payload, key, value", [
    (b"21.5", "", 21.5), (b" 70 ", "", 70.0), (b"ON", "", 1.0), (b"off", "", 0.0), (b"true", "", 1.0),
    (b'{"temperature": 64.2, "battery": 90}', "temperature", 64.2),
    (b'{"air": {"co_ppm": 35}}', "air.co_ppm", 35.0), (b'{"smoke": true}', "smoke", 1.0),
    (b'{"state": "ON"}', "state", 1.0),
])
def test_readings_parse_from_numbers_words_and_json_keys(payload, key, value):
    assert parse_reading(payload, key) == value


@pytest.mark.parametrize("payload, key, message", [
    (b"warm", "", "not a number"), (b"nan", "", "not a finite number"), (b"{oops", "temperature", "not JSON"),
    (b'{"humidity": 40}', "temperature", "no key 'temperature'"), (b'{"t": [1]}', "t", "not a number"),
])
def test_unreadable_payloads_raise_value_errors_saying_why(payload, key, message):
    with pytest.raises(ValueError, match=message):
        parse_reading(payload, key)


# ---- the fusion rule

def test_a_fresh_reading_at_or_above_the_threshold_alarms_a_stale_or_low_one_does_not():
    heat = sensor(max_age_s=60)
    assert is_alarming(heat, fresh(50.0), NOW) and is_alarming(heat, fresh(80.0, age_s=59), NOW)
    assert not is_alarming(heat, fresh(49.9), NOW)
    assert not is_alarming(heat, fresh(80.0, age_s=61), NOW)
    assert not is_alarming(heat, Reading(80.0, None), NOW)  # retained: age unknown
    assert not is_alarming(heat, None, NOW)


def test_a_smoke_detector_alarms_when_on_without_a_threshold():
    detector = sensor(kind="smoke_detector", threshold=None)
    assert is_alarming(detector, fresh(1.0), NOW) and not is_alarming(detector, fresh(0.0), NOW)


def test_boosts_apply_to_the_covered_cameras_and_kinds_and_the_largest_wins():
    sensors = [sensor(name="heat", cameras=("kitchen",), kinds=("fire",), boost=0.1),
               sensor(name="gas", kind="gas", threshold=30.0, boost=0.2),
               sensor(name="cold", boost=0.4)]
    readings = {"heat": fresh(70.0), "gas": fresh(45.0), "cold": fresh(10.0)}
    assert sensor_boosts(sensors, readings, "kitchen", NOW) == {"fire": 0.2, "smoke": 0.2}
    assert sensor_boosts(sensors[:1], readings, "kitchen", NOW) == {"fire": 0.1}
    assert sensor_boosts(sensors[:1], readings, "garage", NOW) == {}
    assert sensor_boosts(sensors, {"gas": fresh(45.0, age_s=3600)}, "kitchen", NOW) == {}


def test_fusion_lowers_on_never_below_off_and_leaves_the_rest():
    det = detection()
    fused = fuse_thresholds(det, {"fire": 0.15})
    assert fused.fire.on == pytest.approx(0.45) and fused.fire.off == 0.35 and fused.fire.raise_frames == 3
    assert fused.smoke == det.smoke
    assert fuse_thresholds(det, {"smoke": 0.5}).smoke.on == 0.35  # floored at off
    assert fuse_thresholds(det, {}) is det


def run(tracker, probs, det, frames=6):
    return [e for i in range(frames) for e in tracker.update(probs, i * S, det)]


def test_with_a_fused_threshold_a_score_just_under_on_raises_and_nothing_raises_without_the_image():
    det = detection([sensor()])
    fused = fuse_thresholds(det, sensor_boosts(det.sensors, {"heat": fresh(70.0)}, "kitchen", NOW))
    assert run(CameraTracker("kitchen", LABELS), JUST_UNDER, det) == []
    assert run(CameraTracker("kitchen", LABELS), JUST_UNDER, fused) == [("fire", RAISED)]
    assert run(CameraTracker("kitchen", LABELS), NONE, fused) == []  # a sensor alone never raises


@pytest.mark.parametrize("raw, message", [
    ({"name": "t", "topic": "a/+/b", "threshold": 1}, "detection.sensors[0].topic"),
    ({"name": "t", "topic": "a/b"}, "detection.sensors[0].threshold: required"),
    ({"name": "t", "topic": "a/b", "threshold": 1, "cameras": ["nope"]}, "detection.sensors[0].cameras"),
])
def test_sensor_config_errors_name_the_key(make_config, raw, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("+", r"\+")):
        make_config({"cameras": [{"name": "kitchen", "source": "test://"}], "alerts": {"mqtt": {}},
                     "detection": {"sensors": [raw]}})


def test_sensors_need_a_broker_of_their_own_or_the_alerts_one(make_config):
    sensors = {"sensors": [{"name": "t", "topic": "a/b", "threshold": 1}]}
    with pytest.raises(ConfigError, match="set sensors_mqtt or alerts.mqtt"):
        make_config({"detection": sensors})
    config = make_config({"detection": sensors, "sensors_mqtt": {"host": "192.0.2.1", "port": 8883, "tls": True}})
    assert (config.sensors_mqtt.port, config.detection.sensors[0].alarm_threshold) == (8883, 1.0)


# ---- with a real broker

class Clock(object):
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


def publish(port, topic, payload, retain=False):
    """One message from a separate real client, as a sensor's bridge would send it."""
    import paho.mqtt.publish

    paho.mqtt.publish.single(topic, payload, qos=1, retain=retain, hostname="127.0.0.1", port=port)


def feed(post, camera, probs, count, first_seq):
    for i in range(count):
        seq = first_seq + i
        frame = Frame(camera, seq, seq * S // 10, 0, np.zeros((32, 32, 3), np.uint8))
        post.handle(Prediction(frame, probs, 1.0, decided_ns=0))


def wait_for(condition, timeout=20):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def start_sensors(broker):
    """A started SensorInput on the test broker, stopped at the end."""
    from firedetd.sensors import SensorInput

    started = []

    def start(sensors, device, clock=None):
        config = SensorBrokerConfig(host="127.0.0.1", port=broker.port)
        kwargs = {"clock": clock} if clock is not None else {}
        started.append(SensorInput(config, "", sensors, device, **kwargs).start())
        assert started[-1].connection.wait_connected(20)
        return started[-1]

    yield start
    for sensor_input in started:
        sensor_input.stop()


def test_a_sensor_reading_over_mqtt_lets_the_postprocessor_raise_only_while_it_is_fresh(broker, start_sensors,
                                                                                      tmp_path, spec):
    heat = sensor(value_key="temperature", cameras=("kitchen", "hall"), max_age_s=60)
    clock = Clock()
    sensors = start_sensors([heat], "dev-1", clock)
    outbox = Outbox(str(tmp_path / "outbox.sqlite3"))
    post = Postprocessor(spec, detection([heat]), None, OutboxWriter(outbox, ["hook"]), Metrics(),
                         sensor_view=sensors)
    try:
        feed(post, "kitchen", JUST_UNDER, 6, 0)
        assert outbox.recent() == []  # no reading: the normal threshold holds

        publish(broker.port, heat.topic, json.dumps({"temperature": 71.5, "humidity": 30}))
        wait_for(lambda: "heat" in sensors.readings.snapshot())
        feed(post, "garage", JUST_UNDER, 6, 0)  # not covered by the sensor
        feed(post, "kitchen", JUST_UNDER, 6, 6)
        raised = [(e["camera"], e["kind"], e["state"]) for e in outbox.recent()]
        assert raised == [("kitchen", "fire", RAISED)]
        assert sensors.readings.snapshot()["heat"].value == 71.5

        clock.now += 61 * S  # the reading is now older than max_age_s
        feed(post, "hall", JUST_UNDER, 6, 0)
        assert len(outbox.recent()) == 1
        rows = {(r[0], r[4][0]): r[5] for r in sensors.metric_rows()}
        assert rows[("firedetd_sensor_alarm", "heat")] == 0 and rows[("firedetd_sensor_value", "heat")] == 71.5
    finally:
        outbox.close()


def test_a_retained_reading_found_at_subscription_is_kept_but_never_fresh(broker, start_sensors):
    detector = sensor(name="detector", topic="home/hall/smoke", kind="smoke_detector", threshold=None)
    publish(broker.port, detector.topic, "ON", retain=True)
    sensors = start_sensors([detector], "dev-2")

    wait_for(lambda: "detector" in sensors.readings.snapshot())
    assert sensors.readings.snapshot()["detector"] == Reading(1.0, None)
    assert sensors.adjust(detection([detector]), "hall") == detection([detector])

    publish(broker.port, detector.topic, "garbage")
    publish(broker.port, detector.topic, "ON")  # live: fresh
    wait_for(lambda: sensors.readings.snapshot()["detector"].received_ns is not None)
    assert sensors.readings.errors == {"detector": 1}
    assert sensors.adjust(detection([detector]), "hall").smoke.on == pytest.approx(0.45)


def test_a_reload_moves_the_subscription_to_the_new_topics(broker, start_sensors):
    old, new = sensor(name="old", topic="home/old"), sensor(name="new", topic="home/new")
    sensors = start_sensors([old], "dev-3")
    publish(broker.port, new.topic, "20", retain=True)

    sensors.set_sensors([new])
    # the retained value arriving proves the new subscription (sent after the unsubscribe) is in place
    wait_for(lambda: "new" in sensors.readings.snapshot())
    publish(broker.port, old.topic, "99")
    publish(broker.port, new.topic, "21")
    wait_for(lambda: sensors.readings.received.get("new") == 2)

    assert "old" not in sensors.readings.snapshot()
    assert sensors.readings.snapshot()["new"].value == 21.0


def test_start_sensor_input_reads_the_sensors_broker_or_the_alerts_one_and_needs_the_password(make_config):
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (the mqtt extra)")
    from firedetd.sensors import start_sensor_input

    sensors = {"sensors": [{"name": "t", "topic": "a/b", "threshold": 1}]}
    assert start_sensor_input(make_config({"alerts": {"mqtt": {}}})) is None
    own = make_config({"detection": sensors, "alerts": {"mqtt": {"port": 1884}}, "sensors_mqtt": {"port": 1885}})
    shared = make_config({"detection": sensors, "alerts": {"mqtt": {"port": 1884, "username": "u",
                                                                        "password_env": "MQTT_PW"}}})
    with pytest.raises(ConfigError, match="alerts.mqtt.password_env: environment variable MQTT_PW is not set"):
        start_sensor_input(shared, environ={})
    for config, address in ((own, "127.0.0.1:1885"), (shared, "127.0.0.1:1884")):
        sensor_input = start_sensor_input(config, environ={"MQTT_PW": "secret"})
        try:
            assert sensor_input.connection.address == address
            assert "secret" not in repr(sensor_input.connection)
        finally:
            sensor_input.stop()
