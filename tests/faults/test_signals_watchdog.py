"""Signals and the systemd watchdog: real SIGTERM and SIGHUP sent to a real `firedetd run` process, and the
sd_notify protocol read from a real AF_UNIX datagram socket this test binds, as systemd's NOTIFY_SOCKET.

To hang a stage on demand, the in-process tests wrap the real ONNX engine or the real GStreamer source in a TEST
DOUBLE that blocks on an Event (nothing real hangs when asked to); the daemon, its watchdog logic and the socket
are the real ones.
"""

import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time

import pytest
import yaml
from support.daemon import free_port, metric, scrape, wait_until

from firedetd.config import ModelConfig, load_config
from firedetd.daemon import Daemon
from firedetd.inference.onnxruntime import OnnxRuntimeEngine
from firedetd.pipeline import Pipeline
from firedetd.receiver import AlertReceiver
from firedetd.sources import FrameSource, create_source
from firedetd.systemd import Notifier

from .daemon_setup import (
    FLAPPING_DETECTION,
    SILENT_DETECTION,
    outbox_deliveries,
    outbox_path,
    record_figures,
    running_daemon,
    sample_camera,
    total,
    webhook,
    write_config,
)

DRAIN_LIMIT_S = 5.0  # the unit's TimeoutStopSec is 15 s; the daemon promises 5


class NotifySocket(object):
    """The listening end of sd_notify: an AF_UNIX datagram socket, as systemd binds for NOTIFY_SOCKET."""

    def __init__(self):
        # AF_UNIX paths are short (108 bytes): pytest's tmp_path can be longer
        self.directory = tempfile.mkdtemp(prefix="fdnotify")
        self.path = os.path.join(self.directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []  # (monotonic time, text)

    def receive_for(self, seconds):
        """Collect datagrams for `seconds`; the ones that came in that time."""
        deadline = time.monotonic() + seconds
        got = []
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            got.append((time.monotonic(), data.decode("utf-8")))
        self.messages.extend(got)
        return [text for _, text in got]

    def receive_until(self, predicate, timeout):
        """Collect until one message satisfies `predicate`; that message (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for text in self.receive_for(0.2):
                if predicate(text):
                    return text
        raise AssertionError("no matching sd_notify message within %s s; got %r" % (timeout, self.texts()[-5:]))

    def texts(self):
        return [text for _, text in self.messages]

    def close(self):
        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def notify_socket():
    sock = NotifySocket()
    yield sock
    sock.close()


# ------------------------------------------------------------------------------------------------ SIGTERM


def test_sigterm_drains_within_5_s_keeping_every_alert_and_says_ready_watchdog_stopping(tmp_path, notify_socket):
    http_port = free_port()
    dead_url = "http://127.0.0.1:%d/alerts" % free_port()  # nobody listens: alerts stay pending
    config = write_config(tmp_path, [sample_camera()], [webhook(dead_url)], detection=FLAPPING_DETECTION,
                          http_port=http_port)
    env = {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "1000000"}  # a ping every 0.5 s
    with running_daemon(config, env=env) as daemon:
        first = notify_socket.receive_until(lambda text: "READY=1" in text, 60)
        pings = notify_socket.receive_for(2.0)
        values = wait_until(lambda: _scrape_where(http_port, lambda v: (
            metric(v, "firedetd_alerts_pending", sink="hook") or 0) >= 3), 60, message="pending alerts")
        frames = total(values, "firedetd_frames_processed_total")
        wait_until(lambda: total(scrape(http_port), "firedetd_frames_processed_total") > frames + 10, 30,
                   message="frames flowing")
        daemon.signal(signal.SIGTERM)
        sent = time.time()
        code = daemon.wait(DRAIN_LIMIT_S + 5)
        drain_s = time.time() - sent
        log = daemon.log()
    after = notify_socket.receive_for(0.3)
    logged = [line for line in log.splitlines() if "firedetd.postprocess: alert " in line]
    stored = outbox_deliveries(outbox_path(tmp_path))
    record_figures("sigterm_drain", drain_s=round(drain_s, 2), alerts_logged=len(logged), alerts_stored=len(stored),
                   pending_at_exit=sum(1 for _, done in stored if not done))
    assert code == 0, log
    assert drain_s <= DRAIN_LIMIT_S + 1.0  # the drain budget, plus the interpreter's exit
    assert first.startswith("READY=1") and "STATUS=" in first
    assert 2 <= pings.count("WATCHDOG=1") <= 5  # every WatchdogSec / 2; the loop's own rate would send 8
    assert (notify_socket.texts() + after)[-1] == "STOPPING=1"
    assert len(stored) == len(logged)  # every alert decided before the stop is in the outbox for the next start


def _scrape_where(port, predicate):
    values = scrape(port)
    return values if predicate(values) else None


# ------------------------------------------------------------------------------------------------ SIGHUP


def test_sighup_with_an_invalid_file_keeps_the_old_config_and_a_valid_one_applies_new_thresholds(tmp_path):
    http_port = free_port()
    cameras = [sample_camera()]
    config = write_config(tmp_path, cameras, detection=SILENT_DETECTION, http_port=http_port)
    with running_daemon(config) as daemon:
        wait_until(lambda: total(scrape(http_port), "firedetd_frames_processed_total") > 200, 60,
                   message="frames decided under thresholds that never raise")
        assert total(scrape(http_port), "firedetd_alert_events_total") == 0

        valid = config.read_text()
        config.write_text(valid.replace("detection:\n", "detection:\n  cooldown_s: -1\n"))
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: metric(scrape(http_port), "firedetd_config_reloads_total", result="rejected") == 1, 20,
                   message="the reload to be rejected")
        frames = total(scrape(http_port), "firedetd_frames_processed_total")
        wait_until(lambda: total(scrape(http_port), "firedetd_frames_processed_total") > frames + 50, 20,
                   message="frames after the rejected reload")
        assert total(scrape(http_port), "firedetd_alert_events_total") == 0  # still the old, silent thresholds
        rejected = [line for line in daemon.log().splitlines() if "reload rejected" in line]

        write_config(tmp_path, cameras, detection=FLAPPING_DETECTION, http_port=http_port)
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: metric(scrape(http_port), "firedetd_config_reloads_total", result="applied") == 1, 20,
                   message="the reload to be applied")
        wait_until(lambda: total(scrape(http_port), "firedetd_alert_events_total") > 0, 30,
                   message="alerts under the new thresholds")
        assert daemon.alive()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
        log = daemon.log()
    assert len(rejected) == 1
    assert "keeping the running config" in rejected[0] and "detection.cooldown_s: -1 is out of range" in rejected[0]
    assert str(config) in rejected[0]
    assert "reload: thresholds and sinks applied" in log and "Traceback" not in log


def test_sighup_moves_alerts_to_a_new_webhook_without_reopening_the_camera_and_an_unbuildable_sink_is_rejected(
        tmp_path, monkeypatch):
    http_port, first_port, second_port = free_port(), free_port(), free_port()
    cameras = [sample_camera()]
    hook = "http://127.0.0.1:%d/alerts"
    config = write_config(tmp_path, cameras, [webhook(hook % first_port)], detection=FLAPPING_DETECTION,
                          http_port=http_port)
    monkeypatch.delenv("FIREDETD_TEST_MQTT_PASSWORD_NEVER_SET", raising=False)
    with AlertReceiver(port=first_port) as first, AlertReceiver(port=second_port) as second, \
            running_daemon(config) as daemon:
        wait_until(lambda: len(first.alerts) >= 3, 60, message="alerts at the first webhook")

        write_config(tmp_path, cameras, [webhook(hook % second_port)], detection=FLAPPING_DETECTION,
                     http_port=http_port)
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: metric(scrape(http_port), "firedetd_config_reloads_total", result="applied") == 1, 20,
                   message="the sink change to be applied")
        wait_until(lambda: len(second.alerts) >= 3, 60, message="alerts at the second webhook")

        # an MQTT sink whose password variable is unset validates as YAML but cannot be built
        raw = yaml.safe_load(config.read_text())
        raw["alerts"]["mqtt"] = {"host": "127.0.0.1", "password_env": "FIREDETD_TEST_MQTT_PASSWORD_NEVER_SET"}
        config.write_text(yaml.safe_dump(raw))
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: metric(scrape(http_port), "firedetd_config_reloads_total", result="rejected") == 1, 20,
                   message="the unbuildable sink to be rejected")
        arrived = len(second.alerts)
        wait_until(lambda: len(second.alerts) > arrived + 2, 60, message="alerts still reaching the second webhook")
        assert daemon.alive()
        values = scrape(http_port)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
        log = daemon.log()
    assert metric(values, "firedetd_source_up", camera="sample") == 1
    assert log.count("sample: source up") == 1  # the camera was opened once, before either reload
    rejected = [line for line in log.splitlines() if "reload rejected" in line]
    assert len(rejected) == 1 and "alerts.mqtt.password_env" in rejected[0]
    assert "Traceback" not in log


# ------------------------------------------------------------------------------------------------ watchdog


class HangingEngine(object):
    """TEST DOUBLE: the real ONNX engine, except that infer() blocks while `hang` is set, until `release` is."""

    def __init__(self, engine):
        self.engine = engine
        self.name, self.provider, self.max_batch = engine.name, engine.provider, engine.max_batch
        self.hang = threading.Event()
        self.release = threading.Event()

    def infer(self, batch):
        if self.hang.is_set():
            self.release.wait(60)
        return self.engine.infer(batch)

    def close(self):
        self.engine.close()


class HangingSource(FrameSource):
    """TEST DOUBLE: a real GStreamer source, except that read() blocks while `hang` is set, until `release` is."""

    def __init__(self, source, hang, release):
        self.source, self.hang, self.release = source, hang, release
        self.name, self.live = source.name, source.live

    def open(self):
        self.source.open()

    def read(self, timeout_s):
        if self.hang.is_set():
            self.release.wait(60)
        return self.source.read(timeout_s)

    def close(self):
        self.source.close()


def hanging_pipeline(stage, hang, release):
    """A pipeline factory for Daemon whose engine or capture hangs on demand."""
    def factory(config, spec, **_):
        if stage == "engine":
            def engine_factory():
                engine = HangingEngine(OnnxRuntimeEngine(spec, ModelConfig(threads=1)))
                engine.hang, engine.release = hang, release
                return engine
            return Pipeline(config, spec, engine_factory=engine_factory, sink_factory=lambda cfg: [])
        return Pipeline(config, spec, sink_factory=lambda cfg: [],
                        source_factory=lambda source, geometry: HangingSource(create_source(source, geometry),
                                                                               hang, release))
    return factory


@pytest.mark.parametrize("stage", ["engine", "capture"])
def test_a_hung_stage_stops_the_watchdog_pings_while_the_process_stays_up(tmp_path, notify_socket, stage, caplog):
    config_path = write_config(tmp_path, [{"name": "pattern", "source": "test://?pattern=ball&fps=15"}],
                               watchdog={"stall_s": 1.0})
    config = load_config(str(config_path), environ={})
    hang, release = threading.Event(), threading.Event()
    notifier = Notifier(notify_socket.path, watchdog_usec=500000)  # a ping every 0.25 s, the loop's rate
    daemon = Daemon(config, notifier=notifier, pipeline_factory=hanging_pipeline(stage, hang, release))
    caplog.set_level(logging.INFO)
    result = []
    runner = threading.Thread(target=lambda: result.append(daemon.run()), name="test-daemon", daemon=True)
    runner.start()
    try:
        notify_socket.receive_until(lambda text: text.startswith("READY=1"), 60)
        assert notify_socket.receive_for(1.0).count("WATCHDOG=1") >= 2

        hang.set()
        hung_at = time.monotonic()
        notify_socket.receive_for(config.watchdog.stall_s + 1.0)  # the last pings before the stall is noticed
        silent = notify_socket.receive_for(3.0)
        last_ping = max(t for t, text in notify_socket.messages if text == "WATCHDOG=1")
        assert "WATCHDOG=1" not in silent  # systemd would now restart us, after WatchdogSec
        assert runner.is_alive() and not daemon.pipeline.health()["ok"]
        problems = [r.getMessage() for r in caplog.records if "watchdog: not pinging systemd" in r.getMessage()]

        hang.clear()
        release.set()
        notify_socket.receive_until(lambda text: text == "WATCHDOG=1", 10)  # healthy again: pings resume
    finally:
        release.set()
        daemon.request_stop()
        runner.join(15)
    notify_socket.receive_for(0.3)
    record_figures("watchdog_" + stage, stall_s=config.watchdog.stall_s,
                   pings_stopped_after_s=round(last_ping - hung_at, 2), problem=problems[0] if problems else None)
    assert not runner.is_alive() and result == [0]
    stuck = "%s thread is stuck" % ("engine" if stage == "engine" else "capture-pattern")
    # one line per change of the problems (the stall, then maybe its consequence), not one per loop
    assert 1 <= len(problems) <= 2 and all(stuck in line for line in problems)
    assert notify_socket.texts()[-1] == "STOPPING=1"
    assert any("watchdog: healthy again" in r.getMessage() for r in caplog.records)
