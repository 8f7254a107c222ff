"""benchmarks/*.py: each script's core runs on tiny sizes and returns the figures its report is built from.

Plumbing only (fields present, numbers positive, ratios computed): the speed itself is never asserted.
Real runs: the shipped model, the bundled video through GStreamer, a real `firedetd run` subprocess.
"""

import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import harness  # noqa: E402
import live_latency  # noqa: E402
import memory  # noqa: E402
import model_variants  # noqa: E402
import multi_camera  # noqa: E402
import naive_loop  # noqa: E402
import pipeline_efficiency  # noqa: E402


def test_interleaved_rounds_alternate_the_order_and_keep_every_result():
    calls = []
    runs = harness.interleaved(3, {"a": lambda: calls.append("a") or len(calls),
                                   "b": lambda: calls.append("b") or len(calls)}, progress=False)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert runs == {"a": [1, 4, 5], "b": [2, 3, 6]}


def test_ratio_summary_is_the_median_of_per_round_ratios():
    summary = harness.ratio_summary([2.0, 3.0, 10.0], [1.0, 1.0, 2.0])
    assert summary["median"] == 3.0 and summary["min"] == 2.0 and summary["max"] == 5.0
    assert summary["rounds"] == [2.0, 3.0, 5.0]


def test_write_result_adds_the_machine_and_writes_valid_json(tmp_path):
    path = harness.write_result("x", {"ratio": 1.5}, str(tmp_path))
    with open(path) as f:
        data = json.load(f)
    assert data["ratio"] == 1.5 and data["machine"]["nproc"] >= 1 and data["command"]


def test_pipeline_efficiency_reports_the_ratio_and_its_bound_per_thread_count():
    result = pipeline_efficiency.measure(rounds=1, frames=30, iterations=3, threads=(1,), progress=False)
    one = result["by_threads"]["1"]
    assert one["efficiency"]["median"] > 0 and 0 < one["no_overlap_bound"]["median"] < 1
    assert one["engine_only_fps"] > 0 and one["end_to_end_fps"] > 0
    assert result["no_inference_cpu_ms_per_frame"] > 0
    assert "threads 1" in pipeline_efficiency.format_result(result)


def test_naive_loop_decides_frames_with_the_shipped_model(spec):
    result = naive_loop.naive_loop(harness.sample_video_path(), spec, threads=1, frames=25, warmup=5)
    assert result["frames"] == 25 and result["fps"] > 0 and result["cpu_ms_per_frame"] > 0
    assert result["latency_ms"]["count"] == 20


def test_multi_camera_gives_total_per_camera_fps_and_fairness():
    result = multi_camera.measure(rounds=1, counts=(1, 2), frames_per_camera=12, progress=False)
    two = result["by_count"]["2"]
    assert set(two["per_camera_fps"]) == {"cam0", "cam1"} and two["total_fps"] > 0
    assert 0 < two["fairness_jain"] <= 1 and two["scaling_vs_1"]["median"] > 0
    assert "2 camera(s)" in multi_camera.format_result(result)


def test_live_latency_windows_and_cdf_summarise_a_run():
    latencies = [float(i % 10 + 1) for i in range(100)]
    decided = [i * 0.1 for i in range(100)]
    windows = live_latency.split_windows(latencies, decided, 10)
    assert len(windows) == 10 and sum(w["count"] for w in windows) == 100
    cdf = live_latency.cdf_points(latencies, points=20)
    assert cdf[-1] == (10.0, 1.0) and all(a[0] <= b[0] and a[1] < b[1] for a, b in zip(cdf, cdf[1:]))


def test_live_latency_compares_p99_with_the_engine_bound():
    result = live_latency.measure(minutes=0.04, rates=(30,), iterations=5, progress=False)
    r = result["rates"]["30"]
    assert r["bound_ms"] > 1000.0 / 30 and r["p99_over_bound"] > 0 and r["windows"]
    assert r["latency_ms"]["count"] > 0 and "latencies_ms" not in r["run"]


def test_memory_samples_a_real_daemon_and_computes_growth():
    run = memory.sample_daemon(duration_s=3.0, interval_s=0.2, progress=False)
    with open(run["log"]) as log:
        assert run["exit_code"] == 0, log.read()
    assert run["peak_rss_mib"] > 0 and all(0 < s[1] <= s[2] for s in run["samples"])
    flat = [[float(t), 100.0, 100.0] for t in range(100)]
    rising = [[float(t), 100.0 + t / 10.0, 110.0] for t in range(100)]
    assert memory.rss_growth(flat, 10)["growth_pct"] == 0.0
    assert memory.rss_growth(rising, 10)["growth_pct"] > 5


def test_model_variants_rank_fp32_int8_and_fp16_where_it_converts():
    result = model_variants.measure(rounds=1, iterations=3, progress=False)
    variants = result["by_variant"]
    assert {"fp32", "int8"} <= set(variants)
    assert variants["fp32"]["latency_ratio_vs_fp32"]["median"] == 1.0
    assert all(v["fps"] > 0 and v["file_mib"] > 0 for v in variants.values())
    if "fp16" not in variants:
        assert result["notes"] and "FP16 skipped" in result["notes"][0]


def test_fp16_conversion_writes_a_model_file_with_its_hash(spec, tmp_path):
    pytest.importorskip("onnxconverter_common")
    model_file, why = model_variants.fp16_model_file(spec.files["fp32"].path, str(tmp_path))
    assert why is None and model_file.precision == "fp16" and len(model_file.sha256) == 64
    assert 0 < os.path.getsize(model_file.path) < os.path.getsize(spec.files["fp32"].path)
