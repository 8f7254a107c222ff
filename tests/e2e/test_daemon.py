"""The whole daemon as a subprocess: real video, real engine, real webhook receiver, real /metrics scrapes,
real signals and a real kill -9 with the SQLite outbox carrying undelivered alerts across the restart."""

import base64
import csv
import os
import signal
import sqlite3
import time

import cv2
import numpy as np
import pytest
from support.daemon import DaemonProcess, free_port, metric, scrape, wait_until

from firedetd.alerts.webhook import verify_signature
from firedetd.receiver import AlertReceiver

SECRET = "e2e-secret"


def synthetic_video(shared_dir):
    base = os.path.join(shared_dir, "data", "video", "synthetic_fire_smoke_40s")
    return base + ".mp4", base + ".frames.csv"


def truth_by_frame(csv_path):
    labels = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            for i in range(int(row["first_frame"]), int(row["last_frame"]) + 1):
                labels[i] = row["label"]
    return labels


def write_config(tmp_path, source, webhook_url, port, extra=""):
    path = tmp_path / "firedetd.yaml"
    path.write_text(
        "cameras:\n  - name: lab\n    source:\n%s\n"
        "alerts:\n  webhooks:\n    - url: %s\n      name: hook\n      secret_env: E2E_SECRET\n"
        "  outbox:\n    retry_initial_s: 0.2\n    retry_max_s: 1.0\n"
        "http:\n  addr: 127.0.0.1:%d\n"
        "state_dir: %s\n%s" % (source, webhook_url, port, tmp_path / "state", extra))
    return path


def indent(mapping):
    return "\n".join("      %s: %s" % (k, v) for k, v in mapping.items())


def test_labelled_video_alerts_arrive_signed_with_snapshots_and_metrics_agree(shared_dir, tmp_path):
    video, truth_csv = synthetic_video(shared_dir)
    truth = truth_by_frame(truth_csv)
    port = free_port()
    with AlertReceiver(secret=SECRET) as receiver:
        config = write_config(tmp_path, indent({"uri": "file://" + video, "loop": "true"}), receiver.url, port)
        daemon = DaemonProcess(config, env={"E2E_SECRET": SECRET}).start()
        try:
            # one full pass of the 1000-frame video, and the events it caused all delivered
            wait_until(lambda: (metric(scrape(port), "firedetd_frames_processed_total", camera="lab") or 0) >= 1000,
                       120, message="a full pass of the video")
            values = wait_until(lambda: _quiet_scrape(port, receiver), 30, message="delivery to catch up")
            alerts = [a for a in receiver.alerts]
            assert daemon.alive()
            daemon.signal(signal.SIGTERM)
            started = time.time()
            assert daemon.wait(10) == 0, daemon.log()
            assert time.time() - started < 5.0 + 1.0  # drained within the 5 s budget (+ process exit)
        finally:
            daemon.kill()
    raised = [a.body for a in alerts if a.body["state"] == "raised"]
    assert any(b["kind"] == "fire" for b in raised), [a.body for a in alerts]
    for alert in alerts:
        assert verify_signature(SECRET, alert.headers["x-firedetd-timestamp"], alert.raw,
                                alert.headers["x-firedetd-signature"], time.time())
    for body in raised:
        frame = body["frame_seq"] % 1000  # the file loops; every frame is decided (no drops on files)
        assert truth[frame] != "none", "alert raised in a none segment: %s at frame %d" % (body["kind"], frame)
        jpeg = base64.b64decode(body["snapshot"]["data_base64"])
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[1] == 640
    assert metric(values, "firedetd_alerts_delivered_total", sink="hook") == len(alerts)
    events = sum(v for (name, labels), v in values.items() if name == "firedetd_alert_events_total")
    assert events == len(alerts)
    assert metric(values, "firedetd_frames_dropped_total", camera="lab") == 0
    assert metric(values, "firedetd_source_up", camera="lab") == 1


def _quiet_scrape(port, receiver):
    """A scrape taken when nothing is pending and the receiver's count matches what the daemon says it delivered."""
    before = len(receiver.alerts)
    values = scrape(port)
    if metric(values, "firedetd_alerts_pending", sink="hook") != 0:
        return None
    if metric(values, "firedetd_alerts_delivered_total", sink="hook") != before or len(receiver.alerts) != before:
        return None
    return values if before else None


def test_kill_9_keeps_undelivered_alerts_and_a_restart_delivers_them(shared_dir, tmp_path):
    video, _ = synthetic_video(shared_dir)
    port = free_port()
    dead_port = free_port()  # nothing listens: every delivery fails and stays in the outbox
    # no quiet time: the fire and the smoke segment are two incidents, four events to keep
    config = write_config(tmp_path, indent({"uri": "file://" + video}), "http://127.0.0.1:%d/alerts" % dead_port, port,
                          "detection:\n  clear_after_s: 0\n")
    daemon = DaemonProcess(config, env={"E2E_SECRET": SECRET}).start()
    try:
        wait_until(lambda: (metric(scrape(port), "firedetd_alerts_pending", sink="hook") or 0) >= 2, 120,
                   message="undelivered alerts")
    finally:
        daemon.kill()  # SIGKILL: no drain, no goodbye
    with sqlite3.connect(str(tmp_path / "state" / "outbox.sqlite")) as db:
        stored = {row[0] for row in db.execute("SELECT event_key FROM events")}
    assert len(stored) >= 2
    with AlertReceiver(port=dead_port, secret=SECRET) as receiver:
        # restart on a source without fire: what arrives is what the killed process left behind
        config.write_text(config.read_text().replace("file://" + video, "test://?pattern=black&fps=10&live=false"))
        daemon = DaemonProcess(config, "--duration", "20", env={"E2E_SECRET": SECRET}).start()
        try:
            wait_until(lambda: stored <= set(receiver.keys()), 30, message="the stored alerts to arrive")
        finally:
            daemon.signal(signal.SIGTERM)
            daemon.wait(10)
    assert stored <= set(receiver.keys())
    duplicates = [a for a in receiver.alerts if a.duplicate]
    assert all(a.key in stored for a in duplicates)


@pytest.mark.parametrize("content,expected", [
    ("cameras:\n  - name: a\n    source: htp://x\n", "cameras[0].source.uri: unsupported scheme 'htp'"),
    ("detection:\n  fire:\n    on: 2\n", "detection.fire.on: 2 is out of range"),
    ("cameras:\n  - name: a\n   bad: indent\n", "YAML syntax error"),
])
def test_bad_config_is_one_line_naming_the_key_and_exit_2(tmp_path, content, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    daemon = DaemonProcess(path).start()
    code = daemon.wait(60)
    output = daemon.log().strip()
    assert code == 2
    assert expected in output and len(output.splitlines()) == 1 and "Traceback" not in output
