"""The demo receiver: the `python -m firedetd.receiver` command in a real process, and the in-process server."""

import os
import queue
import signal
import subprocess
import sys
import threading

import pytest
import requests

from firedetd.alerts.outbox import Outbox
from firedetd.alerts.webhook import WebhookSink
from firedetd.config import WebhookConfig
from firedetd.errors import SinkError
from firedetd.receiver import AlertReceiver
from firedetd.types import Alert

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "demo-secret-42"
WAIT_S = 30


def outbox_event(tmp_path, snapshot=b"\xff\xd8" + b"x" * 3070):
    """An event as the outbox hands it to a sink, for a fire alert on camera `yard`."""
    box = Outbox(str(tmp_path / "outbox.sqlite3"))
    box.enqueue(Alert(id="inc-1", camera="yard", kind="fire", state="raised", started_ns=1714564800 * 10**9,
                      event_ns=1714564800 * 10**9, score=0.875, peak_score=0.9, frame_seq=42, latency_ms=31.0,
                      model="m", snapshot_jpeg=snapshot), ["demo"])
    event = box.next_pending("demo", 2**62)
    box.close()
    return event


class LineReader:
    """Reads a child's stdout lines in a thread so the test can wait for one with a timeout."""

    def __init__(self, stream):
        self.lines = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), name="test-line-reader", daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in iter(stream.readline, b""):
            self.lines.put(line.decode("utf-8", "replace").rstrip("\n"))

    def next_line(self):
        return self.lines.get(timeout=WAIT_S)


@pytest.fixture
def demo_receiver(tmp_path):
    env = dict(os.environ, FIREDETD_TEST_SECRET=SECRET, PYTHONPATH=REPO_ROOT)
    child = subprocess.Popen([sys.executable, "-m", "firedetd.receiver", "--port", "0", "--secret-env",
                              "FIREDETD_TEST_SECRET", "--snapshots", str(tmp_path / "snaps")],
                             stdout=subprocess.PIPE, env=env, cwd=REPO_ROOT)
    reader = LineReader(child.stdout)
    yield child, reader
    if child.poll() is None:
        child.kill()
    child.wait(WAIT_S)
    child.stdout.close()


def test_the_command_prints_one_line_per_accepted_alert_and_saves_its_snapshot(tmp_path, demo_receiver):
    child, reader = demo_receiver
    banner = reader.next_line()
    assert banner.startswith("listening on http://127.0.0.1:") and "signatures checked" in banner
    url = banner.split()[2]
    event = outbox_event(tmp_path)

    sink = WebhookSink("demo", WebhookConfig(url=url), SECRET, "dev-1")
    sink.deliver(event)
    line = reader.next_line()
    with pytest.raises(SinkError, match="401"):
        WebhookSink("demo", WebhookConfig(url=url), "wrong-secret", "dev-1").deliver(event)
    child.send_signal(signal.SIGTERM)

    assert child.wait(WAIT_S) == 0
    assert line.split() == ["2024-05-01T12:00:00.000Z", "yard", "fire", "raised", "score=0.875", "snapshot=3.0KiB"]
    assert reader.lines.empty()  # the refused alert printed nothing
    [saved] = os.listdir(str(tmp_path / "snaps"))
    with open(str(tmp_path / "snaps" / saved), "rb") as f:
        assert f.read() == event["snapshot_jpeg"]
    sink.close()


def test_a_missing_secret_variable_is_one_line_on_stderr_and_exit_code_2():
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    env.pop("FIREDETD_NO_SUCH_SECRET", None)
    child = subprocess.Popen([sys.executable, "-m", "firedetd.receiver", "--port", "0", "--secret-env",
                              "FIREDETD_NO_SUCH_SECRET"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                             cwd=REPO_ROOT)
    out, err = child.communicate(timeout=WAIT_S)

    assert child.returncode == 2
    assert err.decode().strip().count("\n") == 0 and "FIREDETD_NO_SUCH_SECRET" in err.decode()


def test_repeats_of_an_idempotency_key_are_marked_duplicate_and_bad_bodies_get_400(tmp_path):
    event = outbox_event(tmp_path)
    with AlertReceiver() as receiver:
        sink = WebhookSink("demo", WebhookConfig(url=receiver.url), "", "dev-1")
        sink.deliver(event)
        sink.deliver(event)
        not_json = requests.post(receiver.url, data=b"\x00garbage", timeout=WAIT_S)
        sink.close()

        assert [a.duplicate for a in receiver.alerts] == [False, True]
        assert not_json.status_code == 400 and len(receiver.alerts) == 2


def test_starting_on_a_port_in_use_raises_os_error():
    with AlertReceiver() as first, pytest.raises(OSError):
        AlertReceiver(port=first.port).start()
