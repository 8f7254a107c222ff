"""One connection to an MQTT broker, for the MQTT alert sink (`alerts/mqtt.py`) and the sensor input (`sensors.py`).

`BrokerConnection` owns one paho client and paho's network thread (`loop_start`): it connects in the background,
reconnects after any loss with paho's exponential backoff (1 s doubling to 30 s), and calls `on_connected` after
every (re)connection, which is where a user of it (re)publishes retained state or (re)subscribes: the session is
clean, so the broker keeps nothing of ours between connections except retained messages and the last will.

paho-mqtt is imported lazily (the `mqtt` extra). Both APIs are supported: paho 1.6 (the last release for
Python 3.6, JetPack 4.6) and paho 2.x, whose Client takes a callback API version first and passes reason-code
objects instead of ints. Callbacks run on paho's thread and never raise: an exception there would end paho's
loop (2.x re-raises callback errors by default), leaving the sink silently disconnected for good.
"""

import logging
import re
import threading
import time
from typing import Callable, List, Optional, Tuple

from .errors import ConfigError

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def topic_segment(name: str) -> str:
    """`name` made safe as one MQTT topic level or client id part (no '/', '+', '#', spaces)."""
    return _TOPIC_UNSAFE.sub("_", name) or "_"


def import_paho(where: str):
    """The `paho.mqtt.client` module, or a ConfigError naming the config key that asked for MQTT."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError as e:
        raise ConfigError("%s: MQTT needs paho-mqtt: pip install 'firedetd[mqtt]' (paho-mqtt 1.6 on Python 3.6, "
                          "2.x on 3.7+)" % where) from e
    return mqtt


def connect_failed(reason_code) -> bool:
    """True when a CONNACK reason (an int on paho 1.x, a ReasonCode on 2.x) says the broker refused us."""
    failure = getattr(reason_code, "is_failure", None)
    if failure is not None:
        return bool(failure)
    return reason_code != 0


class BrokerConnection(object):
    """A paho client connected in the background to the broker of `config` (MqttConfig), with credentials,
    TLS, an optional last will (topic, payload, qos, retain) and hooks run on paho's thread:
    `on_connected()` after every connection, `on_message(topic, payload, retained)` for subscribed topics."""

    def __init__(self, config, password: str, client_id: str, where: str,
                 will: Optional[Tuple[str, bytes, int, bool]] = None,
                 on_connected: Optional[Callable[[], None]] = None,
                 on_message: Optional[Callable[[str, bytes, bool], None]] = None,
                 keepalive_s: int = 30) -> None:
        self.mqtt = import_paho(where)
        self.where = where
        self.address = "%s:%d" % (config.host, config.port)
        self.keepalive_s = keepalive_s
        self.connected = threading.Event()
        self.down_since: Optional[float] = None  # time.monotonic() since when a started connection is not up
        self.generation = 0  # +1 per connection: what was sent on an older one may be gone
        self.connect_failures = 0
        self.on_connected = on_connected
        self.on_message = on_message
        self._config = config
        self._started = False
        self._stopped = False
        self._lock = threading.Lock()
        self._logged_down = False
        self._logged_refused = False
        self.client = self._new_client(client_id)
        if config.username:
            self.client.username_pw_set(config.username, password or None)
        if config.tls:
            self.client.tls_set()  # the system's CA certificates; the broker's name is checked
        if will is not None:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos=qos, retain=retain)
        self.client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message

    def __repr__(self):
        # the password stays out of logs and tracebacks
        return "BrokerConnection(%s, %s)" % (self.where, self.address)

    def _new_client(self, client_id):
        mqtt = self.mqtt
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho 2.x
            return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        return mqtt.Client(client_id=client_id, clean_session=True)

    def start(self) -> None:
        """Start paho's thread, which connects and keeps reconnecting until stop(); returns at once."""
        with self._lock:
            if self._started or self._stopped:
                return
            self._started = True
            self.down_since = time.monotonic()
        self.client.connect_async(self._config.host, self._config.port, keepalive=self.keepalive_s)
        self.client.loop_start()

    def wait_connected(self, timeout_s: float) -> bool:
        """Start if needed and wait up to `timeout_s` for a connection; True when connected."""
        self.start()
        return self.connected.wait(timeout_s)

    def publish(self, topic: str, payload, qos: int, retain: bool):
        """Hand one message to paho (non-blocking); returns paho's MQTTMessageInfo."""
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def subscribe(self, topics: List[Tuple[str, int]]) -> None:
        """Subscribe on the current connection (call again from on_connected: sessions are clean)."""
        if topics:
            self.client.subscribe(topics)

    def unsubscribe(self, topics: List[str]) -> None:
        """Unsubscribe on the current connection."""
        if topics:
            self.client.unsubscribe(topics)

    def stop(self, last_messages: List[Tuple[str, bytes, int, bool]] = (), timeout_s: float = 2.0) -> None:
        """Send `last_messages` if connected (e.g. a retained "offline": a clean DISCONNECT suppresses the last
        will), disconnect, and end paho's thread."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            started = self._started
        if not started:
            return
        if self.connected.is_set():
            for topic, payload, qos, retain in last_messages:
                try:
                    self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(timeout_s)
                except (RuntimeError, ValueError) as e:  # lost the connection meanwhile: the will covers it
                    log.debug("%s: could not publish %s before disconnecting: %s", self.where, topic, e)
        self.client.disconnect()
        self.client.loop_stop()

    # ---- paho callbacks (paho's thread; never raise)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        try:
            if connect_failed(reason_code):
                if not self._logged_refused:  # paho retries every few seconds: say it once until it works
                    self._logged_refused = True
                    log.error("%s: broker %s refused the connection: %s", self.where, self.address, reason_code)
                return
            self._logged_refused = False
            self.generation += 1
            self.connected.set()
            self.down_since = None
            log.info("%s: connected to %s", self.where, self.address)
            self._logged_down = False
            if self.on_connected is not None:
                self.on_connected()
        except Exception:  # see the module docstring: paho's thread must survive
            log.exception("%s: after connecting to %s", self.where, self.address)

    def _on_disconnect(self, client, userdata, *args):
        # paho 1.x: (rc); 2.x: (flags, reason_code, properties)
        try:
            self.connected.clear()
            if self.down_since is None:
                self.down_since = time.monotonic()
            if not self._stopped and not self._logged_down:
                self._logged_down = True
                reason = args[1] if len(args) > 1 else args[0] if args else "?"
                if isinstance(reason, int):  # paho 1.x passes an error number
                    reason = self.mqtt.error_string(reason)
                log.warning("%s: lost the connection to %s (%s); reconnecting in the background", self.where,
                            self.address, reason)
        except Exception:
            log.exception("%s: after losing the connection", self.where)

    def _on_connect_fail(self, client, userdata):
        self.connect_failures += 1
        if not self._logged_down and not self._stopped:
            self._logged_down = True
            log.warning("%s: cannot connect to %s; retrying in the background", self.where, self.address)

    def _on_message(self, client, userdata, message):
        try:
            if self.on_message is not None:
                self.on_message(message.topic, bytes(message.payload), bool(message.retain))
        except Exception:
            log.exception("%s: message on %s", self.where, getattr(message, "topic", "?"))
