"""`firedetd study`: the experiments behind docs/model-report.md, resumable, one JSON result per run.

Reproduces and extends the original study (TensorFlow MobileNet/ResNet50/Xception, 91 % val accuracy):
for every backbone in ../shared/weights, head-only transfer learning vs full fine-tuning vs training
from scratch on the same schedule; a learning-rate sweep (1e-5 ... 1e-1) on the chosen backbone for
both head-only and full fine-tuning; then compression of the shipped model (FP16, INT8, channel
pruning at two ratios, weight clustering at 16 and 32 clusters) with accuracy, size, zipped size and
CPU latency measured side by side in one process; and the detection thresholds' grid over the labelled videos
(`--parts thresholds`). Each finished run writes
docs/model-report/results/<name>.json; a rerun skips what is done.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .data import list_split, load_images
from .export import export_onnx, load_checkpoint
from .models import BACKBONES, build_classifier, count_parameters
from .ship import calibration_images, evaluate_onnx, quantize_int8, split_images
from .train import TrainConfig, train

STUDY_EPOCHS = 5          # full and scratch runs in the comparison share one schedule
HEAD_EPOCHS = 30          # a linear head on cached features is cheap
SWEEP_FULL_EPOCHS = 3
HEAD_SWEEP = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
FULL_SWEEP = (1e-5, 1e-3, 1e-1)


def measure_latency(path: Path, iterations: int = 200, warmup: int = 20, threads: int = 2) -> dict:
    """ONNX Runtime CPU latency at batch 1: median and p99 in ms."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for _ in range(warmup):
        session.run(None, {"input": x})
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        session.run(None, {"input": x})
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(float(np.median(times)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3)}


def measure_latencies_interleaved(paths: dict[str, Path], rounds: int = 5, per_round: int = 60) -> dict:
    """Latency of several models measured in turns, so machine noise hits all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in paths}
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    sessions = {n: ort.InferenceSession(str(p), sess_options=options, providers=["CPUExecutionProvider"])
                for n, p in paths.items()}
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for session in sessions.values():
        for _ in range(10):
            session.run(None, {"input": x})
    for _ in range(rounds):
        for name, session in sessions.items():
            for _ in range(per_round):
                t = time.perf_counter()
                session.run(None, {"input": x})
                samples[name].append((time.perf_counter() - t) * 1000)
    return {n: {"median_ms": round(float(np.median(v)), 3), "p99_ms": round(float(np.percentile(v, 99)), 3)}
            for n, v in samples.items()}


class Study:
    def __init__(self, data: Path, weights: Path, results: Path, work: Path, threads: int = 2, progress: bool = True):
        self.data, self.weights, self.results, self.work = data, weights, results, work
        self.threads, self.progress = threads, progress
        self.results.mkdir(parents=True, exist_ok=True)
        self._test = None

    def test_split(self):
        if self._test is None:
            self._test = split_images(self.data, "test", self.progress)
        return self._test

    def done(self, name: str) -> bool:
        return (self.results / f"{name}.json").is_file()

    def base_config(self, name: str, **overrides) -> TrainConfig:
        cfg = TrainConfig(data=self.data, out=self.work / name, weights=self.weights, threads=self.threads,
                          progress=self.progress, epochs=STUDY_EPOCHS, patience=STUDY_EPOCHS)
        return replace(cfg, **overrides)

    def run_training(self, name: str, cfg: TrainConfig, group: str) -> dict:
        if self.done(name):
            return json.loads((self.results / f"{name}.json").read_text())
        print(f"== {name}", flush=True)
        result = train(cfg)
        return self.record(name, cfg.out / "best.pt", cfg.backbone, result, group, cfg)

    def record(self, name: str, checkpoint: Path, backbone: str, result: dict, group: str,
               cfg: TrainConfig | None) -> dict:
        """Export the run's best checkpoint, score it on the test split with ONNX Runtime, time it."""
        model = load_checkpoint(checkpoint, backbone)
        onnx_path = export_onnx(model, self.work / name / "model.onnx")
        images, labels = self.test_split()
        test = evaluate_onnx(onnx_path, images, labels)
        summary = {
            "name": name, "group": group, "backbone": backbone,
            "mode": cfg.mode if cfg else "", "lr": cfg.lr if cfg else None, "epochs": cfg.epochs if cfg else None,
            "parameters": count_parameters(model), "onnx_bytes": onnx_path.stat().st_size,
            "latency": measure_latency(onnx_path), "val": _brief(result.get("val", {})), "test": _brief(test),
            "history": result.get("history", []), "train_seconds": result.get("train_seconds"),
        }
        (self.results / f"{name}.json").write_text(json.dumps(summary, indent=2))
        print(f"   {name}: test accuracy {test['accuracy']:.4f}, none->alarm {test['none_false_alarm_rate']:.4f}",
              flush=True)
        return summary

    # ------------------------------------------------------------------------------- the experiments

    def compare_backbones(self) -> None:
        # cheapest first across backbones (head, then full, then scratch), so an interrupted study has the
        # transfer-learning rows of every backbone before the slow from-scratch runs
        for backbone in BACKBONES:
            cache = self.work / "cache" / f"{backbone}-features.pt"
            self.run_training(f"{backbone}-head", self.base_config(
                f"{backbone}-head", backbone=backbone, mode="head", lr=1e-3, epochs=HEAD_EPOCHS, patience=8,
                feature_cache=cache), "backbones")
        for backbone in BACKBONES:
            self.run_training(f"{backbone}-full", self.base_config(f"{backbone}-full", backbone=backbone, mode="full",
                                                                   lr=2e-4), "backbones")
        for backbone in BACKBONES:
            self.run_training(f"{backbone}-scratch", self.base_config(
                f"{backbone}-scratch", backbone=backbone, mode="scratch", lr=1e-3), "backbones")

    def sweep_learning_rate(self, backbone: str = "mobilenetv2") -> None:
        cache = self.work / "cache" / f"{backbone}-features.pt"
        for lr in HEAD_SWEEP:
            name = f"lr-head-{lr:g}"
            self.run_training(name, self.base_config(name, backbone=backbone, mode="head", lr=lr, epochs=HEAD_EPOCHS,
                                                     patience=HEAD_EPOCHS, feature_cache=cache), "lr-head")
        for lr in FULL_SWEEP:
            name = f"lr-full-{lr:g}"
            self.run_training(name, self.base_config(name, backbone=backbone, mode="full", lr=lr,
                                                     epochs=SWEEP_FULL_EPOCHS, patience=SWEEP_FULL_EPOCHS), "lr-full")

    def record_shipped(self, checkpoint: Path, history_dir: Path) -> None:
        if self.done("shipped"):
            return
        history_path = history_dir / "history.json"
        history = json.loads(history_path.read_text()) if history_path.is_file() else []
        result_path = history_dir / "result.json"
        result = json.loads(result_path.read_text()) if result_path.is_file() else {"history": history}
        cfg_raw = result.get("config", {})
        # the run's own backbone: a checkpoint loads only into the architecture it was trained as
        backbone = cfg_raw.get("backbone", "mobilenetv2")
        cfg = self.base_config("shipped", backbone=backbone, mode=cfg_raw.get("mode", "full"),
                               lr=cfg_raw.get("lr", 2e-4), epochs=cfg_raw.get("epochs", len(history)))
        self.record("shipped", checkpoint, backbone, result, "shipped", cfg)

    def measure_backbone_latency(self, engines: Path) -> None:
        """Time one ONNX file per architecture (and the shipped one) in turns in one process.

        Runs of one architecture share one graph, so their latency is the architecture's; timing the runs'
        files one by one, hours apart on a shared machine, measured the neighbours' load instead (2.6 to
        13 ms for one graph). Latency does not depend on the weights' values, so each backbone is timed as
        built here (ImageNet weights, a 3-class head)."""
        out = self.work / "latency"
        paths = {backbone: export_onnx(build_classifier(backbone, 3, self.weights), out / f"{backbone}.onnx")
                 for backbone in BACKBONES}
        paths["shipped"] = engines / "firedetd.onnx"
        print(f"== latency of {len(paths)} models, measured in turns", flush=True)
        latency = measure_latencies_interleaved(paths, rounds=8)
        import onnxruntime as ort

        record = {"group": "latency", "onnxruntime": ort.__version__, "threads": 2, "batch": 1,
                  "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "models": latency}
        (self.results / "latency.json").write_text(json.dumps(record, indent=2))
        for name, figures in latency.items():
            print(f"   {name}: {figures['median_ms']:.2f} / {figures['p99_ms']:.2f} ms", flush=True)

    def compress(self, checkpoint: Path, backbone: str = "mobilenetv2") -> None:
        """The compression table: every variant of the shipped model, latency measured in one session."""
        if self.done("compression"):
            return
        from .compress import (
            cluster_weights,
            convert_fp16,
            distinct_values_per_channel,
            fine_tune,
            prune_channels,
            resnap_clusters,
            zipped_size,
        )

        out = self.work / "compression"
        out.mkdir(parents=True, exist_ok=True)
        fp32 = export_onnx(load_checkpoint(checkpoint, backbone), out / "fp32.onnx")
        paths = {"fp32": fp32, "fp16": convert_fp16(fp32, out / "fp16.onnx"),
                 "int8": quantize_int8(fp32, out / "int8.onnx", calibration_images(self.data, 300))}
        cfg = self.base_config("compression", backbone=backbone)
        samples = list_split(self.data, "train")
        images = load_images(samples, progress=self.progress)
        params = {}
        for ratio in (0.25, 0.5):
            name = f"pruned-{int(ratio * 100)}"
            model = prune_channels(load_checkpoint(checkpoint, backbone), ratio)
            model = fine_tune(model, samples, images, cfg, epochs=3, lr=1e-4, desc=name)
            params[name] = count_parameters(model)
            paths[name] = export_onnx(model, out / f"{name}.onnx")
        for k in (32, 16):
            name = f"clustered-{k}"
            model = load_checkpoint(checkpoint, backbone)
            clustered = cluster_weights(model, k)
            model = fine_tune(model, samples, images, cfg, epochs=2, lr=2e-5, after_step=lambda c=clustered:
                              resnap_clusters(c), desc=name)
            params[name] = distinct_values_per_channel(model)
            paths[name] = export_onnx(model, out / f"{name}.onnx")
        test_images, test_labels = self.test_split()
        latency = measure_latencies_interleaved(paths)
        rows = []
        for name, path in paths.items():
            m = evaluate_onnx(path, test_images, test_labels)
            rows.append({"variant": name, "accuracy": round(m["accuracy"], 4),
                         "none_false_alarm_rate": round(m["none_false_alarm_rate"], 4),
                         "bytes": path.stat().st_size, "zipped_bytes": zipped_size(path), **latency[name],
                         "note": _variant_note(name, params)})
            print(f"   {name}: acc {m['accuracy']:.4f}, {path.stat().st_size / 1e6:.2f} MB, "
                  f"zipped {rows[-1]['zipped_bytes'] / 1e6:.2f} MB, {latency[name]['median_ms']:.2f} ms", flush=True)
        (self.results / "compression.json").write_text(json.dumps({"rows": rows}, indent=2))


def analyse_errors(data: Path, engines: Path, results: Path, progress: bool = True) -> dict:
    """The shipped model's test errors, by source (the file-name prefix: DeepQuestAI web thumbnails, supperjoy
    photos, HPWREN lookout plumes, SUN scenes, DAWN fog...) and one by one. Writes results/errors.json.
    Where it errs says more about the cameras it will meet than the overall accuracy does."""
    from .ship import onnx_probabilities

    spec = json.loads((engines / "firedetd.json").read_text())
    samples = list_split(data, "test")
    images, labels = split_images(data, "test", progress)
    probs = onnx_probabilities(engines / spec["files"]["fp32"]["path"], images)
    predicted = probs.argmax(1)
    labels_named = spec["labels"]
    none = labels_named.index("none")
    on = {k: spec["recommended"][k]["on"] for k in ("fire", "smoke")}
    alarmed = np.zeros(len(probs), bool)
    for kind, threshold in on.items():
        alarmed |= probs[:, labels_named.index(kind)] >= threshold
    by_origin: dict[str, dict] = {}
    for sample, guess, alarm in zip(samples, predicted, alarmed):
        row = by_origin.setdefault(sample.origin, {"images": 0, "correct": 0, "classes": set(), "none": 0,
                                                   "none_alarm": 0, "none_alarm_at_thresholds": 0})
        row["images"] += 1
        row["correct"] += int(guess == sample.label)
        row["classes"].add(labels_named[sample.label])
        if sample.label == none:
            row["none"] += 1
            row["none_alarm"] += int(guess != none)
            row["none_alarm_at_thresholds"] += int(alarm)
    errors = [{"file": f"{labels_named[s.label]}/{s.path.name}", "origin": s.origin, "true": labels_named[s.label],
               "predicted": labels_named[int(g)], "probabilities": [round(float(p), 3) for p in prob]}
              for s, g, prob in zip(samples, predicted, probs) if g != s.label]
    record = {"group": "errors", "count": len(samples), "errors": errors, "thresholds": on,
              "by_origin": {o: dict(r, classes=sorted(r["classes"])) for o, r in sorted(by_origin.items())}}
    (results / "errors.json").write_text(json.dumps(record, indent=2))
    return record


THRESHOLD_GRID_ON = (0.5, 0.6, 0.7, 0.8)
THRESHOLD_GRID_RAISE = (2, 3, 5)  # fire's raise_frames; smoke's is one more, as shipped (smoke builds up slowly)


def sweep_thresholds(videos: Path, engines: Path, data: Path, results: Path, progress: bool = True) -> dict:
    """Run the daemon's real pipeline (`firedetd eval`) over the labelled videos for each (on, raise_frames) on a
    small grid, α and off as shipped, and score `none` test images at each `on`: the table the shipped detection
    settings were chosen from. Writes results/thresholds.json."""
    from dataclasses import replace as dc_replace

    from ..config import load_config
    from ..evaluation import evaluate_video, read_truth

    base = load_config(None)
    spec = json.loads((engines / "firedetd.json").read_text())
    onnx_path = engines / spec["files"]["fp32"]["path"]
    test_images, test_labels = split_images(data, "test", progress)
    clips = {"synthetic": (videos / "synthetic_fire_smoke_40s.mp4", videos / "synthetic_fire_smoke_40s.frames.csv"),
             "house": (videos / "furg_house6.mp4", videos / "furg_house6.xml")}
    rows = []
    for on in THRESHOLD_GRID_ON:
        at_on = evaluate_onnx(onnx_path, test_images, test_labels, {"fire": on, "smoke": on})
        for raise_frames in THRESHOLD_GRID_RAISE:
            fire = dc_replace(base.detection.fire, on=on, raise_frames=raise_frames)
            smoke = dc_replace(base.detection.smoke, on=on, raise_frames=raise_frames + 1)
            detection = dc_replace(base.detection, fire=fire, smoke=smoke)
            config = dc_replace(base, detection=detection)
            row = {"on": on, "raise_frames": raise_frames, "smoke_raise_frames": raise_frames + 1,
                   "none_images_alarmed": round(at_on["none_false_alarm_rate"], 4), "videos": {}}
            for name, (video, truth) in clips.items():
                report = evaluate_video(config, str(video), read_truth(str(truth), None, 0), progress=False)
                row["videos"][name] = {"events": report["events"], "false_alerts": len(report["false_alerts"])}
            rows.append(row)
            if progress:
                print(f"   on {on}, raise {raise_frames}: " + "; ".join(
                    f"{n} " + ", ".join(f"{e['label']} {e['time_to_any_alert_s']}/{e['time_to_alert_s']} s"
                                        for e in v["events"]) + f", {v['false_alerts']} false"
                    for n, v in row["videos"].items()), flush=True)
    shipped = {"on": base.detection.fire.on, "raise_frames": base.detection.fire.raise_frames,
               "smoke_on": base.detection.smoke.on, "smoke_raise_frames": base.detection.smoke.raise_frames,
               "smoothing_alpha": base.detection.smoothing_alpha, "off": base.detection.fire.off}
    record = {"group": "thresholds", "shipped": shipped, "rows": rows,
              "per_class": per_class_threshold_grid(onnx_path, test_images, test_labels)}
    (results / "thresholds.json").write_text(json.dumps(record, indent=2))
    return record


PER_CLASS_ON = (0.6, 0.7, 0.8, 0.9)


def per_class_threshold_grid(onnx_path: Path, images, labels) -> list[dict]:
    """For each pair of fire and smoke `on` thresholds, on single test images (no smoothing: the worst case):
    the share of `none` images that reach either, and of fire and of smoke images that do (alarm recall)."""
    from .ship import onnx_probabilities

    probs = onnx_probabilities(onnx_path, images)
    rows = []
    for fire_on in PER_CLASS_ON:
        for smoke_on in PER_CLASS_ON:
            alarm = (probs[:, 0] >= fire_on) | (probs[:, 1] >= smoke_on)
            rows.append({"fire_on": fire_on, "smoke_on": smoke_on,
                         **{f"{name}_alarmed": round(float(alarm[labels == index].mean()), 4)
                            for index, name in enumerate(("fire", "smoke", "none"))}})
    return rows


def _variant_note(name: str, params: dict) -> str:
    if name.startswith("pruned"):
        return f"{params[name]:,} parameters after pruning"
    if name.startswith("clustered"):
        return f"at most {params[name]} distinct values per output channel"
    return ""


def _brief(metrics: dict) -> dict:
    keep = ("accuracy", "none_false_alarm_rate", "per_class", "confusion", "loss", "count")
    return {k: metrics[k] for k in keep if k in metrics}


def record_recipe_runs(study: "Study", runs: list[tuple[str, Path]]) -> None:
    """Score finished `firedetd train` runs of the v5 recipe (one per backbone: the same data, sampling,
    augmentation, mining and schedule) on the test split: results/v5-<backbone>.json, the backbone comparison."""
    for backbone, run_dir in runs:
        name = f"v5-{backbone}"
        if study.done(name) or not (run_dir / "best.pt").is_file():
            continue
        result = json.loads((run_dir / "result.json").read_text())
        raw = result.get("config", {})
        cfg = study.base_config(name, backbone=backbone, mode=raw.get("mode", "full"), lr=raw.get("lr", 2e-4),
                                epochs=raw.get("epochs", len(result.get("history", []))))
        summary = study.record(name, run_dir / "best.pt", backbone, result, "v5-backbones", cfg)
        summary["temperature"] = result.get("temperature")
        summary["val_none_false_alarm_by_source"] = result.get("val_none_false_alarm_by_source")
        (study.results / f"{name}.json").write_text(json.dumps(summary, indent=2))


def run_study(data: Path, weights: Path, results: Path, work: Path, shipped_run: Path, parts: list[str],
              threads: int = 2, progress: bool = True, engines: Path = Path("engines"),
              recipe_runs: list[tuple[str, Path]] | None = None) -> None:
    study = Study(data, weights, results, work, threads, progress)
    torch.set_num_threads(threads)
    if "shipped" in parts:
        study.record_shipped(shipped_run / "best.pt", shipped_run)
    if "recipe" in parts:
        record_recipe_runs(study, recipe_runs or [])
    if "backbones" in parts:
        study.compare_backbones()
    if "lr" in parts:
        study.sweep_learning_rate()
    if "compression" in parts:
        study.compress(shipped_run / "best.pt")
    if "latency" in parts:
        study.measure_backbone_latency(engines)
    if "errors" in parts:
        analyse_errors(data, engines, results, progress)
    if "thresholds" in parts:
        sweep_thresholds(data.parent / "video", engines, data, results, progress)
    print(f"study: results in {results}", flush=True)

