"""firedetd/systemd.py and the daemon's use of it: WATCHDOG=1 is sent every WatchdogSec / 2, read back from a real
AF_UNIX datagram socket bound as systemd's NOTIFY_SOCKET. The clock is passed in, so no test waits for it."""

import os
import shutil
import socket
import tempfile

import pytest

from firedetd.config import Config
from firedetd.daemon import Daemon
from firedetd.systemd import Notifier


@pytest.fixture
def notify_socket():
    # AF_UNIX paths are short (108 bytes): pytest's tmp_path can be longer
    directory = tempfile.mkdtemp(prefix="fdnotify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(os.path.join(directory, "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


def received(sock):
    """Every datagram waiting on `sock`, as text."""
    texts = []
    while True:
        try:
            texts.append(sock.recv(4096).decode("utf-8"))
        except BlockingIOError:
            return texts


def test_the_watchdog_interval_is_half_of_watchdog_usec():
    assert Notifier.from_environ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000"}).watchdog_interval_s == 15.0
    assert Notifier.from_environ({"NOTIFY_SOCKET": "@x"}).watchdog_interval_s == 0.0


def test_watchdog_pings_go_out_once_per_half_watchdog_usec_however_often_the_loop_asks(notify_socket):
    notifier = Notifier(notify_socket.getsockname(), watchdog_usec=2000000)
    sent_at = [t / 4.0 for t in range(41) if notifier.watchdog_if_due(t / 4.0)]  # the loop: 4 a second for 10 s
    notifier.close()

    assert sent_at == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert received(notify_socket) == ["WATCHDOG=1"] * 11


def test_without_a_watchdog_in_the_unit_no_ping_is_sent(notify_socket):
    notifier = Notifier(notify_socket.getsockname(), watchdog_usec=0)
    assert not any(notifier.watchdog_if_due(t / 4.0) for t in range(8))
    assert notifier.ready("up")
    notifier.close()
    assert received(notify_socket) == ["READY=1\nSTATUS=up"]


class HealthyPipeline(object):
    """TEST DOUBLE: only the one question the watchdog asks a pipeline, answered by the test."""

    def __init__(self):
        self.problems = []

    def stall_reasons(self, stall_s):
        return list(self.problems)


def test_the_daemon_pings_every_half_watchdog_usec_and_at_once_when_a_stall_ends(notify_socket):
    notifier = Notifier(notify_socket.getsockname(), watchdog_usec=4000000)
    daemon = Daemon(Config(), notifier=notifier)
    daemon.pipeline = HealthyPipeline()
    pinged = []
    for tick in range(33):  # 8 s of the daemon's loop, every 0.25 s
        now = tick / 4.0
        daemon.pipeline.problems = ["engine thread is stuck"] if 3.0 <= now < 5.5 else []
        daemon._watchdog(now_s=now)
        pinged.extend(now for _ in received(notify_socket))
    notifier.close()

    # healthy: 0 and 2 s; stuck from 3 s: none; healthy again at 5.5 s: at once (2 s have passed), then 7.5 s
    assert pinged == [0.0, 2.0, 5.5, 7.5]
