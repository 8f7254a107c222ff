"""`firedetd report`: docs/model-report.md and its PNG figures from the study's JSON results.

Pure rendering: every figure was measured by `firedetd study` (and `firedetd eval` for the videos)
and is stored in docs/model-report/results/, so the report can be regenerated anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .data import LABELS  # noqa: E402
from .micro_report import micro_section  # noqa: E402
from .models import BACKBONES  # noqa: E402

STUDY_BASELINES = (
    ("Original study: TensorFlow MobileNet, validation", 0.91),
    ("DeepQuestAI fire/smoke images: original ResNet50 baseline", 0.85),
)


def load_results(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def mib(n: int) -> str:
    return f"{n / 1024 / 1024:.2f} MiB"


def plot_confusion(confusion: list[list[int]], title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(LABELS)), LABELS)
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max(max(row) for row in confusion)
    for i, row in enumerate(confusion):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lr_study(runs: dict[str, dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, group, title in ((axes[0], "lr-head", "head only (frozen MobileNetV2)"),
                             (axes[1], "lr-full", "full fine-tune (BatchNorm frozen)")):
        for run in sorted((r for r in runs.values() if r.get("group") == group), key=lambda r: r["lr"]):
            epochs = [h["epoch"] for h in run["history"]]
            ax.plot(epochs, [h["val_accuracy"] for h in run["history"]], marker=".", label=f"lr {run['lr']:g}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy")
        ax.set_ylim(0.2, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_backbones(runs: dict[str, dict], path: Path) -> None:
    modes = ("head", "full", "scratch")
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.25
    names = list(BACKBONES)
    for k, mode in enumerate(modes):
        values = [runs.get(f"{b}-{mode}", {}).get("test", {}).get("accuracy", 0) for b in names]
        ax.bar([i + (k - 1) * width for i in range(len(names))], values, width, label=mode)
    ax.set_xticks(range(len(names)), [BACKBONES[b].title for b in names])
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.3, 1.0)
    ax.axhline(0.91, color="grey", ls="--", lw=1, label="original study 91 %")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training_curve(run: dict, path: Path) -> None:
    history = run["history"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], label="val loss")
    ax2 = ax.twinx()
    ax2.plot(epochs, [h["val_accuracy"] for h in history], color="green", label="val accuracy")
    ax2.set_ylim(0.8, 1.0)
    ax.set_xlabel("epoch")
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def backbone_table(runs: dict[str, dict]) -> list[str]:
    latency = runs.get("latency", {}).get("models", {})
    lines = ["| backbone | training | lr | epochs run (max) | test accuracy | "
             "precision / recall: fire · smoke · none | none → fire/smoke | parameters | ONNX size | "
             "ORT CPU latency b=1 (median / p99) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for b in BACKBONES:
        for mode in ("head", "full", "scratch"):
            r = runs.get(f"{b}-{mode}")
            if not r:
                continue
            timing = latency.get(b)
            timing = f"{timing['median_ms']:.1f} / {timing['p99_ms']:.1f} ms" if timing else "—"
            lines.append(f"| {BACKBONES[b].title} | {mode} | {r['lr']:g} | {len(r['history'])} ({r['epochs']}) | "
                         f"{pct(r['test']['accuracy'])} | {precision_recall(r)} | "
                         f"{pct(r['test']['none_false_alarm_rate'])} | {r['parameters']:,} | {mib(r['onnx_bytes'])} | "
                         f"{timing} |")
    return lines


def precision_recall(run: dict) -> str:
    """'96/96 · 98/95 · 97/99': per-class precision/recall in percent, in label order."""
    per_class = run["test"]["per_class"]
    return " · ".join(f"{100 * per_class[label]['precision']:.0f}/{100 * per_class[label]['recall']:.0f}"
                      for label in LABELS)


ORIGINS = {"dq": "DeepQuestAI fire/smoke web thumbnails", "sj": "supperjoy photos (fire, smoke, both, none)",
           "afm": "HPWREN lookout cameras: distant wildfire plumes", "sun": "SUN database scenes",
           "sunsky": "SUN database skies", "web": "weather photos (sunrise, cloudy, rain, shine)",
           "dawn": "DAWN fog, haze and mist road photos",
           "inet": "ImageNet, one photo per class (objects, animals, scenes)",
           "ilsvrc": "ILSVRC-2012 validation photos (objects, vehicles, buildings, food), 227 px squashed",
           "intel": "Intel scenes (buildings, streets, forest, glacier, mountain, sea), 100 px",
           "amos": "AMOS fixed webcams by day and night", "steam": "steam, vapour and water spray",
           "lzdet": "building, vehicle and forest fires (news photos)"}


def error_section(errors: dict) -> list[str]:
    """Accuracy of the shipped model by image source, and every test error (`firedetd study --parts errors`)."""
    lines = ["## Where the shipped model errs", "",
             f"`firedetd study --parts errors`: the shipped FP32 model on the {errors['count']} test images, by "
             "source (the file-name prefix), then each error. Sources differ far more than classes do; the "
             "camera-like sources are the ones to watch.", "",
             "| source | classes | images | accuracy | `none` called fire or smoke: argmax / at the thresholds |",
             "|---|---|---|---|---|"]
    for origin, row in errors["by_origin"].items():
        none = row.get("none", 0)
        alarms = (f"{pct(row['none_alarm'] / none)} / {pct(row['none_alarm_at_thresholds'] / none)} "
                  f"({row['none_alarm']} / {row['none_alarm_at_thresholds']} of {none})") if none else ""
        lines.append(f"| `{origin}_`: {ORIGINS.get(origin, origin)} | {', '.join(row['classes'])} | {row['images']} | "
                     f"{pct(row['correct'] / row['images'])} | {alarms} |")
    lines += ["", "| image | true | predicted | fire / smoke / none |", "|---|---|---|---|"]
    for e in errors["errors"]:
        lines.append(f"| `{e['file']}` | {e['true']} | {e['predicted']} | "
                     f"{' / '.join(f'{p:.2f}' for p in e['probabilities'])} |")
    lines += ["", ERROR_FINDINGS, ""]
    return lines


def threshold_section(sweep: dict) -> list[str]:
    """The grid the shipped detection settings were chosen from (`firedetd study --parts thresholds`)."""
    shipped = sweep["shipped"]
    lines = ["## Detection thresholds", "",
             "`firedetd study --parts thresholds` runs `firedetd eval` (the daemon's pipeline and postprocessor) "
             "over both labelled videos for each `on` threshold and `raise_frames` on a grid, smoothing "
             f"α {shipped['smoothing_alpha']} and `off` {shipped['off']} as shipped, smoke needing one frame more "
             "than fire; and counts the `none` test images whose fire or smoke probability reaches `on` (a single "
             "frame, no smoothing: the worst case). Times are first alert (any kind) / alert of the event's "
             "own kind, from the event's start.", "",
             "| on | raise frames (fire / smoke) | synthetic: fire at 8 s | synthetic: smoke at 24 s | "
             "house fire from 0 s | false alerts (both videos) | `none` test images at or above `on` |",
             "|---|---|---|---|---|---|---|"]
    for row in sweep["rows"]:
        synthetic = {e["label"]: e for e in row["videos"]["synthetic"]["events"]}
        house = row["videos"]["house"]["events"][0]
        false = sum(v["false_alerts"] for v in row["videos"].values())
        mark = "**" if (row["on"], row["raise_frames"]) == (shipped["on"], shipped["raise_frames"]) \
            and shipped.get("smoke_on", shipped["on"]) == row["on"] else ""
        lines.append(f"| {mark}{row['on']:g}{mark} | {mark}{row['raise_frames']} / {row['smoke_raise_frames']}{mark} | "
                     f"{_tta(synthetic.get('fire'))} | {_tta(synthetic.get('smoke'))} | {_tta(house)} | {false} | "
                     f"{pct(row['none_images_alarmed'])} |")
    per_class = sweep.get("per_class")
    if per_class:
        lines += ["", "And `on` set apart for each class, on single test images (no smoothing, no motion rule: the "
                      "worst case a still false-alarm scene gets): the share of each class that reaches either "
                      "threshold.", "",
                  "| fire `on` | smoke `on` | `none` alarmed | fire alarmed | smoke alarmed |", "|---|---|---|---|---|"]
        for row in per_class:
            mark = "**" if (row["fire_on"], row["smoke_on"]) == (shipped["on"], shipped.get("smoke_on")) else ""
            lines.append(f"| {mark}{row['fire_on']:g}{mark} | {mark}{row['smoke_on']:g}{mark} | "
                         f"{pct(row['none_alarmed'])} | {pct(row['fire_alarmed'])} | {pct(row['smoke_alarmed'])} |")
    lines += ["", THRESHOLD_CHOICE, ""]
    return lines


def _tta(event: dict | None) -> str:
    if not event:
        return "—"
    first, own = event["time_to_any_alert_s"], event["time_to_alert_s"]
    return f"{'missed' if first is None else f'{first:.2f}'} / {'—' if own is None else f'{own:.2f}'} s"


def training_time(shipped: dict, runs: dict[str, dict]) -> str:
    if shipped.get("train_seconds"):
        return (f"Training took {shipped['train_seconds'] / 60:.0f} minutes on 2 CPU cores (a machine of this "
                "report's kind).")
    epochs_run = len(shipped.get("history", []))
    others = [r for r in runs.values() if r.get("group") == "v5-backbones" and r.get("train_seconds")]
    text = (f"The run was cut off after epoch {epochs_run} of {shipped['epochs']} (the end of a working session); "
            "`firedetd train --finish` scored its best checkpoint as the run would have, so its training time was "
            "not recorded.")
    if others:
        r = others[0]
        text += (f" The same recipe on {BACKBONES[r['backbone']].title} took {r['train_seconds'] / 60:.0f} minutes "
                 "on 2 CPU cores.")
    return text


def latency_note(latency: dict | None) -> str:
    if not latency:
        return "not measured yet (`firedetd study --parts latency`)."
    shipped = latency["models"].get("shipped")
    note = (f"ONNX Runtime {latency['onnxruntime']}, {latency['threads']} threads, batch {latency['batch']}, this "
            f"machine (2 shared cores), {latency['measured_at']}; every architecture and the shipped file timed in "
            "turns in one process (`firedetd study --parts latency`), so the machine's noise hits them alike.")
    if shipped:
        note += f" The shipped file in the same run: {shipped['median_ms']:.1f} / {shipped['p99_ms']:.1f} ms."
    return note


def per_class_table(run: dict) -> list[str]:
    lines = ["| class | precision | recall | support |", "|---|---|---|---|"]
    for label in LABELS:
        m = run["test"]["per_class"][label]
        lines.append(f"| {label} | {pct(m['precision'])} | {pct(m['recall'])} | {m['support']} |")
    return lines


def lr_table(runs: dict[str, dict]) -> list[str]:
    lines = ["| training | lr | best val accuracy | test accuracy |", "|---|---|---|---|"]
    for group in ("lr-head", "lr-full"):
        for r in sorted((r for r in runs.values() if r.get("group") == group), key=lambda r: r["lr"]):
            best = max((h["val_accuracy"] for h in r["history"]), default=None)
            lines.append(f"| {group[3:]} | {r['lr']:g} | {pct(best)} | {pct(r['test']['accuracy'])} |")
    return lines


def compression_table(compression: dict) -> list[str]:
    rows = compression.get("rows", [])
    base = next((r for r in rows if r["variant"] == "fp32"), None)
    lines = ["| variant | test accuracy | none → fire/smoke | size on disk | zipped | CPU latency b=1 median / p99 | "
             "vs FP32: size, zipped, speed | notes |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratios = "—"
        if base:
            ratios = (f"{base['bytes'] / r['bytes']:.2f}×, {base['zipped_bytes'] / r['zipped_bytes']:.2f}×, "
                      f"{base['median_ms'] / r['median_ms']:.2f}×")
        lines.append(f"| {r['variant']} | {pct(r['accuracy'])} | {pct(r['none_false_alarm_rate'])} | "
                     f"{mib(r['bytes'])} | {mib(r['zipped_bytes'])} | {r['median_ms']:.2f} / {r['p99_ms']:.2f} ms | "
                     f"{ratios} | {r['note']} |")
    return lines


def video_table(runs: dict[str, dict]) -> list[str]:
    lines = ["| video | event | starts at | first alert (any kind) | alert of its own kind | false alerts |",
             "|---|---|---|---|---|---|"]
    for name, r in runs.items():
        if not name.startswith("video-"):
            continue
        fa = f"{len(r['false_alerts'])} ({r['false_alerts_per_hour']:.1f}/h over {r['duration_s']:.0f} s)"
        for e in r["events"]:
            first = "missed" if e.get("time_to_any_alert_s") is None else f"{e['time_to_any_alert_s']:.2f} s"
            own = "missed" if e.get("time_to_alert_s") is None else f"{e['time_to_alert_s']:.2f} s"
            lines.append(f"| {Path(r['video']).name} | {e['label']} | {e['start_s']:.1f} s | {first} | {own} | {fa} |")
    return lines


def rejected_section(runs: dict[str, dict]) -> list[str]:
    rejected = [r for r in runs.values() if r.get("group") == "rejected"]
    if not rejected:
        return []
    lines = ["## Tried and not shipped", ""]
    for r in rejected:
        lines += [f"**{r['name']}**: {r['what']}. Why: {r['why']}. Test accuracy {pct(r['test']['accuracy'])}, "
                  f"`none` called fire/smoke {pct(r['test']['none_false_alarm_rate'])}. {r['verdict'][0].upper()}"
                  f"{r['verdict'][1:]}.", ""]
    return lines


def write_report(results: Path, output: Path, engines: Path) -> Path:
    """docs/model-report.md from results/*.json (data v5) and results/v4/*.json (the studies on data v4)."""
    runs = load_results(results)
    earlier = load_results(results / "v4") if (results / "v4").is_dir() else {}
    figures = output.parent / "model-report"
    figures.mkdir(parents=True, exist_ok=True)
    spec = json.loads((engines / "firedetd.json").read_text())
    sections: list[str] = [INTRO.format(manifest=spec["dataset"]["manifest_sha256"][:16])]
    if "shipped" in runs:
        sections += shipped_section(runs, spec, figures)
    sections += micro_section(engines)
    if "previous" in {r.get("group") for r in runs.values()} and "errors" in runs:
        sections += previous_section(runs["previous-model-on-v5"], runs["errors"])
    if any(r.get("group") == "v5-backbones" for r in runs.values()):
        sections += ["## Backbones, data v5", "",
                     "The shipped recipe (`firedetd train`: the same data, sampling, augmentation, mining rounds and "
                     "schedule) on each backbone. Test split, ONNX Runtime, the daemon's preprocessing, temperature "
                     f"folded in. {latency_note(runs.get('latency'))}", "",
                     *recipe_table(runs), ""]
    if "errors" in runs:
        sections += error_section(runs["errors"])
    if "alarm" in runs:
        from .alarm_report import alarm_section

        sections += alarm_section(runs["alarm"])
    if "thresholds" in runs:
        sections += threshold_section(runs["thresholds"])
    sections += compression_section(spec, earlier)
    sections += earlier_sections(earlier, figures)
    sections += [WHY_THIS_MODEL, ""]
    output.write_text("\n".join(sections))
    return output


def shipped_section(runs: dict[str, dict], spec: dict, figures: Path) -> list[str]:
    shipped = runs["shipped"]
    plot_confusion(shipped["test"]["confusion"], "shipped model, test split", figures / "confusion-shipped.png")
    plot_training_curve(shipped, figures / "training-shipped.png")
    ship_acc = shipped["test"]["accuracy"]
    test = spec["metrics"]["test"]["fp32"]
    lines = ["## The shipped model", "", RECIPE.format(architecture=BACKBONES[shipped["backbone"]].title,
                                                      epochs=shipped["epochs"], lr=shipped["lr"],
                                                      training_time=training_time(shipped, runs),
                                                      temperature=spec["output"].get("temperature", 1.0)), "",
             f"**Test accuracy {pct(ship_acc)}**; `none` images called fire or smoke: "
             f"**{pct(test['none_false_alarm_rate'])}** at argmax, "
             f"**{pct(test['none_false_alarm_rate_at_thresholds'])}** at the shipped thresholds. Against the "
             "baselines:", "",
             "| reference | accuracy | ours better by |", "|---|---|---|"]
    for name, acc in STUDY_BASELINES:
        lines.append(f"| {name} | {pct(acc)} | {100 * (ship_acc - acc):+.1f} points |")
    lines += ["", *per_class_table(shipped), "",
              "![confusion matrix](model-report/confusion-shipped.png) "
              "![training curve](model-report/training-shipped.png)", "",
              f"Export: opset 13, dynamic batch; max |torch − ONNX Runtime| over 24 real validation images = "
              f"{spec['metrics']['export_max_abs_diff']:.1e}; constants folded after export (onnx-graphsurgeon), so "
              "every Pad and Clip reads initializers as TensorRT's parser wants.", ""]
    return lines


def previous_section(previous: dict, errors: dict) -> list[str]:
    """Model version 1 (trained on data v4) against this one, on the v5 test split, by source."""
    lines = ["## Against the data-v4 model (version 1)", "",
             "Model version 1 was trained on data version 4, whose `none` came from a few narrow sources "
             "(SUN scenes, sky and weather photos, fog); version 2 (the MobileNetV2 in the backbone table below, "
             "same recipe as this model) replaced it, and this model replaced version 2. On the version-5 test "
             "split, by source of the `none` images (`firedetd study --parts errors` run on each model's files):",
             "",
             "| `none` source | images | version 1: called fire or smoke (argmax / thresholds) | "
             "this model |", "|---|---|---|---|"]
    totals = {"previous": [0, 0, 0], "shipped": [0, 0, 0]}
    for origin, row in errors["by_origin"].items():
        before = previous["by_origin"].get(origin, {})
        if not row.get("none"):
            continue
        for key, r in (("previous", before), ("shipped", row)):
            totals[key][0] += r.get("none", 0)
            totals[key][1] += r.get("none_alarm", 0)
            totals[key][2] += r.get("none_alarm_at_thresholds", 0)
        lines.append(f"| `{origin}_` | {row['none']} | {_alarm_pair(before)} | {_alarm_pair(row)} |")
    keys = ("none", "none_alarm", "none_alarm_at_thresholds")
    lines.append(f"| **all** | {totals['shipped'][0]} | {_alarm_pair(dict(zip(keys, totals['previous'])))} | "
                 f"{_alarm_pair(dict(zip(keys, totals['shipped'])))} |")
    correct_before = sum(r["correct"] for r in previous["by_origin"].values())
    correct_now = sum(r["correct"] for r in errors["by_origin"].values())
    lines += ["", f"Test accuracy: version 1 {pct(correct_before / previous['count'])}, this model "
                  f"{pct(correct_now / errors['count'])} ({errors['count']} images).", ""]
    return lines


def _alarm_pair(row: dict) -> str:
    none = row.get("none", 0)
    if not none:
        return "—"
    return f"{pct(row['none_alarm'] / none)} / {pct(row['none_alarm_at_thresholds'] / none)}"


def recipe_table(runs: dict[str, dict]) -> list[str]:
    latency = runs.get("latency", {}).get("models", {})
    lines = ["| backbone | epochs run (max) | test accuracy | precision / recall: fire · smoke · none | "
             "none → fire/smoke | temperature | parameters | ONNX size | ORT CPU latency b=1 (median / p99) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in runs.values() if r.get("group") == "v5-backbones"),
                    key=lambda r: -r["test"]["accuracy"]):
        timing = latency.get(r["backbone"])
        timing = f"{timing['median_ms']:.1f} / {timing['p99_ms']:.1f} ms" if timing else "—"
        none_alarm = pct(r["test"]["none_false_alarm_rate"])
        lines.append(f"| {BACKBONES[r['backbone']].title} | {len(r['history'])} ({r['epochs']}) | "
                     f"{pct(r['test']['accuracy'])} | {precision_recall(r)} | {none_alarm} | "
                     f"{r.get('temperature') or 1.0:.2f} | {r['parameters']:,} | {mib(r['onnx_bytes'])} | {timing} |")
    return lines


def compression_section(spec: dict, earlier: dict) -> list[str]:
    test = spec["metrics"]["test"]
    fp32, int8 = spec["files"]["fp32"], spec["files"]["int8"]
    lines = ["## Compression", "",
             "The shipped files, on the v5 test split (`firedetd export`, ONNX Runtime CPU):", "",
             "| file | test accuracy | none → fire/smoke (argmax / thresholds) | size |", "|---|---|---|---|"]
    for role, entry in (("fp32", fp32), ("int8", int8)):
        m = test[role]
        lines.append(f"| `{entry['path']}` ({role.upper()}) | {pct(m['accuracy'])} | "
                     f"{pct(m['none_false_alarm_rate'])} / {pct(m['none_false_alarm_rate_at_thresholds'])} | "
                     f"{mib(entry['bytes'])} ({fp32['bytes'] / entry['bytes']:.2f}× smaller) |")
    if "compression" in earlier:
        lines += ["", "The full compression study (FP16, INT8, pruning, clustering) was run on the data-v4 model; the "
                      "methods are unchanged, the figures are that model's:", "", COMPRESSION_TEXT, "",
                  *compression_table(earlier["compression"])]
    return lines + [""]


def earlier_sections(earlier: dict[str, dict], figures: Path) -> list[str]:
    """The studies run on data version 4 (backbones x training mode, learning rates, federation), kept because
    their findings chose the recipe; their accuracies are on the v4 test split (505 images)."""
    if not earlier:
        return []
    lines = ["## Earlier studies, on data version 4", "",
             "These chose the backbone, the training mode and the learning rate. They ran on data version 4 "
             "(test split of 505 images, `none` from few sources), so their accuracies are not comparable with "
             "the v5 figures above; their comparisons still hold.", ""]
    if any(r.get("group") == "backbones" for r in earlier.values()):
        plot_backbones(earlier, figures / "backbones.png")
        lines += ["### Backbones × training mode (data v4)", "",
                  "Same data, augmentation and schedule for every run (head-only: a linear layer on frozen "
                  "features cached for 4 augmented views; full: every layer, BatchNorm statistics frozen; "
                  "scratch: random initialisation, BatchNorm trained).", "",
                  *backbone_table(earlier), "", "![backbones](model-report/backbones.png)", ""]
    if any(r.get("group", "").startswith("lr-") for r in earlier.values()):
        plot_lr_study(earlier, figures / "lr-study.png")
        lines += ["### Learning-rate study (MobileNetV2, data v4)", "",
                  "Like the original study's sweep (1e-5, 1e-3, 0.1), for head-only (30 epochs on cached "
                  "features) and full fine-tuning (3 epochs each, one-cycle schedule, head ×10).", "",
                  *lr_table(earlier), "", "![learning-rate study](model-report/lr-study.png)", "", LR_FINDINGS, ""]
    federated = {name: r for name, r in earlier.items() if r.get("group") == "federated"}
    if federated:
        from .federated_report import federated_section

        lines += [line.replace("## ", "### ", 1) if line.startswith("## ") else line
                  for line in federated_section(federated, figures)]
    lines += rejected_section(earlier)
    return lines


INTRO = """# Model report

Generated by `firedetd report` from the results of `firedetd study`, `firedetd eval` and
`benchmarks/alarm_trust.py` (docs/model-report/results/*.json). Data: `../shared/data/fire-smoke` version 5
(manifest sha256 `{manifest}…`), train 4497 / val 997 / test 978 images; see its SOURCE.md for the sources of
each class. All accuracies are on the test split, which no training run saw, with ONNX Runtime and the
daemon's own preprocessing (stretch to 224×224, (pixel − 128) / 128).

The study this project follows trained MobileNet, ResNet50 and Xception in TensorFlow (91 % validation
accuracy for MobileNet; compression named but not done; TensorRT never working). No ResNet50 or
Xception weights exist offline here (see ../shared/weights/WEIGHTS.md): the comparison uses the three
ImageNet backbones that do, all mobile-class networks that fit the Jetson Nano.
"""

RECIPE = """{architecture} from `../shared/weights`, fully fine-tuned with BatchNorm statistics frozen, by
`firedetd train` with its defaults: {epochs} epochs at most (one-cycle, lr {lr:g}, head ×10, label smoothing 0.1),
the best epoch chosen by mean recall less the share of `none` called fire or smoke on validation. What makes the
source invisible, so that the model learns fire rather than where a photo came from:

- **sampling**: every class drawn equally often; inside a class each source (file-name prefix) in proportion to
  the square root of its size, so the 5 steam pictures and the 22 lookout plumes are seen, and the 629 ImageNet
  photos do not drown the rest;
- **one source chain for every image** (70 % of views): downscale to 80-224 px, JPEG 35-95, a little blur, back
  to 224, so a 100 px Intel scene, a 227 px squashed ILSVRC photo and a 400 px news photo look alike; then crops
  with squeezed aspect, zoom-out, flips, colour jitter, haze, blur, noise, low resolution, JPEG 20-90;
- **night and monochrome**: 15 % of `none` views darkened (gamma, gain 0.08-0.55, sensor noise, 40 % of them
  grey like an IR camera) and 8 % of every class grey, so dark is not fire and colourless is not smoke;
- **poor signal**: 4 % of `none` draws replaced by black, dark noise, flat colour, white, colour bars, snow, a
  ramp or a scene far out of focus (the daemon's signal gate catches these first; the model does not need it to);
- **hard-example mining**: before epochs 5, 9 and 12 the model scores every training image and the ones it gets
  wrong are drawn up to 5× as often, `none` called fire or smoke counting double;
- **calibration**: a temperature fitted on validation (T = {temperature:.3f}) is folded into the head, so the
  probabilities the thresholds read are calibrated, at no cost at run time.

{training_time}"""

COMPRESSION_TEXT = """All variants of the shipped model, accuracy on the test split, latency measured in one process in
interleaved rounds (ONNX Runtime CPU, 2 threads, batch 1) so the shared machine's noise hits each alike.
FP16 runs on CPU without FP16 kernels (slower, half the size); on the Jetson Nano the TensorRT engine
is FP16 (Maxwell has no INT8); INT8 serves CPUs and newer Jetsons (Xavier, Orin).

- **INT8** (ONNX Runtime static QDQ, per-channel weights, calibrated on 300 training images; inner tensor
  names shortened, outputs unchanged) meets all three targets: 3.54× smaller (goal ≥ 3.5×; 3.53× against an
  FP32 file with names shortened alike, and against the shipped FP32 file, whose constants were folded after
  this table was measured: 8.47 MiB, same outputs), −0.4 points (goal ≤ 1), 2.25× faster (goal ≥ 1.5×).
- **Pruning** (torch-pruning, L2 magnitude) removes the given share of the expanded channels inside every
  inverted-residual block and of the last 1×1 conv; the residual stream and the stem keep their channels.
  Then 3 epochs of fine-tuning (lr 1e-4). Pruning every layer uniformly, tried first, left 40 % accuracy on
  150 validation images at 25 % before fine-tuning and 67.5 % test accuracy after it. At 50 % three CPU
  epochs are not enough to recover.
- **Clustering** shares 16 or 32 values per layer (k-means) on a per-output-channel scale (each weight is
  scale[channel] × centroid: the pretrained weights have BatchNorm folded in, so one plain codebook per layer
  zeroed the small channels: 49 % on 150 validation images at 32 clusters before fine-tuning, 70.9 % test
  accuracy after it; with the scale, 95.3 % before fine-tuning), then 2 epochs of cluster-preserving
  fine-tuning (lr 2e-5). The file stays float32; it pays when zipped, as an OTA update would move it."""

ERROR_FINDINGS = """What the errors are (the images are not redistributable, so they are named, not shown). Most are
smoke: a third of the errors are smoke photos called fire, DeepQuestAI web pictures where flames show under the
smoke (the classes are exclusive, so such pictures can only be half right, and the daemon raises an incident on
either: for an alarm they are not misses). Smoke called `none` are thin or distant plumes, four of them lookout
camera frames (`afm_`), and web pictures of pale smoke against a pale sky: the weakness the model card names.
The `none` images called fire or smoke are mostly called smoke: mist, a snow plough's spray, grey buildings and
seas under a flat sky, rain, a haze-grey forest; two are called fire (a sunlit waterfall in orange light, an
ILSVRC object). That is why smoke's `on` threshold is higher than fire's (below). By source, fog and mist
(`dawn_`, 2 of 33: 6 %) and the small Intel scenes (3 of 85) are the highest; the fixed webcams (`amos_`, day
and night, 43 views) and the skies are all right."""

THRESHOLD_CHOICE = """The videos separate little: every setting alerts the house fire within 0.4 s (its
first alert is smoke, then it escalates to fire when the flames grow) and the synthetic fire within a quarter of
a second, with no false alert (the synthetic smoke at 24 s comes inside the fire's incident, which stays open for
the 30 s quiet time: "0.00" is "already open"). The single images decide: most of the model's false alarms on
ordinary scenes are smoke (haze, grey skies, steam), not fire. So fire keeps `on` 0.6 with 3 frames (raising it
buys almost nothing: fire false alarms are already rare), and smoke gets `on` 0.8 with 4 frames, which cuts the
`none` images that reach a threshold by about a third for a few points of single-image smoke recall: smoke builds
up over seconds, and the smoothing and the 4-frame run let a real plume reach 0.8 while a grey sky's stray frame
does not. In a still scene both thresholds rise by 0.2 more (the motion rule, below). Both videos draw on the
test split's images or on a scene no run trained on; having chosen the settings on them, they are no longer an
unseen check."""

LR_FINDINGS = """As in the original study, the learning rate decides more than the backbone. A linear head on
frozen features tolerates a wide range (1e-5 to 1e-3 within a point and a half; 0.1 loses six points, the
updates overshoot). Full fine-tuning does not: at 1e-3 the pretrained features are overwritten in the first
epoch and three epochs do not rebuild them (66 %, most `none` images called fire or smoke), at 0.1 the network
collapses to one class (33 %), and at 1e-5 it learns too slowly for three epochs (88.5 %). The shipped run uses
2e-4, between 1e-5 and 1e-3: 96.4 % after 5 epochs (the backbone table), 97.0 % after 16."""

WHY_THIS_MODEL = """## Which model ships, and why

MobileNet-EdgeTPU 0.75, fully fine-tuned with frozen BatchNorm statistics, by the same recipe as the
MobileNetV2 beside it in the backbone table (the model shipped before it). On the same 978 test images it is
the better alarm: `none` called fire or smoke 1.7 % against 2.4 % at argmax and 0.9 % against 1.3 % at the
shipped thresholds, smoke recall 88.7 % against 85.5 %, accuracy 96.1 % against 95.4 %; its one worse figure
is fire recall (96.8 % against 98.0 %, and a fire called smoke still raises the incident). It is smaller
(1.7 M parameters, 6.8 MB against 2.2 M, 8.9 MB) and its largest activation is a third of MobileNetV2's, but
it does about twice the arithmetic (0.62 against 0.30 GMAC per frame, counted from the ONNX graphs): on this
shared CPU it took 1.6× MobileNetV2's median latency in the backbone table's run and 1.14× in an earlier run
(both timed in turns in one process), so a CPU-only host pays up to 60 % more per frame. On the Nano the plan
runs on the GPU, whose early full convolutions suit it better than depthwise ones (not measured: no Jetson was
lent). Its graph has
seven op types (Conv, Relu, Add, Pad with constant pads, GlobalAveragePool, Flatten, Gemm), all in TensorRT
8.2's ONNX parser (not parsed by a real TensorRT here: none installs). The engine file is FP32 ONNX
(`engines/firedetd.onnx`), from which the Jetson builds its FP16 TensorRT plan; `engines/firedetd-int8.onnx` is
the INT8 version for CPUs."""
