"""A real mosquitto broker on 127.0.0.1 for the MQTT tests, and a real paho subscriber that records what it gets.

By default the broker runs without persistence, so stopping it loses its retained messages and subscriptions,
like a broker restarted with an empty store; with `persistence=True` it saves them (and the queued messages of
persistent sessions) on the way down, as Debian's packaged broker does. `restart()` keeps the port.
"""

import os
import shutil
import socket
import subprocess
import threading
import time

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
SKIP_REASON = "mosquitto is not installed (apt-get install mosquitto)"
WAIT_S = 20  # generous: only there so a broken build fails instead of hanging


def free_port():
    """A loopback port nothing listens on right now (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MosquittoBroker(object):
    """`mosquitto -c <dir>/mosquitto.conf` listening on 127.0.0.1:<port>, anonymous, no persistence."""

    def __init__(self, directory, port=None, persistence=False):
        self.directory = str(directory)
        self.persistence = persistence
        self.port = port or free_port()
        self.proc = None
        self.conf_path = os.path.join(self.directory, "mosquitto.conf")
        self.log_path = os.path.join(self.directory, "mosquitto.log")

    def start(self):
        """Start the broker and wait until it accepts connections."""
        os.makedirs(self.directory, exist_ok=True)
        with open(self.conf_path, "w") as f:
            # `user root`: as root, mosquitto would otherwise switch to a `mosquitto` user that may not exist
            f.write("listener %d 127.0.0.1\nallow_anonymous true\nuser root\n" % self.port)
            if self.persistence:
                f.write("persistence true\npersistence_location %s/\n" % self.directory)
            else:
                f.write("persistence false\n")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf_path], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT_S
        while not self._accepts():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("mosquitto did not start on port %d: %s" % (self.port, self.log()))
            time.sleep(0.05)
        return self

    def stop(self):
        """Stop the broker (an outage: every client loses its connection)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT_S)
        if self.proc is not None:
            self._log.close()
        self.proc = None

    def restart(self):
        """Stop and start again on the same port."""
        self.stop()
        return self.start()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _accepts(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False


class Message(object):
    def __init__(self, topic, payload, qos, retain):
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain

    def __repr__(self):
        return "Message(%r, %r, qos=%d, retain=%s)" % (self.topic, self.payload[:80], self.qos, self.retain)


class Recorder(object):
    """A paho client subscribed to `topics` that records every message; it subscribes again after each
    reconnect (a broker without persistence forgets subscriptions)."""

    def __init__(self, port, topics=("#",), qos=2, client_id=None, persistent_session=False):
        import paho.mqtt.client as mqtt

        self.topics = list(topics)
        self.qos = qos
        self.messages = []
        self.connects = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        client_id = client_id or "recorder-%d-%d" % (os.getpid(), id(self))
        # a persistent session: the broker queues QoS 1/2 messages for us while we are away
        clean = not persistent_session
        if hasattr(mqtt, "CallbackAPIVersion"):
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        else:
            self.client = mqtt.Client(client_id=client_id, clean_session=clean)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, *rest):
        self.connects += 1
        self._subscribed.clear()
        client.subscribe([(t, self.qos) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, *rest):
        self._subscribed.set()

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.messages.append(Message(message.topic, bytes(message.payload), message.qos, bool(message.retain)))

    def wait_subscribed(self, timeout=WAIT_S):
        """Wait until the subscription of the current connection is acknowledged."""
        assert self._subscribed.wait(timeout), "the recorder could not subscribe"
        return self

    def on(self, topic):
        """Every message received on `topic`, oldest first."""
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate, timeout=WAIT_S):
        """Wait until predicate(messages) is true; return it, or fail naming what arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                messages = list(self.messages)
            result = predicate(messages)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError("timed out; messages so far: %r" % messages[-20:])
            time.sleep(0.02)

    def payloads(self, topic):
        """The payloads received on `topic`, oldest first."""
        return [m.payload for m in self.on(topic)]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
