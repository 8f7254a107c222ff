"""Memory: peak RSS of a real `firedetd run` with the shipped model, and RSS growth over a soak run.

The daemon runs as a subprocess with its default config (shipped model, HTTP endpoint and status page
on a free loopback port, snapshots on); its /proc/PID/status VmRSS and VmHWM are sampled every
`--interval` seconds.

- default: the bundled video once, as fast as the pipeline takes it: peak RSS (VmHWM at exit).
- `--minutes M` (soak): the bundled video looped at its own rate (30 fps, like a camera) for M minutes:
  RSS growth = median RSS of the last 10 % of samples vs the first 10 % after the warm-up
  (the first `--warmup-s` seconds), and a PNG of RSS over time.

    .venv/bin/python benchmarks/memory.py                     # peak RSS
    nice .venv/bin/python benchmarks/memory.py --minutes 30   # soak (docs/benchmarks.md)

Goals: peak RSS <= 300 MiB; growth over 30 minutes <= 2 %.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import harness

from firedetd.bench import process_memory_mib

PEAK_GOAL_MIB = 300.0
GROWTH_GOAL_PCT = 2.0


def free_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def write_daemon_config(directory, soak):
    """A config for the run: the bundled video (looped at its own rate when soaking), a free metrics port."""
    path = os.path.join(directory, "firedetd.yaml")
    source = "uri: %s" % harness.sample_uri()
    if soak:
        source += ", loop: true, realtime: true"
    with open(path, "w") as f:
        f.write("cameras:\n  - name: sample\n    source: {%s}\n" % source)
        f.write("http:\n  addr: 127.0.0.1:%d\n" % free_port())
        f.write("state_dir: %s\n" % os.path.join(directory, "state"))
        f.write("log_level: warning\n")
    return path


def sample_daemon(duration_s=0.0, interval_s=0.5, soak=False, python=None, progress=True):
    """Run `firedetd run` and sample its memory until it exits (or duration_s, then SIGTERM); return
    {"samples": [[t_s, rss_mib, peak_mib]], "exit_code", "peak_rss_mib"}."""
    directory = tempfile.mkdtemp(prefix="firedetd-memory-")
    command = [python or sys.executable, "-m", "firedetd", "run", "-c", write_daemon_config(directory, soak)]
    if duration_s:
        command += ["--duration", str(duration_s)]
    env = dict(os.environ, PYTHONPATH=harness.REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log_path = os.path.join(directory, "daemon.log")
    with open(log_path, "w") as log:
        started = time.time()
        process = subprocess.Popen(command, cwd=harness.REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
        samples = _sample_until_exit(process, started, interval_s, progress)
    return {"samples": samples, "exit_code": process.returncode, "log": log_path,
            "peak_rss_mib": max([s[2] for s in samples] or [0.0])}


def _sample_until_exit(process, started, interval_s, progress):
    samples = []
    try:
        while process.poll() is None:
            try:
                memory = process_memory_mib(process.pid)
            except OSError:   # it just exited
                break
            if not memory["rss"]:   # just forked, exec-ing, or a zombie: nothing to show
                time.sleep(0.01)
                continue
            t = time.time() - started
            samples.append([round(t, 2), memory["rss"], memory["peak"]])
            if progress and len(samples) % 20 == 1:
                sys.stderr.write("\r\033[Kmemory: %.0f s, RSS %.1f MiB, peak %.1f MiB" % (t, memory["rss"],
                                                                                         memory["peak"]))
            time.sleep(interval_s)
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(30)
        if progress:
            sys.stderr.write("\n")
    return samples


def rss_growth(samples, warmup_s):
    """Growth in % of the median RSS of the last 10 % of samples over the first 10 % after warm-up."""
    steady = [s for s in samples if s[0] >= warmup_s]
    if len(steady) < 20:
        return None
    tenth = max(1, len(steady) // 10)
    first = statistics.median(s[1] for s in steady[:tenth])
    last = statistics.median(s[1] for s in steady[-tenth:])
    return {"first_mib": round(first, 2), "last_mib": round(last, 2),
            "growth_pct": round((last - first) / first * 100, 3)}


def thin(samples, most=600):
    """At most `most` samples, evenly spaced, for the JSON (the plot uses them all)."""
    step = max(1, len(samples) // most)
    return samples[::step]


def plot(samples, path, growth, warmup_s):
    plt = harness.pyplot()
    if plt is None:
        return None
    samples = [s for s in samples if s[0] >= 5.0]   # leave out start-up, or the axis spans 0..peak
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot([s[0] / 60.0 for s in samples], [s[1] for s in samples], label="RSS", linewidth=1)
    ax.plot([s[0] / 60.0 for s in samples], [s[2] for s in samples], label="peak RSS (VmHWM)", linewidth=1,
            linestyle="--")
    ax.axvline(warmup_s / 60.0, color="grey", linewidth=0.8, linestyle=":", label="end of warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MiB (axis not from 0)")
    title = "firedetd run: RSS over time (bundled video looped at 30 fps)"
    if growth:
        title += "\ngrowth %.2f %% (median of last 10 %% vs first 10 %% after warm-up)" % growth["growth_pct"]
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=0.0, help="soak for this long (default: one pass of the "
                                                                   "video as fast as possible, for peak RSS)")
    parser.add_argument("--interval", type=float, default=0.5, help="sampling interval in seconds (default 0.5)")
    parser.add_argument("--warmup-s", type=float, default=60.0, help="soak: seconds left out before growth is "
                                                                     "measured (default 60)")
    parser.add_argument("--out", help="write results here instead of benchmarks/results/memory[_soak]/")
    args = parser.parse_args(argv)
    soak = args.minutes > 0
    run = sample_daemon(args.minutes * 60.0, args.interval, soak)
    name = "memory_soak" if soak else "memory"
    out_dir = args.out or harness.results_dir(name)
    growth = rss_growth(run["samples"], args.warmup_s) if soak else None
    result = {"mode": "soak" if soak else "peak", "minutes": args.minutes, "exit_code": run["exit_code"],
              "peak_rss_mib": run["peak_rss_mib"], "peak_goal_mib": PEAK_GOAL_MIB, "growth": growth,
              "growth_goal_pct": GROWTH_GOAL_PCT, "warmup_s": args.warmup_s, "interval_s": args.interval,
              "samples_total": len(run["samples"]), "samples": thin(run["samples"])}
    path = harness.write_result(name, result, out_dir)
    picture = plot(run["samples"], os.path.join(out_dir, "rss.png"), growth, args.warmup_s) if soak else None
    print("peak RSS %.1f MiB (goal <= %.0f MiB); exit code %s" % (run["peak_rss_mib"], PEAK_GOAL_MIB,
                                                                 run["exit_code"]))
    if growth:
        print("RSS growth %.3f %% over %.0f min (%.1f -> %.1f MiB; goal <= %.0f %%)" % (
            growth["growth_pct"], args.minutes, growth["first_mib"], growth["last_mib"], GROWTH_GOAL_PCT))
    print("-> %s%s" % (path, ", " + picture if picture else ""))
    return 0 if run["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
