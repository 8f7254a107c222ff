"""Process faults against the whole daemon: a real SIGKILL while a webhook request is in flight, a real full file
system under the state directory (a tmpfs of a few MiB the test fills), and a damaged outbox file found at start."""

import errno
import glob
import os
import subprocess
import time

import pytest
import requests
from support.daemon import free_port, metric, scrape, wait_until

from firedetd.receiver import AlertReceiver

from .daemon_setup import (
    FLAPPING_DETECTION,
    SILENT_DETECTION,
    SINK,
    outbox_deliveries,
    outbox_path,
    record_figures,
    running_daemon,
    sample_camera,
    stop_daemon,
    total,
    webhook,
    write_config,
)

QUIET_SOURCE = "test://?pattern=smpte&fps=10"


class InFlightReceiver(AlertReceiver):
    """An AlertReceiver that also notes each request's Idempotency-Key as it arrives, before its (delayed) answer."""

    def __init__(self, *args, **kwargs):
        super(InFlightReceiver, self).__init__(*args, **kwargs)
        self.arrived = []

    def handle_post(self, path, headers, raw):
        self.arrived.append(headers.get("idempotency-key", ""))
        return super(InFlightReceiver, self).handle_post(path, headers, raw)


def test_kill_9_during_a_delivery_then_restart_delivers_everything_repeating_only_the_interrupted_key(tmp_path):
    http_port, receiver_port = free_port(), free_port()
    url = "http://127.0.0.1:%d/alerts" % receiver_port
    config = write_config(tmp_path, [sample_camera()], [webhook(url, timeout_s=10)], detection=FLAPPING_DETECTION,
                          http_port=http_port)
    with InFlightReceiver(port=receiver_port) as receiver:
        with running_daemon(config) as daemon:
            wait_until(lambda: len(receiver.alerts) >= 5, 60, message="the first alerts")
            receiver.delay_s = 3.0  # the next answer comes late: the daemon dies waiting for it
            seen = len(receiver.arrived)
            wait_until(lambda: len(receiver.arrived) > seen, 30, interval=0.05, message="a request in flight")
            interrupted = receiver.arrived[-1]
            daemon.kill()  # SIGKILL: no drain, the request unanswered
        receiver.delay_s = 0.0
        wait_until(lambda: interrupted in set(receiver.keys()), 10, message="the interrupted request to be recorded")
        stored = [key for key, _ in outbox_deliveries(outbox_path(tmp_path))]
        undelivered = [key for key, done in outbox_deliveries(outbox_path(tmp_path)) if not done]

        # the same outbox, thresholds that never raise: whatever arrives now is what the killed process left behind
        restart = write_config(tmp_path, [{"name": "sample", "source": QUIET_SOURCE}], [webhook(url, timeout_s=10)],
                               detection=SILENT_DETECTION, http_port=http_port)
        with running_daemon(restart) as daemon:
            wait_until(lambda: set(stored) <= set(receiver.keys()), 30, message="the stored alerts to arrive")
            wait_until(lambda: metric(scrape(http_port), "firedetd_alerts_pending", sink=SINK) == 0, 10,
                       message="nothing pending")
            assert stop_daemon(daemon) == 0
    duplicates = [a.key for a in receiver.alerts if a.duplicate]
    record_figures("kill_9_mid_delivery", stored=len(stored), undelivered_at_kill=len(undelivered),
                   received=len(receiver.alerts), duplicates=len(duplicates))
    assert interrupted in undelivered  # the kill came before the outbox recorded the answer
    assert set(receiver.keys()) == set(stored)
    assert duplicates == [interrupted]
    first, second = [a for a in receiver.alerts if a.key == interrupted]
    assert first.raw == second.raw  # the same event, byte for byte: the receiver drops it by its key


# ------------------------------------------------------------------------------------------------ disk full

TMPFS_SIZE = "8m"


@pytest.fixture
def small_state_fs(tmp_path):
    """A real 8 MiB tmpfs mounted on tmp_path/state (needs root or password-less sudo; skipped otherwise)."""
    state = tmp_path / "state"
    state.mkdir()
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    options = "size=%s,mode=0700,uid=%d,gid=%d" % (TMPFS_SIZE, os.getuid(), os.getgid())
    try:
        result = subprocess.call(prefix + ["mount", "-t", "tmpfs", "-o", options, "firedetd-test", str(state)],
                                 stderr=subprocess.DEVNULL)
    except OSError as e:
        result = e
    if result != 0:
        pytest.skip("cannot mount a tmpfs here (needs root or password-less sudo): %s" % result)
    try:
        yield state
    finally:
        subprocess.call(prefix + ["umount", "-l", str(state)])


def fill(directory):
    """Write a file until the file system says it is full; its path."""
    path = os.path.join(str(directory), "filler")
    block = b"\0" * (64 << 10)
    with open(path, "wb") as f:
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return path


def test_a_full_state_disk_keeps_alerts_in_memory_says_why_and_delivers_them_once_space_returns(tmp_path,
                                                                                                small_state_fs):
    http_port, receiver_port = free_port(), free_port()
    url = "http://127.0.0.1:%d/alerts" % receiver_port
    config = write_config(tmp_path, [sample_camera()], [webhook(url)], detection=FLAPPING_DETECTION,
                          http_port=http_port)
    with AlertReceiver(port=receiver_port) as receiver, running_daemon(config) as daemon:
        wait_until(lambda: len(receiver.alerts) >= 5, 60, message="the first alerts")
        filler = fill(small_state_fs)
        full_at = time.time()
        values = wait_until(lambda: _scrape_where(http_port, lambda v: (
            total(v, "firedetd_outbox_write_errors_total") > 0 and total(v, "firedetd_outbox_backlog") > 0)),
            60, message="the outbox to report a full disk")
        health = _health(http_port)
        frames_full = total(values, "firedetd_frames_processed_total")
        time.sleep(3.0)
        values = scrape(http_port)
        full_for_s = time.time() - full_at
        backlog = total(values, "firedetd_outbox_backlog")
        write_errors = total(values, "firedetd_outbox_write_errors_total")
        frames_while_full = total(values, "firedetd_frames_processed_total") - frames_full
        assert daemon.alive()

        os.remove(filler)
        values = wait_until(lambda: _scrape_where(http_port, lambda v: total(v, "firedetd_outbox_backlog") == 0),
                            30, message="the backlog to reach the outbox")
        values, keys = wait_until(lambda: _caught_up(http_port, receiver), 60, message="every alert delivered")
        assert stop_daemon(daemon) == 0
        log = daemon.log()
    record_figures("disk_full", tmpfs=TMPFS_SIZE, full_for_s=round(full_for_s, 1), backlog_while_full=backlog,
                   write_errors=write_errors, frames_while_full=frames_while_full,
                   generated=total(values, "firedetd_alert_events_total"), received_unique=len(keys))
    assert backlog > 0 and write_errors > 0 and frames_while_full > 0
    assert health["status"] == 503 and any("outbox cannot be written" in p for p in health["problems"])
    assert "database or disk is full" in log and "(the disk or the file system quota is full)" in log
    assert "writable again" in log and "Traceback" not in log
    assert len(keys) == total(values, "firedetd_alert_events_total")


def _health(port):
    response = requests.get("http://127.0.0.1:%d/healthz" % port, timeout=5)
    return {"status": response.status_code, "problems": response.json().get("problems", [])}


def _scrape_where(port, predicate):
    values = scrape(port)
    return values if predicate(values) else None


def _caught_up(port, receiver):
    keys = set(receiver.keys())
    values = scrape(port)
    generated = total(values, "firedetd_alert_events_total")
    if metric(values, "firedetd_alerts_pending", sink=SINK) != 0 or set(receiver.keys()) != keys:
        return None
    return (values, keys) if generated and len(keys) == generated else None


# ------------------------------------------------------------------------------------------------ corrupt outbox


def test_a_damaged_outbox_found_at_start_is_moved_aside_logged_and_a_fresh_one_delivers(tmp_path):
    receiver_port = free_port()
    url = "http://127.0.0.1:%d/alerts" % receiver_port
    config = write_config(tmp_path, [sample_camera()], [webhook(url)], detection=FLAPPING_DETECTION)
    with running_daemon(config, "--duration", "4") as daemon:  # nobody listens: the events stay in the outbox
        assert daemon.wait(60) == 0
    path = outbox_path(tmp_path)
    assert outbox_deliveries(path)
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(b"\xa5" * 8192)  # pages 2 and 3; the header still says "SQLite format 3"
    with open(path, "rb") as f:
        damaged = f.read()

    with AlertReceiver(port=receiver_port) as receiver, running_daemon(config) as daemon:
        wait_until(lambda: len(receiver.alerts) >= 3, 60, message="alerts through the fresh outbox")
        assert stop_daemon(daemon) == 0
        log = daemon.log()
    moved = glob.glob(path + ".corrupt-*")
    moved = [m for m in moved if not m.endswith(("-wal", "-shm"))]
    assert len(moved) == 1
    with open(moved[0], "rb") as f:
        assert f.read() == damaged  # kept as it was, for whoever wants to look at it
    lines = [line for line in log.splitlines() if "is corrupt" in line]
    assert len(lines) == 1 and "ERROR" in lines[0] and moved[0] in lines[0] and "started a new one" in lines[0]
    assert [key for key, done in outbox_deliveries(path)]
    assert "Traceback" not in log
