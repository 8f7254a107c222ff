"""One alert per scene: dedupe of a fleet's alert events across cameras that watch the same place (docs/fleet.md).

Runs on the site's side, not on the devices: `firedetd scene-relay -c scenes.yaml` subscribes to every device's
alert events (`firedetd/+/+/alert`) and republishes one incident per scene and kind on
`<output_prefix>/<scene>/alert`. Which cameras share a scene is a site fact (camera placement), so it lives in
the relay's config, not on the devices: moving a camera changes one file, not N devices.

A scene incident is the union of overlapping camera incidents of one kind:
- the first `raised` (or, for a relay that started mid-incident, `ongoing`) opens it and is forwarded; later
  `raised` events of other cameras on the same scene join it and are not forwarded;
- only the leading camera's `ongoing` and `escalated` events are forwarded (an escalation from smoke to fire
  also opens the scene's fire incident, which the camera's one `cleared` closes with the smoke one);
- the leader's `cleared` is held until every member has cleared, and then `window_s` longer: a camera of the
  scene that raises again within that window joins the same incident instead of notifying again (flapping, or
  devices whose events arrive out of order). Then the leader's `cleared` is forwarded.
Nothing is ever hidden while any camera of the scene still sees the fire: the consumer's view stays `raised`
until the last camera clears. Repeats of an event (delivery is at-least-once) are dropped by its `id`.
Forwarded events are the devices' own JSON, with `scene` added.

The relay's MQTT session is clean, like the daemon's: events published while the relay is down are not
replayed to it (the devices' own topics still carry them). Run it next to the broker, under systemd.
"""

import collections
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .config import MqttConfig, read_yaml
from .errors import ConfigError
from .mqttclient import BrokerConnection, topic_segment
from .schema import build_dataclass, option

log = logging.getLogger(__name__)

REPEAT_MEMORY_S = 3600.0  # event ids remembered to drop redeliveries; an outage longer than this may repeat one
FLUSH_INTERVAL_S = 0.5


@dataclass(frozen=True)
class SceneRelayConfig:
    mqtt: MqttConfig = option(factory=MqttConfig, doc="The broker the devices publish to (alerts.mqtt's keys).")
    scenes: Dict[str, Tuple[str, ...]] = option(factory=dict, doc="Scene name -> the `device/camera` names "
                                                                  "that watch it.")
    window_s: float = option(60.0, doc="How long a scene stays raised after its last camera cleared.",
                             minimum=0, maximum=86400)
    input_topic: str = option("firedetd/+/+/alert", doc="Where the devices' alert events arrive.")
    output_prefix: str = option("firedetd-scenes", doc="Scene incidents go to <output_prefix>/<scene>/alert.")

    def check(self, path):
        owner = {}
        for scene, members in self.scenes.items():
            for member in members:
                if member.count("/") != 1:
                    raise ConfigError("%s.scenes.%s: %r must be device/camera" % (path or "scenes", scene, member))
                if member in owner:
                    raise ConfigError("%s.scenes.%s: %s is already in scene %r" % (path or "scenes", scene, member,
                                                                                  owner[member]))
                owner[member] = scene


def load_relay_config(path: str) -> SceneRelayConfig:
    """Read and validate a scene relay config file."""
    return build_dataclass(SceneRelayConfig, read_yaml(path) or {})


class SceneMap(object):
    """Which scene a camera watches; a camera in no scene is a scene of its own, named `device/camera`."""

    def __init__(self, scenes: Dict[str, Sequence[str]]) -> None:
        self._scene = {member: scene for scene, members in scenes.items() for member in members}

    def scene_of(self, device: str, camera: str) -> str:
        member = "%s/%s" % (device, camera)
        return self._scene.get(member, member)


class _SceneIncident(object):
    def __init__(self, leader: dict) -> None:
        self.leader = leader
        self.open_alerts = {leader["alert_id"]}
        self.held_clear: Optional[dict] = None
        self.clear_due: Optional[float] = None
        self.members = {(leader["device"], leader["camera"])}


class SceneDedupe(object):
    """Feeds alert events in, gets back the events to forward (see the module docstring); not thread-safe."""

    def __init__(self, scenes: SceneMap, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.scenes = scenes
        self.window_s = window_s
        self.clock = clock
        self.suppressed = 0
        self._incidents: Dict[Tuple[str, str], _SceneIncident] = {}
        self._seen = collections.OrderedDict()  # event id -> when first seen

    def feed(self, event: dict) -> List[dict]:
        """The events to forward now because `event` arrived (none, it, or clears that came due)."""
        now = self.clock()
        self._forget_old_ids(now)
        due = self.flush()  # a scene whose window has passed is closed before this event can join it
        if event["id"] in self._seen:
            return due
        self._seen[event["id"]] = now
        scene = self.scenes.scene_of(event["device"], event["camera"])
        return due + [self._tagged(e, scene) for e in self._route(scene, event, now)]

    def flush(self) -> List[dict]:
        """Held `cleared` events whose window has passed; call it now and then (the relay does, twice a second)."""
        now = self.clock()
        due = [key for key, incident in self._incidents.items()
               if incident.clear_due is not None and incident.clear_due <= now]
        out = []
        for key in due:
            incident = self._incidents.pop(key)
            out.append(self._tagged(incident.held_clear, key[0]))
        return out

    def open_scenes(self) -> List[Tuple[str, str]]:
        """(scene, kind) of every scene incident not yet forwarded as cleared."""
        return sorted(self._incidents)

    def _route(self, scene, event, now):
        key = (scene, event["kind"])
        incident = self._incidents.get(key)
        state = event["state"]
        if state == "cleared":
            # a camera incident that escalated from smoke to fire clears as fire: it leaves both scene incidents
            held = [self._member_cleared(other, event, now) for (s, _), other in list(self._incidents.items())
                    if s == scene and event["alert_id"] in other.open_alerts]
            if held:
                return [e for events in held for e in events]
        if incident is None:
            if state == "cleared":  # an incident this relay never saw open: pass it on, it can only calm
                return [event]
            self._incidents[key] = _SceneIncident(event)
            return [event]
        if state == "cleared":
            return self._member_cleared(incident, event, now)
        joined = event["alert_id"] not in incident.open_alerts
        incident.open_alerts.add(event["alert_id"])
        incident.members.add((event["device"], event["camera"]))
        incident.clear_due = None  # a camera of the scene sees it (again): the scene stays raised
        if event["alert_id"] == incident.leader["alert_id"] and state in ("ongoing", "escalated"):
            return [event]
        if joined:
            self.suppressed += 1
            log.info("scene %s: %s on %s/%s joins the incident of %s/%s", scene, event["kind"], event["device"],
                     event["camera"], incident.leader["device"], incident.leader["camera"])
        return []

    def _member_cleared(self, incident, event, now):
        incident.open_alerts.discard(event["alert_id"])
        if event["alert_id"] == incident.leader["alert_id"]:
            incident.held_clear = dict(event, kind=incident.leader["kind"])
        if not incident.open_alerts and incident.held_clear is not None:
            incident.clear_due = now + self.window_s
        return []

    def _forget_old_ids(self, now):
        while self._seen:
            oldest_id, seen_at = next(iter(self._seen.items()))
            if now - seen_at < max(REPEAT_MEMORY_S, self.window_s):
                return
            self._seen.popitem(last=False)

    @staticmethod
    def _tagged(event, scene):
        return dict(event, scene=scene)


class SceneRelay(object):
    """Subscribes to the devices' alert events on one broker and publishes one incident per scene and kind."""

    def __init__(self, config: SceneRelayConfig, password: str = "", client_id: str = "firedetd-scene-relay",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.dedupe = SceneDedupe(SceneMap(config.scenes), config.window_s, clock)
        self.failures = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._flush_loop, name="scene-relay-flush", daemon=True)
        self.connection = BrokerConnection(config.mqtt, password, client_id, "scene-relay",
                                           on_connected=self._subscribe, on_message=self._on_message,
                                           keepalive_s=config.mqtt.keepalive_s)

    def start(self) -> "SceneRelay":
        """Connect in the background and start the thread that forwards held clears when they come due."""
        self.connection.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.connection.stop([])

    def output_topic(self, scene: str) -> str:
        return "%s/%s/alert" % (self.config.output_prefix.strip("/"), topic_segment(scene))

    def _subscribe(self):
        self.connection.subscribe([(self.config.input_topic, 1)])

    def _on_message(self, topic, payload, retained):
        try:
            event = json.loads(payload.decode("utf-8"))
            if not all(k in event for k in ("id", "alert_id", "device", "camera", "kind", "state")):
                raise ValueError("not a firedetd alert event")
        except ValueError as e:
            self.failures += 1
            log.warning("scene-relay: %s: ignored (%s)", topic, e)
            return
        with self._lock:
            forward = self.dedupe.feed(event)
        self._publish(forward)

    def _flush_loop(self):
        while not self._stop.wait(FLUSH_INTERVAL_S):
            try:
                with self._lock:
                    due = self.dedupe.flush()
                self._publish(due)
            except Exception:  # the relay must keep forwarding clears
                self.failures += 1
                log.exception("scene-relay: flushing held clears")

    def _publish(self, events):
        for event in events:
            payload = json.dumps(event, sort_keys=True, separators=(",", ":"))
            self.connection.publish(self.output_topic(event["scene"]), payload, self.config.mqtt.qos, False)


# ---- `firedetd scene-relay`

def add_arguments(parser) -> None:
    parser.add_argument("-c", "--config", required=True, help="scene relay config (YAML; see docs/fleet.md)")


def run(args) -> int:
    """Run the relay until SIGINT/SIGTERM."""
    import os
    import signal

    from .cli import setup_logging

    config = load_relay_config(args.config)
    password = config.mqtt.resolve_password("mqtt", os.environ)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    setup_logging("info", getattr(args, "debug", False))
    relay = SceneRelay(config, password).start()
    log.info("scene-relay: %s -> %s/<scene>/alert, %d scene(s), window %.0f s", config.input_topic,
             config.output_prefix, len(config.scenes), config.window_s)
    stop.wait()
    relay.stop()
    return 0
