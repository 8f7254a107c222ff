"""What the fault tests share: configs for the real daemon on the bundled sample video, metric sums, the outbox as
a reader sees it, and the figures each test reports for docs/reliability.md."""

import contextlib
import json
import os
import signal
import sqlite3

import yaml
from support.daemon import REPO, DaemonProcess

SAMPLE_VIDEO = os.path.join(REPO, "samples", "furg_house6.mp4")
SINK = "hook"

# The flapping video (the bundled house fire cut with black every half second, tests/support/video_files.py) under
# these settings raises and clears an incident every second of video, each raise with a snapshot: many real events
# in a few seconds at full rate here, yet fewer than a loaded 2-core machine delivers (about 12 a second), so a
# backlog drains. It does not lean on the model hesitating: fire frames are fire, black frames are never decided.
FLAPPING_DETECTION = {
    "smoothing_alpha": 1.0, "cooldown_s": 0, "ongoing_interval_s": 2.0, "clear_after_s": 0,
    "motion": {"enabled": False},
    "fire": {"on": 0.5, "off": 0.5, "raise_frames": 4, "clear_frames": 8},
    "smoke": {"on": 0.5, "off": 0.5, "raise_frames": 4, "clear_frames": 8},
}
# ...and under these nothing is ever raised (a score would have to stay at 1.0 for 1000 frames).
SILENT_DETECTION = {
    "fire": {"on": 1.0, "off": 0.35, "raise_frames": 1000},
    "smoke": {"on": 1.0, "off": 0.35, "raise_frames": 1000},
}
# Retries fast enough for a test to watch an outage end; the daemon's defaults are 1 s doubling to 300 s.
FAST_RETRIES = {"retry_initial_s": 0.2, "retry_max_s": 1.0}


def sample_camera(name="sample", **source):
    """A camera reading the flapping fire video in a loop, as fast as the engine takes frames."""
    from support.video_files import flapping_fire_video

    options = {"uri": "file://" + flapping_fire_video(SAMPLE_VIDEO), "loop": True}
    options.update(source)
    return {"name": name, "source": options}


def webhook(url, **options):
    """The webhook sink named SINK."""
    hook = {"url": url, "name": SINK}
    hook.update(options)
    return hook


def write_config(directory, cameras, webhooks=(), detection=None, outbox=None, http_port=None, **top):
    """Write firedetd.yaml into `directory` (state in directory/state; HTTP only when http_port is given)."""
    outbox_options = dict(FAST_RETRIES)
    outbox_options.update(outbox or {})
    raw = {"cameras": list(cameras), "alerts": {"webhooks": list(webhooks), "outbox": outbox_options},
           "state_dir": str(directory / "state"),
           "http": {"addr": "127.0.0.1:%d" % http_port} if http_port else {"enabled": False}}
    if detection is not None:
        raw["detection"] = detection
    raw.update(top)
    path = directory / "firedetd.yaml"
    path.write_text(yaml.safe_dump(raw, default_flow_style=False))
    return path


@contextlib.contextmanager
def running_daemon(config_path, *args, **kwargs):
    """A started DaemonProcess, SIGKILLed on the way out if the test left it running."""
    daemon = DaemonProcess(config_path, *args, **kwargs).start()
    try:
        yield daemon
    finally:
        daemon.kill()
        daemon.wait(10)


def stop_daemon(daemon, timeout=15):
    """SIGTERM and wait; the exit code."""
    daemon.signal(signal.SIGTERM)
    return daemon.wait(timeout)


def total(values, name, **labels):
    """Sum of every sample of `name` whose labels include `labels` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, sample_labels), v in values.items() if n == name and wanted <= set(sample_labels))


def unique_in_order(keys):
    """Keys in order of first appearance."""
    seen, order = set(), []
    for key in keys:
        if key not in seen:
            seen.add(key)
            order.append(key)
    return order


def outbox_path(config_dir):
    return str(config_dir / "state" / "outbox.sqlite")


def outbox_deliveries(path, sink=SINK):
    """[(event_key, delivered: bool)] of one sink in enqueue order, read beside a running daemon (WAL readers)."""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        return [(key, delivered is not None) for key, delivered in db.execute(
            "SELECT e.event_key, d.delivered_ns FROM events e JOIN deliveries d ON d.event_id = e.id "
            "WHERE d.sink = ? ORDER BY e.id", (sink,))]
    finally:
        db.close()


def record_figures(test_name, **figures):
    """Print the figures a test measured (pytest -s shows them) and append them to $FIREDETD_FAULT_FIGURES."""
    line = json.dumps({"test": test_name, "figures": figures}, sort_keys=True)
    print("FIGURES " + line)
    target = os.environ.get("FIREDETD_FAULT_FIGURES")
    if target:
        with open(target, "a") as f:
            f.write(line + "\n")
