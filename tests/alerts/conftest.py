"""Fixtures for the alert tests: alerts, a real SQLite outbox in tmp_path, a real receiver on 127.0.0.1.

Helpers are handed out as fixtures (not imported) so these tests run the same whatever pytest import mode
or package layout the suite ends up with.
"""

import hashlib
import os
import socket

import pytest

from firedetd.alerts.outbox import Outbox
from firedetd.alerts.webhook import WebhookSink
from firedetd.config import WebhookConfig
from firedetd.receiver import AlertReceiver
from firedetd.types import RAISED, Alert

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "test-secret-0123456789"
BASE_NS = 1714564800 * 10**9  # 2024-05-01T12:00:00Z


def snapshot_bytes(n, size=2048):
    """Deterministic stand-in JPEG bytes for alert n (the outbox and sinks treat snapshots as opaque bytes)."""
    block = hashlib.sha256(b"snapshot-%d" % n).digest()
    return (b"\xff\xd8\xff\xe0" + block * (size // len(block) + 1))[:size]


def make_alert(n, state=RAISED, snapshot_size=2048, camera="cam1", kind="fire"):
    """Alert number n of a sequence: distinct id, increasing times."""
    return Alert(id="alert-%04d" % n, camera=camera, kind=kind, state=state, started_ns=BASE_NS + n * 10**9,
                 event_ns=BASE_NS + n * 10**9 + 123456789, score=0.5 + (n % 40) / 100.0, peak_score=0.95,
                 frame_seq=1000 + n, latency_ms=12.5 + n, model="firedetd-test",
                 snapshot_jpeg=snapshot_bytes(n, snapshot_size) if snapshot_size else None)


@pytest.fixture(name="make_alert")
def make_alert_fixture():
    return make_alert


@pytest.fixture(name="snapshot_bytes")
def snapshot_bytes_fixture():
    return snapshot_bytes


@pytest.fixture(name="webhook_sink")
def webhook_sink_fixture():
    sinks = []

    def build(*args, **kwargs):
        sinks.append(webhook_sink(*args, **kwargs))
        return sinks[-1]

    yield build
    for sink in sinks:
        sink.close()


@pytest.fixture(name="free_port")
def free_port_fixture():
    return free_port


@pytest.fixture(name="subprocess_env")
def subprocess_env_fixture():
    return subprocess_env()


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(str(tmp_path / "outbox.sqlite3"), max_bytes=64 << 20, keep_delivered_s=3600)
    yield box
    box.close()


@pytest.fixture
def receiver():
    server = AlertReceiver(secret=SECRET).start()
    yield server
    server.stop()


def webhook_sink(url, secret=SECRET, name="hook", **options):
    """A real WebhookSink for `url` with short timeouts."""
    options.setdefault("timeout_s", 5.0)
    return WebhookSink(name, WebhookConfig(url=url, **options), secret, "device-1")


def free_port():
    """A port nothing listens on right now (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env():
    """The environment for a child Python that imports firedetd from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env



@pytest.fixture(name="secret")
def secret_fixture():
    return SECRET
