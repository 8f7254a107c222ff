"""The MQTT sink: alert events from the durable outbox, each camera's fire/smoke state and FPS, the daemon's
availability, and Home Assistant MQTT discovery (docs/mqtt.md).

Topics (<prefix>/<device> = alerts.mqtt.topic_prefix / device_id; characters outside [A-Za-z0-9_.-] in a name
become "_"):
    <prefix>/<device>/availability        "online" / "offline", retained; "offline" is also the last will
    <prefix>/<device>/<camera>/alert      one JSON event (the webhook body without the snapshot), not retained
    <prefix>/<device>/<camera>/snapshot   JPEG of a raised or escalated alert, just before its event (include_snapshot),
                                          retained
    <prefix>/<device>/<camera>/fire       "ON" / "OFF", retained (and .../smoke)
    <prefix>/<device>/<camera>/problem    "ON" while the camera sends no usable picture (black, covered, frozen...),
                                          retained; .../problem/attributes: {"reason", "text"}, retained
    <prefix>/<device>/<camera>/connected  "ON" while the camera's source delivers, "OFF" while it is down, retained
    <prefix>/<device>/<camera>/fps        decided frames per second, every status_interval_s, not retained
    <discovery_prefix>/binary_sensor/<device>_<camera>_fire/config   and ..._smoke, ..._problem, ..._connected,
    sensor/..._fps, and image/..._snapshot (with include_snapshot: the last alert's picture)

Delivery: `deliver` waits (up to timeout_s) for a connection and, with QoS 1 or 2, for the broker's
acknowledgement of the event (and its snapshot); anything else raises a retryable SinkError, so the outbox
keeps the event and retries it in order. While disconnected nothing is handed to paho, so an outage of a day
does not pile up copies in memory: the outbox is the only queue. A retry of an event still unacknowledged on
the broker waits for paho's copy (paho resends it after a reconnect) before sending a new one. Delivery is
at-least-once: a consumer drops repeats by the event's "id". QoS 0 has no acknowledgement: an event counts as
delivered once paho wrote it to the socket, and a connection lost at that moment loses it.

State topics show the detector's state now: set by each delivered event (raised/ongoing/escalated: ON; cleared:
OFF for both kinds, since a camera has one incident at a time) and
by `publish_status`, which the daemon calls with the live state, so an old event replayed after an outage, or
an incident left open by a stopped run, does not leave a camera ON. A clean stop (`close`) removes the retained
states and says "offline": a daemon that is gone shows no state at all, neither a fire that may still burn as
OFF nor an old one as ON, and Home Assistant reads its entities as unavailable.
"""

import json
import logging
import re
import threading
import time
from typing import Dict, List, Optional, Sequence

from .. import __version__
from ..errors import SinkError
from ..mqttclient import BrokerConnection, topic_segment
from ..signal_quality import PROBLEMS
from . import Sink
from .payload import event_fields

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"
ON = "ON"
OFF = "OFF"
KINDS = ("fire", "smoke")
SNAPSHOT_CONTENT_TYPE = "image/jpeg"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")  # Home Assistant's node and object ids allow no dots
DOWN_GRACE_S = 15.0  # a reconnect after a broker restart takes a few seconds; longer is a problem worth saying
_MQTT_ERR_AGAIN = -1  # paho: queued behind the in-flight window; still tracked
# fire: Home Assistant has no fire class; "safety" (on = unsafe) is the generic alarm. "heat" means a measured
# temperature and "problem" a fault of the device itself; "smoke" is kept for the smoke entity
DEVICE_CLASSES = {"fire": "safety", "smoke": "smoke"}
ICONS = {"fire": "mdi:fire", "smoke": "mdi:smoke"}


def object_id(*parts: str) -> str:
    """A Home Assistant discovery object id / unique id from `parts`."""
    return "_".join(_ID_UNSAFE.sub("_", p) for p in parts)


def alert_state(event: dict) -> str:
    """The state topic value an event leaves: ON while raised or ongoing, OFF once cleared."""
    return OFF if event["state"] == "cleared" else ON


class MqttSink(Sink):
    """Publishes alert events (`alerts.mqtt`) with one paho client; see the module docstring for topics."""

    def __init__(self, name: str, config, device_id: str, password: str, cameras: Sequence[str] = ()) -> None:
        self.name = name
        self.config = config
        self.device_id = device_id
        self.base = "/".join(p for p in (config.topic_prefix.strip("/"), topic_segment(device_id)) if p)
        self.availability_topic = self.base + "/availability"
        self._lock = threading.Lock()
        self._cameras: List[str] = []
        self._states: Dict[tuple, str] = {}  # (camera, kind) -> the value last set
        self._unacked = None  # (event_key, [MQTTMessageInfo]) of the last attempt the broker did not acknowledge
        self._last_fps_publish: Optional[float] = None
        self.connection = BrokerConnection(config, password, "firedetd-%s-alerts" % topic_segment(device_id),
                                           "alerts.mqtt", will=(self.availability_topic, OFFLINE, 1, True),
                                           on_connected=self._on_connected, keepalive_s=config.keepalive_s)
        for camera in cameras:
            self._learn_camera(camera)

    def __repr__(self):
        return "MqttSink(%r, %s)" % (self.name, self.connection.address)  # never the password

    def topic(self, camera: str, leaf: str) -> str:
        """`<prefix>/<device>/<camera>/<leaf>`."""
        return "%s/%s/%s" % (self.base, topic_segment(camera), leaf)

    # ---- alert events (the delivery thread)

    def deliver(self, event: dict) -> None:
        """Publish one outbox event and wait for the broker's acknowledgement; raise a retryable SinkError if
        there is no connection or no acknowledgement within timeout_s."""
        camera = event["camera"]
        self._learn_camera(camera)
        deadline = time.monotonic() + self.config.timeout_s
        if not self.connection.wait_connected(self.config.timeout_s):
            raise SinkError("%s sink: not connected to broker %s%s" % (
                self.name, self.connection.address, self._connect_hint()), True, "connection")
        reused, infos = self._publish_event(event)
        try:
            for info in infos:
                self._wait_acknowledged(info, deadline, event)
        except SinkError:
            if reused:  # paho's copy got no answer either: the next attempt sends a fresh one
                self._unacked = None
            raise
        self._unacked = None
        state = alert_state(event)
        for kind in (KINDS if state == OFF else (event["kind"],)):
            self._set_state(camera, kind, state)

    def encode(self, event: dict) -> bytes:
        """The JSON payload of one outbox event: the webhook body's fields without the snapshot."""
        body = event_fields(event, self.device_id)
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def _publish_event(self, event):
        """(reused, infos): paho's copies of an earlier attempt of this event still awaiting an acknowledgement,
        or the snapshot and event handed to paho now."""
        unacked = self._unacked
        if unacked is not None and unacked[0] == event["event_key"]:
            return True, unacked[1]
        qos = self.config.qos
        infos = []
        snapshot = event.get("snapshot_jpeg")
        if snapshot and self.config.include_snapshot:
            infos.append(self.connection.publish(self.topic(event["camera"], "snapshot"), snapshot, qos, True))
        infos.append(self.connection.publish(self.topic(event["camera"], "alert"), self.encode(event), qos, False))
        if all(info.rc in (0, _MQTT_ERR_AGAIN) for info in infos):
            self._unacked = (event["event_key"], infos)
        return False, infos

    def _wait_acknowledged(self, info, deadline, event):
        where = "%s sink: %s on broker %s" % (self.name, event["event_key"], self.connection.address)
        try:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if info.is_published():
                return
        except (RuntimeError, ValueError) as e:  # not connected any more, or paho's queue is full
            raise SinkError("%s: not sent: %s" % (where, e), True, "connection") from e
        raise SinkError("%s: no acknowledgement within %.1f s (QoS %d)" % (where, self.config.timeout_s,
                                                                           self.config.qos), True, "timeout")

    def _connect_hint(self):
        failures = self.connection.connect_failures
        return " (failed connection attempts so far: %d)" % failures if failures else ""

    # ---- live status (the daemon's loop)

    def publish_status(self, cameras: Dict[str, dict]) -> None:
        """Publish the live state of each camera, {camera: {"fire": bool, "smoke": bool, "fps": float or None,
        "problem": reason or None, "up": bool}}: a change at once, the FPS every status_interval_s. Never blocks;
        skipped while disconnected (the states are sent again on reconnection)."""
        for camera in cameras:
            self._learn_camera(camera)
        self.connection.start()
        for camera, values in cameras.items():
            for kind in KINDS:
                if kind in values:
                    self._set_state(camera, kind, ON if values[kind] else OFF)
            if "problem" in values:
                self._set_problem(camera, values["problem"])
            if "up" in values:
                self._set_state(camera, "connected", ON if values["up"] else OFF)
        now = time.monotonic()
        if not self.connection.connected.is_set():
            return
        if self._last_fps_publish is not None and now - self._last_fps_publish < self.config.status_interval_s:
            return
        rates = [(camera, values["fps"]) for camera, values in cameras.items() if values.get("fps") is not None]
        if not rates:
            return  # no rate measured yet: the first one goes out as soon as there is one, not an interval later
        self._last_fps_publish = now
        for camera, fps in rates:
            self.connection.publish(self.topic(camera, "fps"), "%.2f" % fps, 0, False)

    def _set_state(self, camera, kind, value):
        with self._lock:
            changed = self._states.get((camera, kind)) != value
            self._states[(camera, kind)] = value
        if changed and self.connection.connected.is_set():
            self.connection.publish(self.topic(camera, kind), value, self.config.qos, True)

    def _set_problem(self, camera, reason):
        """The camera's picture problem: ON with its reason and words, or OFF."""
        self._set_state(camera, "problem", ON if reason else OFF)
        attributes = json.dumps({"reason": reason or "", "text": PROBLEMS.get(reason, "")}, sort_keys=True)
        self._set_state(camera, "problem/attributes", attributes)

    # ---- connection, discovery

    def _learn_camera(self, camera):
        with self._lock:
            if camera in self._cameras:
                return
            self._cameras.append(camera)
        if self.connection.connected.is_set():
            self._publish_discovery(camera)

    def _on_connected(self):
        """After every (re)connection (paho's thread): online, discovery, and the states the broker may have lost."""
        self.connection.publish(self.availability_topic, ONLINE, 1, True)
        with self._lock:
            cameras = list(self._cameras)
            states = dict(self._states)
        for camera in cameras:
            self._publish_discovery(camera)
        for (camera, kind), value in sorted(states.items()):
            self.connection.publish(self.topic(camera, kind), value, self.config.qos, True)

    def _publish_discovery(self, camera):
        if not self.config.discovery:
            return
        for component, entity, payload in self.discovery_configs(camera):
            topic = "%s/%s/%s/config" % (self.config.discovery_prefix.strip("/"), component, entity)
            self.connection.publish(topic, json.dumps(payload, sort_keys=True), 1, True)

    def discovery_configs(self, camera: str) -> List[tuple]:
        """(component, object id, config) of the Home Assistant entities of one camera."""
        device = {"identifiers": [object_id("firedetd", self.device_id, camera)],
                  "name": "%s %s" % (self.device_id, camera), "model": "firedetd camera",
                  "manufacturer": "firedetd", "sw_version": __version__}
        common = {"availability_topic": self.availability_topic, "payload_available": ONLINE.decode(),
                  "payload_not_available": OFFLINE.decode(), "device": device}
        configs = []
        for kind in KINDS:
            entity = object_id(self.device_id, camera, kind)
            config = dict(common, name=kind.capitalize(), unique_id="firedetd_" + entity,
                          state_topic=self.topic(camera, kind), payload_on=ON, payload_off=OFF,
                          device_class=DEVICE_CLASSES[kind], icon=ICONS[kind])
            configs.append(("binary_sensor", entity, config))
        entity = object_id(self.device_id, camera, "problem")
        configs.append(("binary_sensor", entity, dict(
            common, name="Picture problem", unique_id="firedetd_" + entity, state_topic=self.topic(camera, "problem"),
            payload_on=ON, payload_off=OFF, device_class="problem", entity_category="diagnostic",
            json_attributes_topic=self.topic(camera, "problem/attributes"))))
        entity = object_id(self.device_id, camera, "connected")
        configs.append(("binary_sensor", entity, dict(
            common, name="Camera connected", unique_id="firedetd_" + entity,
            state_topic=self.topic(camera, "connected"), payload_on=ON, payload_off=OFF,
            device_class="connectivity", entity_category="diagnostic")))
        if self.config.include_snapshot:
            # no availability: the last alert's picture stays worth looking at while firedetd is stopped
            entity = object_id(self.device_id, camera, "snapshot")
            configs.append(("image", entity, dict(
                device=device, name="Last alert snapshot", unique_id="firedetd_" + entity,
                image_topic=self.topic(camera, "snapshot"), content_type=SNAPSHOT_CONTENT_TYPE)))
        entity = object_id(self.device_id, camera, "fps")
        configs.append(("sensor", entity, dict(common, name="FPS", unique_id="firedetd_" + entity,
                                                state_topic=self.topic(camera, "fps"), unit_of_measurement="fps",
                                                state_class="measurement", entity_category="diagnostic",
                                                expire_after=int(max(60, 6 * self.config.status_interval_s)))))
        return configs

    def problem(self) -> Optional[str]:
        """'not connected to broker H:P' once a started connection has been down for DOWN_GRACE_S."""
        since = self.connection.down_since
        if since is None or time.monotonic() - since < DOWN_GRACE_S:
            return None
        return "not connected to broker %s for %.0f s%s" % (self.connection.address, time.monotonic() - since,
                                                            self._connect_hint())

    def close(self) -> None:
        """Remove the retained live states, say "offline" (retained) and disconnect.

        An empty retained message deletes the retained one: a stopped daemon has no state to show, and an incident
        in progress is not pretended over (an OFF) nor left ON for whoever subscribes next week. The alert stream
        keeps the incident's history; the next start publishes the states it finds."""
        with self._lock:
            topics = sorted(self.topic(camera, kind) for camera, kind in self._states)
        self.connection.stop([(topic, b"", 1, True) for topic in topics]
                             + [(self.availability_topic, OFFLINE, 1, True)])


def sinks_from_config(config, environ) -> List[MqttSink]:
    """The registry's factory: the one MQTT sink of `alerts.mqtt`, with the password its password_env names."""
    password = config.alerts.mqtt.resolve_password("alerts.mqtt", environ)
    return [MqttSink("mqtt", config.alerts.mqtt, config.device_id, password)]
