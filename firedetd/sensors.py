"""External sensors (a thermometer, a gas sensor, a smoke detector) read over MQTT and fused with the image
score in the postprocessor (docs/sensors.md).

The rule: while a sensor's reading is fresh (arrived within its max_age_s) and at or above its threshold, the
`on` threshold of the alert kinds it supports, on the cameras it covers, is lowered by its `boost` (the
largest boost when several alarm; never below `off`). Everything else stays: the smoothed image score must
still reach the lowered `on` for raise_frames frames, so a sensor alone never raises an alert, it only lets
the camera raise one sooner on weaker evidence; clearing stays as it was; a stale, silent or unreadable sensor
has no effect, so a dead sensor leaves the camera as it was without sensors.

A retained reading handed over at subscription has no known age: it is shown in the metrics but is not fresh;
the next reading the sensor publishes is.

Threads: paho's network thread writes readings (`SensorReadings`, locked); the postprocessor reads them through
`SensorInput.adjust` once per prediction (a lock, a dict lookup per sensor, and a new DetectionConfig only while
a sensor alarms).
"""

import json
import logging
import math
import os
import threading
from collections import namedtuple
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence

from .clock import monotonic_ns
from .mqttclient import BrokerConnection, topic_segment

log = logging.getLogger(__name__)

ALERT_KINDS = ("fire", "smoke")
_WORDS = {"on": 1.0, "off": 0.0, "true": 1.0, "false": 0.0}

# value: the reading as a number; received_ns: monotonic arrival time, or None when its age is unknown (retained)
Reading = namedtuple("Reading", ["value", "received_ns"])


def parse_reading(payload: bytes, value_key: str = "") -> float:
    """A sensor payload as a number: a number, ON/OFF or true/false, or with `value_key` the value at that
    (dotted) key of a JSON object. Raises ValueError naming what is wrong."""
    text = payload.decode("utf-8", "replace").strip()
    value = text
    if value_key:
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError("not JSON: %r" % text[:60])
        for key in value_key.split("."):
            if not isinstance(value, dict) or key not in value:
                raise ValueError("no key %r in %r" % (value_key, text[:60]))
            value = value[key]
    number = _as_number(value)
    if math.isnan(number) or math.isinf(number):
        raise ValueError("not a finite number: %r" % (value,))
    return number


def _as_number(value):
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _WORDS:
            return _WORDS[word]
        try:
            return float(word)
        except ValueError:
            pass
    raise ValueError("not a number, ON/OFF or true/false: %r" % (value,))


def is_alarming(sensor, reading: Optional[Reading], now_ns: int) -> bool:
    """True when `reading` is fresh (known age, at most sensor.max_age_s) and at or above the sensor's threshold."""
    if reading is None or reading.received_ns is None:
        return False
    if now_ns - reading.received_ns > sensor.max_age_s * 1e9:
        return False
    return reading.value >= sensor.alarm_threshold


def sensor_boosts(sensors: Sequence, readings: Dict[str, Reading], camera: str, now_ns: int) -> Dict[str, float]:
    """{alert kind: how much lower its `on` threshold is on `camera` now}: the largest boost among the sensors
    covering the camera and the kind that alarm now. Boosts do not add up, so the lowest `on` is known ahead."""
    boosts: Dict[str, float] = {}
    for sensor in sensors:
        if sensor.cameras and camera not in sensor.cameras:
            continue
        if sensor.boost <= 0 or not is_alarming(sensor, readings.get(sensor.name), now_ns):
            continue
        for kind in sensor.kinds or ALERT_KINDS:
            boosts[kind] = max(boosts.get(kind, 0.0), sensor.boost)
    return boosts


def fuse_thresholds(detection, boosts: Dict[str, float]):
    """`detection` (DetectionConfig) with the `on` threshold of each boosted kind lowered by its boost, never
    below that kind's `off` (hysteresis stays valid); the same object when nothing is boosted."""
    changes = {}
    for kind, boost in boosts.items():
        if kind not in ALERT_KINDS:
            continue
        thresholds = detection.thresholds(kind)
        changes[kind] = replace(thresholds, on=max(thresholds.off, thresholds.on - boost))
    return replace(detection, **changes) if changes else detection


class SensorReadings(object):
    """The latest reading of each sensor by name; thread-safe."""

    def __init__(self, clock: Callable[[], int] = monotonic_ns) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._latest: Dict[str, Reading] = {}
        self.received: Dict[str, int] = {}
        self.errors: Dict[str, int] = {}

    def record(self, name: str, value: float, age_known: bool = True) -> Reading:
        """Keep `value` as the sensor's latest reading, stamped now (or with no age: a retained message)."""
        reading = Reading(value, self.clock() if age_known else None)
        with self._lock:
            self._latest[name] = reading
            self.received[name] = self.received.get(name, 0) + 1
        return reading

    def record_error(self, name: str) -> int:
        """Count an unreadable payload; return how many so far."""
        with self._lock:
            self.errors[name] = self.errors.get(name, 0) + 1
            return self.errors[name]

    def snapshot(self) -> Dict[str, Reading]:
        """A copy of the latest readings."""
        with self._lock:
            return dict(self._latest)


class SensorInput(object):
    """The sensors of `detection.sensors`: subscribes to their topics and answers the postprocessor's question
    "what thresholds apply to this camera now" (`adjust`). Start with start(); stop() at shutdown."""

    def __init__(self, broker_config, password: str, sensors: Sequence, device_id: str, where: str = "sensors_mqtt",
                 clock: Callable[[], int] = monotonic_ns) -> None:
        self.readings = SensorReadings(clock)
        self.clock = clock
        self._lock = threading.Lock()
        self._sensors: List = list(sensors)
        self._alarming: Dict[str, bool] = {}
        client_id = "firedetd-%s-sensors" % topic_segment(device_id)
        self.connection = BrokerConnection(broker_config, password, client_id, where,
                                           on_connected=self._subscribe_all, on_message=self._on_message,
                                           keepalive_s=broker_config.keepalive_s)

    def start(self) -> "SensorInput":
        """Connect and subscribe in the background."""
        self.connection.start()
        return self

    def stop(self) -> None:
        """Disconnect."""
        self.connection.stop()

    def adjust(self, detection, camera: str):
        """The DetectionConfig to apply to `camera`'s next prediction: `detection` with the thresholds lowered by
        the sensors alarming now (see the module docstring)."""
        if not detection.sensors:
            return detection
        boosts = sensor_boosts(detection.sensors, self.readings.snapshot(), camera, self.clock())
        return fuse_thresholds(detection, boosts) if boosts else detection

    def set_sensors(self, sensors: Sequence) -> None:
        """Follow a reloaded config: subscribe to new topics, drop the ones no sensor reads any more."""
        with self._lock:
            old = {s.topic for s in self._sensors}
            self._sensors = list(sensors)
            new = {s.topic for s in self._sensors}
        if self.connection.connected.is_set():
            self.connection.unsubscribe(sorted(old - new))
            self.connection.subscribe([(topic, 1) for topic in sorted(new - old)])

    def metric_rows(self) -> List[tuple]:
        """Scrape-time rows for Metrics.watch: each sensor's reading, age, alarm, readings and errors."""
        now = self.clock()
        readings = self.readings.snapshot()
        rows = []
        with self._lock:
            sensors = list(self._sensors)
        for sensor in sensors:
            reading = readings.get(sensor.name)
            labels = [sensor.name]
            if reading is not None:
                rows.append(("firedetd_sensor_value", "Latest reading of an external sensor", "gauge", ["sensor"],
                             labels, reading.value))
            if reading is not None and reading.received_ns is not None:
                rows.append(("firedetd_sensor_age_seconds", "Seconds since the sensor's latest reading arrived",
                             "gauge", ["sensor"], labels, (now - reading.received_ns) / 1e9))
            rows.append(("firedetd_sensor_alarm", "1 while the sensor's fresh reading is at or above its threshold",
                         "gauge", ["sensor"], labels, 1 if is_alarming(sensor, reading, now) else 0))
            rows.append(("firedetd_sensor_readings", "Readings received from the sensor", "counter", ["sensor"],
                         labels, self.readings.received.get(sensor.name, 0)))
            rows.append(("firedetd_sensor_errors", "Sensor payloads that could not be read", "counter", ["sensor"],
                         labels, self.readings.errors.get(sensor.name, 0)))
        return rows

    # ---- paho's thread

    def _subscribe_all(self):
        with self._lock:
            topics = sorted({s.topic for s in self._sensors})
        self.connection.subscribe([(topic, 1) for topic in topics])

    def _on_message(self, topic, payload, retained):
        with self._lock:
            sensors = [s for s in self._sensors if s.topic == topic]
        for sensor in sensors:
            try:
                value = parse_reading(payload, sensor.value_key)
            except ValueError as e:
                if self.readings.record_error(sensor.name) == 1:  # once per sensor: a chatty sensor floods logs
                    log.warning("sensor %s: unreadable payload on %s: %s", sensor.name, topic, e)
                continue
            reading = self.readings.record(sensor.name, value, age_known=not retained)
            self._log_alarm_change(sensor, reading)

    def _log_alarm_change(self, sensor, reading):
        alarming = is_alarming(sensor, reading, self.clock())
        if alarming == self._alarming.get(sensor.name, False):
            return
        self._alarming[sensor.name] = alarming
        if alarming:
            log.info("sensor %s: %g >= %g: alarm; %s threshold of %s lowered by %.2f", sensor.name, reading.value,
                     sensor.alarm_threshold, "/".join(sensor.kinds or ALERT_KINDS),
                     ", ".join(sensor.cameras) or "every camera", sensor.boost)
        else:
            log.info("sensor %s: %g: no alarm", sensor.name, reading.value)


def start_sensor_input(config, metrics=None, environ=None) -> Optional[SensorInput]:
    """A started SensorInput for `config.detection.sensors` (with its metrics watched), or None without sensors."""
    sensors = config.detection.sensors
    if not sensors:
        return None
    where = "sensors_mqtt" if config.sensors_mqtt is not None else "alerts.mqtt"
    broker = config.sensors_mqtt if config.sensors_mqtt is not None else config.alerts.mqtt
    password = broker.resolve_password(where, os.environ if environ is None else environ)
    sensor_input = SensorInput(broker, password, sensors, config.device_id, where)
    if metrics is not None:
        metrics.watch(sensor_input.metric_rows)
    return sensor_input.start()
