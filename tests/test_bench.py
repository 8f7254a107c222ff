"""firedetd/bench.py: the plumbing of `firedetd bench` (fields present, numbers positive, JSON valid).

Never the speed itself: timings on these shared machines are noise; benchmarks/ prints ratios instead.
The runs are real: the shipped ONNX model, the bundled video through GStreamer, a `firedetd bench` subprocess.
"""

import io
import json
import os
import subprocess
import sys

import pytest

from firedetd.bench import (
    Progress,
    end_to_end,
    engine_only,
    jain_index,
    latency_summary,
    per_camera_rates,
    process_memory_mib,
    summarize_decisions,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench_cli(*args):
    process = subprocess.Popen([sys.executable, "-m", "firedetd", "bench", "--json"] + list(args), cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out), err


def assert_latency_fields(latency):
    assert set(latency) >= {"count", "p50", "p90", "p99", "mean", "max"}
    assert latency["count"] > 0
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]


def test_cli_json_has_engine_only_and_end_to_end_figures_and_the_efficiency(tmp_path):
    report, err = run_bench_cli("--iterations", "5", "--warmup", "2", "--frames", "30", "--state-dir",
                                str(tmp_path))
    engine, e2e = report["engine_only"], report["end_to_end"]
    assert engine["fps"] > 0 and engine["iterations"] == 5 and engine["batch"] == 1
    assert_latency_fields(engine["latency_ms"])
    assert e2e["fps"] > 0 and e2e["frames"] >= 30 and e2e["stopped_by"] == "frames"
    assert_latency_fields(e2e["latency_ms"])
    assert e2e["dropped"] >= 0 and e2e["peak_rss_mib"] > 0 and e2e["cpu_ms_per_frame"] > 0
    assert e2e["sources"][0].endswith("furg_house6.mp4")
    assert report["efficiency"] > 0 and report["peak_rss_mib"] >= e2e["peak_rss_mib"]
    assert report["machine"]["nproc"] >= 1 and report["model"]["name"]
    assert "latencies_ms" not in engine and "latencies_ms" not in e2e  # per-frame lists stay out of the JSON
    assert "end-to-end" in err  # the progress line went to stderr, not into the JSON
    # stderr is a pipe here, as in a log or CI: whole lines, nothing that only a terminal can draw
    assert "\r" not in err and "\x1b" not in err and "bench: engine-only 5/5\n" in err


def test_cli_table_names_both_modes_and_the_ratio(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "firedetd", "bench", "--quiet", "--iterations", "3",
                                "--warmup", "1", "--frames", "25", "--state-dir", str(tmp_path)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "engine-only" in out and "end-to-end" in out and "pipeline efficiency" in out
    assert err == ""


def test_progress_off_a_terminal_writes_each_phases_first_and_last_step_as_whole_lines():
    log = io.StringIO()
    progress = Progress(stream=log)
    for i in range(200):
        progress.show("engine-only %d/200" % (i + 1))
    progress.done()
    progress.show("end-to-end 0 frames decided, 0 s")
    progress.done()
    assert log.getvalue().splitlines() == ["bench: engine-only 1/200", "bench: engine-only 200/200",
                                           "bench: end-to-end 0 frames decided, 0 s"]


def test_engine_only_on_a_batch_reports_frames_per_second_for_the_whole_batch(spec, make_config):
    config = make_config()
    result = engine_only(spec, config.model, batch=2, iterations=3, warmup=1)
    assert result["batch"] == 2 and len(result["latencies_ms"]) == 3
    assert result["fps"] > 0 and result["engine"] == "onnxruntime"


def test_end_to_end_with_two_live_cameras_reports_each_camera_and_fairness(spec, make_config):
    config = make_config({"cameras": [{"name": "a", "source": "test://?pattern=ball&fps=30&width=320&height=240"},
                                      {"name": "b", "source": "test://?pattern=ball&fps=30&width=320&height=240"}],
                          "http": {"enabled": False}})
    result = end_to_end(config, spec, frames=40, warmup_frames=4)
    assert set(result["cameras"]) == {"a", "b"}
    assert all(c["frames"] > 0 and c["fps"] > 0 for c in result["cameras"].values())
    assert 0 < result["fairness"]["min_over_max"] <= 1 and 0.5 <= result["fairness"]["jain"] <= 1
    assert result["decided_s"] == sorted(result["decided_s"])
    assert len(result["latencies_ms"]) == len(result["decided_s"]) == result["frames"] - result["warmup_frames"]


def test_a_source_that_ends_stops_the_run_by_itself(spec, make_config):
    config = make_config({"cameras": [{"name": "short", "source": "test://?pattern=ball&frames=15&live=false&width=320&height=240"}],
                          "http": {"enabled": False}})
    result = end_to_end(config, spec, warmup_frames=2)
    assert result["stopped_by"] == "end of sources"
    assert result["frames"] == 15 and result["captured"] == 15 and result["dropped"] == 0


def test_latency_summary_orders_its_percentiles_and_handles_no_samples():
    summary = latency_summary([float(v) for v in range(1, 101)])
    assert summary["count"] == 100 and summary["p50"] == pytest.approx(50.5)
    assert summary["p90"] == pytest.approx(90.1) and summary["p99"] == pytest.approx(99.01)
    assert latency_summary([])["count"] == 0


def test_jain_index_is_one_when_even_and_one_over_n_when_one_camera_gets_everything():
    assert jain_index([10, 10, 10, 10]) == pytest.approx(1.0)
    assert jain_index([10, 0, 0, 0]) == pytest.approx(0.25)


def test_per_camera_rates_count_only_the_window_in_which_every_camera_delivered():
    # camera b's file ends at t=1 s; a goes on to t=2 s: a's rate is judged over the first second only
    decisions = [("a", int(t * 1e8), 1.0, 1.0) for t in range(21)] + [("b", int(t * 1e8), 1.0, 1.0)
                                                                      for t in range(11)]
    decisions.sort(key=lambda d: d[1])
    rates = per_camera_rates(decisions, ["a", "b"])
    assert rates["a"]["frames"] == 21 and rates["b"]["frames"] == 11
    assert rates["a"]["fps"] == pytest.approx(rates["b"]["fps"])


def test_summarize_decisions_leaves_out_the_warm_up():
    decisions = [("cam0", i * 10 ** 7, 500.0 if i < 5 else 5.0, 4.0) for i in range(50)]
    result = summarize_decisions(decisions, ["cam0"], warmup_frames=5)
    assert result["warmup_frames"] == 5 and result["latency_ms"]["max"] == 5.0
    assert result["fps"] == pytest.approx(100.0)
    assert 0 < result["engine_busy"] <= 1


def test_process_memory_reads_rss_and_peak_of_this_process_and_of_a_child():
    mine = process_memory_mib()
    assert 0 < mine["rss"] <= mine["peak"]
    child = subprocess.Popen([sys.executable, "-c", "print('up', flush=True); import time; time.sleep(5)"],
                             stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert child.stdout.readline() == "up\n"   # past exec: a process being exec'd shows no memory
        theirs = process_memory_mib(child.pid)
    finally:
        child.kill()
        child.wait()
    assert 0 < theirs["rss"] <= theirs["peak"]
