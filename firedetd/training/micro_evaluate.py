"""Measure firedetd-micro where it will run: the .tflite in the TFLM interpreter with the arena the spec names, the
same file in LiteRT, and (when torch is there) the float PyTorch student, on one split and on labelled videos.
Writes engines/micro/results.json. Python 3.11 (the training package's metrics)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..micro import dequantize_output, quantize_frame, softmax
from ..micro.runtime import LiteRTInterpreter, MicroInterpreter
from .data import LABELS, list_split, read_rgb
from .evaluate import classification_metrics


def split_frames(data_root: Path, split: str, limit_per_class: int = 0):
    """A split's images as full RGB frames (the board's quantize_frame does the resizing) and their labels."""
    from .train import limit_per_class as limit

    samples = limit(list_split(data_root, split), limit_per_class)
    return samples, [read_rgb(s.path) for s in samples], np.array([s.label for s in samples])


def run_interpreter(interpreter, spec, frames) -> tuple[np.ndarray, float]:
    """Float logits for every frame, and the mean milliseconds per invoke (host CPU, not a board's)."""
    inputs = [quantize_frame(frame, spec) for frame in frames]
    started = time.perf_counter()
    logits = np.concatenate([dequantize_output(interpreter.invoke(x), spec) for x in inputs])
    return logits, (time.perf_counter() - started) * 1000.0 / max(len(inputs), 1)


def torch_logits(checkpoint: Path, spec, frames) -> np.ndarray:
    """The float student on the same 96x96 frames (what the INT8 model is compared against)."""
    import torch

    from ..micro import resize_frame
    from .micro import load_micro

    model = load_micro(checkpoint)
    with torch.no_grad():
        out = []
        for start in range(0, len(frames), 128):
            batch = np.stack([resize_frame(f, spec.size) for f in frames[start:start + 128]])
            x = torch.from_numpy((batch.astype(np.float32) - 128.0) / 128.0).permute(0, 3, 1, 2)
            out.append(model(x).numpy())
    return np.concatenate(out)


def summarise(logits: np.ndarray, labels: np.ndarray) -> dict:
    m = classification_metrics(softmax(logits), labels, LABELS)
    return {"accuracy": round(m["accuracy"], 4),
            "recall": {k: round(v["recall"], 4) for k, v in m["per_class"].items()},
            "precision": {k: round(v["precision"], 4) for k, v in m["per_class"].items()},
            "none_called_fire_or_smoke": round(m["none_false_alarm_rate"], 4),
            "confusion": m["confusion"], "count": m["count"]}


def evaluate_split(spec, data_root: Path, split: str = "test", checkpoint: Path | None = None,
                   limit_per_class: int = 0) -> dict:
    """Every image of `split` through TFLM, LiteRT and (with `checkpoint`) PyTorch; metrics and agreement."""
    samples, frames, labels = split_frames(data_root, split, limit_per_class)
    data = spec.model_bytes()
    micro, micro_ms = run_interpreter(MicroInterpreter(data, spec.arena_bytes), spec, frames)
    litert, litert_ms = run_interpreter(LiteRTInterpreter(data), spec, frames)
    report = {
        "split": split, "images": len(frames),
        "tflite_micro": {**summarise(micro, labels), "host_ms_per_image": round(micro_ms, 2),
                         "arena_bytes": spec.arena_bytes},
        "ai_edge_litert": {**summarise(litert, labels), "host_ms_per_image": round(litert_ms, 2)},
        "micro_vs_litert_same_argmax": round(float((micro.argmax(1) == litert.argmax(1)).mean()), 4),
        "micro_vs_litert_max_abs_logit_diff": round(float(np.abs(micro - litert).max()), 4),
    }
    if checkpoint is not None:
        reference = torch_logits(checkpoint, spec, frames)
        report["pytorch_float"] = summarise(reference, labels)
        report["micro_vs_pytorch_same_argmax"] = round(float((micro.argmax(1) == reference.argmax(1)).mean()), 4)
        diff = np.abs(softmax(micro) - softmax(reference)).max(axis=1)
        report["micro_vs_pytorch_prob_diff"] = {"mean": round(float(diff.mean()), 4),
                                                "p95": round(float(np.percentile(diff, 95)), 4),
                                                "max": round(float(diff.max()), 4)}
    none = LABELS.index("none")
    wrong_none = [s.path.name for s, p, y in zip(samples, micro.argmax(1), labels) if y == none and p != none]
    report["tflite_micro"]["none_false_alarm_sources"] = _count_prefixes(wrong_none)
    return report


def _count_prefixes(names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        prefix = name.split("_", 1)[0]
        counts[prefix] = counts.get(prefix, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def evaluate_videos(spec, videos: list[str], decide_fps: float = 5.0) -> list[dict]:
    """Each labelled video through the board simulator (TFLM, the daemon's default detection settings)."""
    from ..config import build_config
    from ..evaluation import read_truth, truth_beside, video_fps_and_frames
    from ..micro.simulate import BoardSimulator, run_video

    detection = build_config({}, {}).detection
    reports = []
    for video in videos:
        truth = truth_beside(video)
        segments = read_truth(truth, None, video_fps_and_frames(video)[1]) if truth else None
        board = BoardSimulator(spec, MicroInterpreter(spec.model_bytes(), spec.arena_bytes), detection)
        try:
            report = run_video(board, video, decide_fps, segments)
        finally:
            board.close()
        report.pop("events")
        report["truth"] = [list(s) for s in segments] if segments else None
        reports.append(report)
    return reports


def write_results(path: Path, results: dict) -> Path:
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
