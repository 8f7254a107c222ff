"""The "micro" rows of docs/model-report.md: firedetd-micro beside the shipped Nano model, from
engines/micro/results.json (`firedetd micro-eval`) and the two specs. Pure rendering."""

from __future__ import annotations

import json
from pathlib import Path


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def micro_section(engines: Path) -> list[str]:
    """Markdown lines for the report; empty when engines/micro has no results yet."""
    results_path = engines / "micro" / "results.json"
    if not results_path.is_file():
        return []
    micro = json.loads(results_path.read_text())
    nano = json.loads((engines / "firedetd.json").read_text())
    test, estimate = micro["test"], micro["latency_estimate"]
    tflm, litert = test["tflite_micro"], test["ai_edge_litert"]
    nano_test = nano["metrics"]["test"]["fp32"]
    nano_bytes = nano["files"]["fp32"]["bytes"]
    lines = [
        "## The micro model (firedetd-micro)", "",
        "A 96×96 full-INT8 student (distilled from the MobileNetV2 of model version 2) for microcontrollers (ESP32-S3, "
        "Cortex-M7); "
        "how it was made and how a board uses it: [micro.md](micro.md). Test split "
        f"({test['images']} images); the micro model measured in the TensorFlow Lite Micro interpreter "
        "(tflite-micro, reference kernels) with the arena below.", "",
        "| model | runs on | input | model size | tensor memory | accuracy | fire / smoke / none recall "
        "| `none` called fire or smoke | latency |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {nano['name']} (shipped) | Jetson Nano, TensorRT FP16 | 224×224 float | {nano_bytes / 1e6:.1f} MB "
        f"(FP32 ONNX) | — | {_pct(nano_test['accuracy'])} | "
        + " / ".join(_pct(nano_test["per_class"][k]["recall"]) for k in ("fire", "smoke", "none"))
        + f" | {_pct(nano_test['none_false_alarm_rate'])} | [benchmarks.md](benchmarks.md) |",
        f"| firedetd-micro (TFLM) | ESP32-S3, Cortex-M7 | 96×96 int8 | {micro['model']['tflite_bytes'] / 1000:.0f} kB "
        f"| {micro['model']['arena_bytes'] / 1000:.0f} kB arena | **{_pct(tflm['accuracy'])}** | "
        + " / ".join(_pct(tflm["recall"][k]) for k in ("fire", "smoke", "none"))
        + f" | **{_pct(tflm['none_called_fire_or_smoke'])}** | ≈ {estimate['esp32s3_esp_nn_ms']:.0f} ms ESP32-S3, "
        f"≈ {estimate['cortex_m7_480mhz_cmsis_nn_ms']:.0f} ms Cortex-M7 (**estimates**) |",
        f"| firedetd-micro (LiteRT) | phone, desktop | 96×96 int8 | same file | — | {_pct(litert['accuracy'])} | "
        + " / ".join(_pct(litert["recall"][k]) for k in ("fire", "smoke", "none"))
        + f" | {_pct(litert['none_called_fire_or_smoke'])} | — |",
        "",
        f"The latencies are estimates from published per-kernel cycle counts and the model's "
        f"{estimate['macs'] / 1e6:.1f} M multiply-accumulates (firedetd/micro/estimate.py), not measurements. "
        "Reproduce the measured figures with `firedetd micro-eval --checkpoint engines/micro/firedetd-micro.pt`.",
        "",
    ]
    return lines
