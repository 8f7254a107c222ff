"""What every benchmark script shares: the bench config, interleaved rounds, and where figures are written.

The machines these run on are shared (a training job, other test suites): absolute times drift by 2-3x
within minutes. So each script runs the things it compares alternately in one process, several rounds
(A B B A A B ...), and reports the median of the per-round ratios with their spread.
Results go to benchmarks/results/<name>/result.json (+ PNG plots when matplotlib imports).
"""

import json
import os
import statistics
import sys
from dataclasses import replace

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:   # run from a checkout without installing
    sys.path.insert(0, REPO)

from firedetd.bench import Progress, bench_cameras, machine_info  # noqa: E402
from firedetd.config import build_config  # noqa: E402
from firedetd.modelspec import load_spec  # noqa: E402
from firedetd.paths import sample_video_path  # noqa: E402

RESULTS_DIR = os.path.join(HERE, "results")


def sample_uri():
    """The bundled video as a file:// URI (read as fast as the pipeline takes it)."""
    return "file://" + sample_video_path()


def make_config(source_uri=None, cameras=1, raw=None, state_dir=None):
    """The daemon's default Config (shipped model), watching `cameras` copies of `source_uri`."""
    import tempfile

    raw = dict(raw or {})
    # only a TensorRT plan cache would live here; each run's outbox goes to its own throw-away directory
    raw.setdefault("state_dir", state_dir or os.path.join(tempfile.gettempdir(), "firedetd-benchmark-state"))
    config = build_config(raw)
    return replace(config, cameras=bench_cameras(source_uri or sample_uri(), cameras))


def with_model(config, **changes):
    """The config with model settings changed (threads, variant, max_batch, ...)."""
    return replace(config, model=replace(config.model, **changes))


def shipped_spec(config):
    return load_spec(config.model.spec)


def interleaved(rounds, runners, progress=True, label=""):
    """Run each of `runners` ({name: callable() -> result}) once per round, reversing the order every other
    round so slow drift of the machine's load hits each about equally; returns {name: [result per round]}."""
    names = list(runners)
    results = {name: [] for name in names}
    for i in range(rounds):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            if progress:
                sys.stderr.write("\r\033[K%s round %d/%d: %s" % (label, i + 1, rounds, name))
                sys.stderr.flush()
            results[name].append(runners[name]())
    if progress:
        sys.stderr.write("\n")
    return results


def ratio_summary(numerators, denominators):
    """Median, min and max of per-round ratios numerators[i] / denominators[i]."""
    ratios = [float(a) / b for a, b in zip(numerators, denominators) if b]
    if not ratios:
        return {"median": 0.0, "min": 0.0, "max": 0.0, "rounds": []}
    return {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
            "max": round(max(ratios), 3), "rounds": [round(r, 3) for r in ratios]}


def median_of(values):
    return round(statistics.median(values), 3) if values else 0.0


def quiet_progress(enabled):
    """A Progress line for the pipeline runs inside a round (off by default: the round line says enough)."""
    return Progress(enabled)


def results_dir(name):
    path = os.path.join(RESULTS_DIR, name)
    os.makedirs(path, exist_ok=True)
    return path


def write_result(name, result, out_dir=None):
    """Write result.json (with the machine it ran on) under results/<name>/ or out_dir; return its path."""
    path = os.path.join(out_dir or results_dir(name), "result.json")
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    result = dict(result)
    result.setdefault("machine", machine_info())
    result.setdefault("command", " ".join([os.path.relpath(sys.argv[0], REPO) if sys.argv[0] else "?"] + sys.argv[1:]))
    with open(path, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def pyplot():
    """matplotlib.pyplot with a file-only backend, or None where matplotlib is missing (Python 3.6 runtime)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write("matplotlib is not installed: no plot written\n")
        return None
    return plt


def add_common_arguments(parser, rounds=5):
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds (default %d)" % rounds)
    parser.add_argument("--out", help="write results here instead of benchmarks/results/<name>/")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: "
                                                                  "the config's, 2)")
