"""Soak: the real daemon at full rate for N minutes while its webhook receiver goes down and up and an RTSP camera
drops and returns, checking that nothing leaks, nothing dies and no alert is lost.

    nice .venv/bin/python benchmarks/soak.py --minutes 30            # the run docs/reliability.md records
    .venv/bin/python benchmarks/soak.py --minutes 0.35 --sample-s 1 \\
        --receiver-every-s 10 --receiver-down-s 4 --source-every-s 12 --source-down-s 4   # CI's short version

What runs: `firedetd run` as a subprocess with two cameras, the bundled sample video looped as fast as the engine
takes it (it raises and clears alerts all along) and a loopback RTSP server (tests/support/rtsp_server.py, served
from this process); one webhook sink to an AlertReceiver on a fixed port, also in this process. On a schedule the
receiver is stopped (its port closed, its connections cut) and started again, and the RTSP server likewise. Every
`--sample-s` seconds the daemon's RSS (/proc/PID/status VmRSS) and /metrics are sampled.

At the end the faults stop, deliveries catch up, and the checks are:
- alerts generated (firedetd_alert_events_total) == delivered (firedetd_alerts_delivered_total) == unique
  Idempotency-Keys the receivers accepted == the outbox's delivered count, with nothing pending;
- every stage thread alive (firedetd_thread_alive == 1), every RTSP return reconnected, frames decided in every
  sample interval of the looping video (inference never stalled);
- RSS growth <= --max-rss-growth-pct: the median RSS of the last 10 % of samples against the first 10 % after
  the warm-up; only for runs of --rss-min-minutes or more (a shorter run is all warm-up: arenas and caches
  still filling), else reported as skipped;
- the daemon exits 0 on SIGTERM.

Writes result.json (figures, checks, every sample) and rss.png (when matplotlib imports) into --out
(default benchmarks/results/soak/), prints a summary, and exits 1 if a check failed. Runs on Python 3.6 too.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for path in (REPO, os.path.join(REPO, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)

import yaml  # noqa: E402
from support.daemon import DaemonProcess, free_port, scrape  # noqa: E402
from support.rtsp_server import RtspTestServer, rtsp_server_missing  # noqa: E402

from firedetd.receiver import AlertReceiver  # noqa: E402

SINK = "hook"
STAGE_THREADS = ("capture-sample", "capture-rtsp", "engine", "postprocess")
SETTLE_TIMEOUT_S = 180.0
RECONNECT_TIMEOUT_S = 30.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the faults go on (default 30)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "soak"), help="where result.json goes")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--warmup-s", type=float, default=120.0,
                        help="samples before this are left out of the RSS growth (default 120)")
    parser.add_argument("--receiver-every-s", type=float, default=300.0,
                        help="the receiver goes down once per this period (default 300)")
    parser.add_argument("--receiver-down-s", type=float, default=60.0, help="for this long (default 60)")
    parser.add_argument("--source-every-s", type=float, default=240.0,
                        help="the RTSP camera drops once per this period (default 240)")
    parser.add_argument("--source-down-s", type=float, default=30.0, help="for this long (default 30)")
    parser.add_argument("--max-rss-growth-pct", type=float, default=2.0)
    parser.add_argument("--rss-min-minutes", type=float, default=5.0,
                        help="shorter runs report RSS growth without checking it (default 5)")
    parser.add_argument("--keep-state", action="store_true", help="keep the daemon's state dir and log")
    return parser.parse_args(argv)


def down_in_schedule(t, every_s, down_s):
    """Whether a fault with this period is on at t: it takes the last down_s seconds of each period."""
    return every_s > 0 and down_s > 0 and (t % every_s) >= every_s - down_s


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def metric_sum(values, name, **labels):
    wanted = set(labels.items())
    return sum(v for (n, sample_labels), v in values.items() if n == name and wanted <= set(sample_labels))


def metric_of(values, name, **labels):
    return values.get((name, frozenset(labels.items())))


def outbox_delivered(path):
    """The outbox's own count of deliveries (a counter that outlives pruned rows)."""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        row = db.execute("SELECT value FROM counters WHERE name = 'delivered'").fetchone()
        return row[0] if row else 0
    finally:
        db.close()


def write_daemon_config(workdir, rtsp_url, receiver_url, http_port):
    raw = {
        "cameras": [{"name": "sample", "source": {"uri": "file://" + os.path.join(REPO, "samples", "furg_house6.mp4"),
                                                  "loop": True}},
                    {"name": "rtsp", "source": {"uri": rtsp_url, "latency_ms": 100}}],
        # ongoing events every 2 s of video, besides raised and cleared: about one event a second
        "detection": {"ongoing_interval_s": 2.0},
        "alerts": {"webhooks": [{"url": receiver_url, "name": SINK, "timeout_s": 2.0}],
                   "outbox": {"retry_initial_s": 0.5, "retry_max_s": 5.0}},
        "http": {"addr": "127.0.0.1:%d" % http_port},
        "state_dir": os.path.join(workdir, "state"),
    }
    path = os.path.join(workdir, "firedetd.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(raw, f, default_flow_style=False)
    return path


class Soak(object):
    """The run: the daemon, its receiver and camera, the fault schedule, the samples."""

    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.receiver_port = free_port()
        self.http_port = free_port()
        self.rtsp = RtspTestServer(port=free_port(), fps=15).start()
        self.receivers = [AlertReceiver(port=self.receiver_port).start()]
        config = write_daemon_config(workdir, self.rtsp.url, self.receivers[0].url, self.http_port)
        self.daemon = DaemonProcess(config)
        self.outbox = os.path.join(workdir, "state", "outbox.sqlite")
        self.samples = []
        self.missed_samples = []
        self.transitions = []     # (t, what)
        self.reconnects_s = []    # seconds from the RTSP server's return to source_up == 1
        self.receiver_up = True
        self.source_up = True
        self._waiting_reconnect_since = None
        self.started = None

    # ---- faults

    def set_receiver(self, up, t):
        if up == self.receiver_up:
            return
        if up:
            self.receivers.append(AlertReceiver(port=self.receiver_port).start())
        else:
            self.receivers[-1].stop()
        self.receiver_up = up
        self.transitions.append((round(t, 1), "receiver up" if up else "receiver down"))

    def set_source(self, up, t):
        if up == self.source_up:
            return
        if up:
            self.rtsp = RtspTestServer(port=self.rtsp.port, fps=15).start()
            self._waiting_reconnect_since = t
        else:
            self.rtsp.stop()
        self.source_up = up
        self.transitions.append((round(t, 1), "camera back" if up else "camera dropped"))

    def watch_reconnect(self, t):
        if self._waiting_reconnect_since is None:
            return
        try:
            if metric_of(scrape(self.http_port), "firedetd_source_up", camera="rtsp") == 1:
                self.reconnects_s.append(round(t - self._waiting_reconnect_since, 2))
                self._waiting_reconnect_since = None
        except Exception:  # a scrape can time out on a loaded machine: look again next round
            return
        if self._waiting_reconnect_since is not None and t - self._waiting_reconnect_since > RECONNECT_TIMEOUT_S:
            self.reconnects_s.append(None)
            self._waiting_reconnect_since = None

    # ---- sampling

    def take_sample(self, t):
        values = scrape(self.http_port, timeout=10)
        sample = {"t": round(t, 1), "rss_mib": round(rss_mib(self.daemon.proc.pid), 1),
                  "frames": {c: metric_of(values, "firedetd_frames_processed_total", camera=c) or 0
                             for c in ("sample", "rtsp")},
                  "source_up": {c: metric_of(values, "firedetd_source_up", camera=c) for c in ("sample", "rtsp")},
                  "alive": {name: metric_of(values, "firedetd_thread_alive", thread=name) for name in STAGE_THREADS},
                  "generated": metric_sum(values, "firedetd_alert_events_total"),
                  "delivered": metric_of(values, "firedetd_alerts_delivered_total", sink=SINK) or 0,
                  "pending": metric_of(values, "firedetd_alerts_pending", sink=SINK) or 0,
                  "receiver_up": self.receiver_up, "camera_up": self.source_up}
        self.samples.append(sample)
        return sample

    def received_keys(self):
        return set(a.key for receiver in self.receivers for a in receiver.alerts)

    def settled(self):
        """The counts at a moment when every generated event was delivered and recorded everywhere, or None."""
        keys = self.received_keys()
        values = scrape(self.http_port, timeout=10)
        counts = {"generated": metric_sum(values, "firedetd_alert_events_total"),
                  "delivered": metric_of(values, "firedetd_alerts_delivered_total", sink=SINK) or 0,
                  "received_unique": len(keys), "outbox_delivered": outbox_delivered(self.outbox),
                  "pending": metric_of(values, "firedetd_alerts_pending", sink=SINK)}
        if self.received_keys() != keys or counts["pending"] != 0:
            return None
        if not counts["generated"] == counts["delivered"] == counts["received_unique"] == counts["outbox_delivered"]:
            return None
        counts["alive"] = {name: metric_of(values, "firedetd_thread_alive", thread=name) for name in STAGE_THREADS}
        return counts

    # ---- the run

    def run(self):
        args = self.args
        self.daemon.start()
        wait_for(lambda: metric_of(scrape(self.http_port), "firedetd_source_up", camera="rtsp") == 1, 120,
                 "the daemon to start and both cameras to deliver")
        self.started = time.time()
        duration = args.minutes * 60.0
        next_sample = 0.0
        while True:
            t = time.time() - self.started
            if t >= duration:
                break
            if not self.daemon.alive():
                raise RuntimeError("the daemon died at t=%.0f s (exit %s)" % (t, self.daemon.proc.poll()))
            self.set_receiver(not down_in_schedule(t, args.receiver_every_s, args.receiver_down_s), t)
            self.set_source(not down_in_schedule(t, args.source_every_s, args.source_down_s), t)
            self.watch_reconnect(t)
            if t >= next_sample:
                next_sample += args.sample_s
                try:
                    self.take_sample(t)
                except Exception as e:  # a scrape timing out on a loaded machine is not the daemon's fault
                    self.missed_samples.append((round(t, 1), str(e)[:200]))
            time.sleep(0.2)
        t = time.time() - self.started
        self.set_receiver(True, t)
        self.set_source(True, t)
        settle_started = time.time()
        final = None
        while final is None and time.time() - settle_started < SETTLE_TIMEOUT_S:
            self.watch_reconnect(time.time() - self.started)
            try:
                final = self.settled()
            except Exception:  # a slow scrape: try again
                final = None
            time.sleep(0.2)
        while self._waiting_reconnect_since is not None:
            self.watch_reconnect(time.time() - self.started)
            time.sleep(0.2)
        self.take_sample(time.time() - self.started)
        settle_s = time.time() - settle_started
        self.daemon.signal(signal.SIGTERM)
        stop_started = time.time()
        exit_code = self.daemon.wait(30)
        return final, settle_s, exit_code, time.time() - stop_started

    def close(self):
        if self.daemon.proc is not None and self.daemon.alive():
            self.daemon.kill()
        for receiver in self.receivers:
            receiver.stop()
        self.rtsp.stop()


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.5)
    raise RuntimeError("timed out waiting for %s" % what)


def rss_growth(samples, warmup_s):
    """(first median MiB, last median MiB, growth %) over the samples after the warm-up; None when too few."""
    rss = [s["rss_mib"] for s in samples if s["t"] >= warmup_s]
    if len(rss) < 10:
        return None
    tenth = max(1, len(rss) // 10)
    first, last = statistics.median(rss[:tenth]), statistics.median(rss[-tenth:])
    return first, last, 100.0 * (last - first) / first


def never_stalled(samples):
    """Frames of the looping video were decided in every interval between samples."""
    frames = [s["frames"]["sample"] for s in samples]
    return all(b > a for a, b in zip(frames, frames[1:]))


def evaluate(args, soak, final, settle_s, exit_code, stop_s):
    samples = soak.samples
    growth = rss_growth(samples, args.warmup_s)
    figures = {
        "minutes": args.minutes, "samples": len(samples), "missed_samples": len(soak.missed_samples),
        "rss_mib_first_last_growth_pct": [round(x, 2) for x in growth] if growth else None,
        "rss_mib_min_max": [min(s["rss_mib"] for s in samples), max(s["rss_mib"] for s in samples)],
        "receiver_outages": sum(1 for _, what in soak.transitions if what == "receiver down"),
        "camera_drops": sum(1 for _, what in soak.transitions if what == "camera dropped"),
        "reconnect_s": soak.reconnects_s,
        "max_pending": max(s["pending"] for s in samples),
        "frames_decided": samples[-1]["frames"],
        "duplicates_received": sum(1 for r in soak.receivers for a in r.alerts if a.duplicate),
        "settle_s": round(settle_s, 1), "stop_s": round(stop_s, 2), "exit_code": exit_code,
        "final_counts": final,
    }
    checks = {
        "every alert delivered once (generated == delivered == received == outbox)": final is not None,
        "every stage thread alive at the end": bool(final) and all(v == 1 for v in final["alive"].values()),
        "every camera return reconnected": all(r is not None for r in soak.reconnects_s),
        "inference never stalled": never_stalled(samples),
        "SIGTERM exit 0": exit_code == 0,
    }
    rss_check = "RSS growth <= %.1f %%" % args.max_rss_growth_pct
    if args.minutes >= args.rss_min_minutes and growth:
        checks[rss_check] = growth[2] <= args.max_rss_growth_pct
    else:
        figures["rss_check"] = "skipped: a %g-minute run is all warm-up (checked from %g minutes)" % (
            args.minutes, args.rss_min_minutes)
    return figures, checks


def plot(path, soak, args):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write("matplotlib is not installed: no plot written\n")
        return None
    samples = soak.samples
    minutes = [s["t"] / 60.0 for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.plot(minutes, [s["rss_mib"] for s in samples], color="tab:blue")
    top.set_ylabel("daemon RSS (MiB)")
    top.set_title("firedetd soak: %.0f min, receiver down %gs every %gs, camera dropped %gs every %gs" % (
        args.minutes, args.receiver_down_s, args.receiver_every_s, args.source_down_s, args.source_every_s))
    bottom.plot(minutes, [s["pending"] for s in samples], color="tab:red", label="alerts pending")
    bottom.set_ylabel("alerts pending")
    bottom.set_xlabel("minutes")
    for axis in (top, bottom):
        for start, end, colour in _windows(soak.transitions, "receiver down", "receiver up", "tab:red") + \
                _windows(soak.transitions, "camera dropped", "camera back", "tab:orange"):
            axis.axvspan(start / 60.0, end / 60.0, color=colour, alpha=0.12, lw=0)
    bottom.legend(loc="upper right", title="red: receiver down, orange: camera dropped")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _windows(transitions, down, up, colour):
    windows, start = [], None
    for t, what in transitions:
        if what == down:
            start = t
        elif what == up and start is not None:
            windows.append((start, t, colour))
            start = None
    return windows


def main(argv=None):
    args = parse_args(argv)
    reason = rtsp_server_missing()
    if reason:
        sys.stderr.write("soak: %s\n" % reason)
        return 2
    workdir = tempfile.mkdtemp(prefix="firedetd-soak-")
    soak = Soak(args, workdir)
    try:
        final, settle_s, exit_code, stop_s = soak.run()
    finally:
        soak.close()
    figures, checks = evaluate(args, soak, final, settle_s, exit_code, stop_s)
    os.makedirs(args.out, exist_ok=True)
    result = {"figures": figures, "checks": checks, "transitions": soak.transitions, "samples": soak.samples,
              "arguments": vars(args), "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                                   "load_1_5_15": list(os.getloadavg())},
              "daemon_log": soak.daemon.log_path if args.keep_state else None}
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    picture = plot(os.path.join(args.out, "rss.png"), soak, args)
    if not args.keep_state:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures, indent=2, sort_keys=True))
    for name, ok in sorted(checks.items()):
        print("%s  %s" % ("ok  " if ok else "FAIL", name))
    print("wrote %s%s" % (os.path.join(args.out, "result.json"), " and " + picture if picture else ""))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
