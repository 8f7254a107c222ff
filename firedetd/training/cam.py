"""Does the class activation map point at the fire? `firedetd cam-check`: export a checkpoint with its map, run the
test split's `lzdet_` photos that have source boxes (../shared/data/fire-smoke/boxes.csv) through the daemon's ONNX
Runtime engine, and count how often the map's peak (firedetd.region.peak_position) falls inside a box of the
photo's class. The boxes are the source's and incomplete (SOURCE.md), so the figure is a lower bound; two baselines
say what chance gives: the image centre, and a uniformly random point (the boxes' covered area)."""

from __future__ import annotations

import csv
import json
import shlex
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..inference.preprocess import Preprocessor, to_probabilities
from ..modelspec import load_spec
from ..region import peak_position
from .augment import resize_stretch
from .data import LABELS, read_rgb
from .export import cam_spec, export_onnx, load_checkpoint, sha256_of

Box = tuple[float, float, float, float]   # cx, cy, w, h normalised, as boxes.csv


def export_cam_model(checkpoint: Path, backbone: str, out_dir: Path, base_spec: Path) -> Path:
    """Export `checkpoint` with its map into `out_dir` (firedetd.onnx) beside a copy of `base_spec` that names the file
    and describes the map; return the spec's path."""
    model = load_checkpoint(checkpoint, backbone)
    path = export_onnx(model, out_dir / "firedetd.onnx", cam=True)
    raw = json.loads(Path(base_spec).read_text())
    raw["files"] = {"fp32": {"path": path.name, "sha256": sha256_of(path), "precision": "fp32"}}
    raw.pop("calibration", None)
    raw["cam"] = cam_spec(model)
    spec_path = out_dir / "firedetd.json"
    spec_path.write_text(json.dumps(raw, indent=2) + "\n")
    return spec_path


def read_boxes(path: Path, split: str, prefix: str = "lzdet_") -> dict[str, list[tuple[str, Box]]]:
    """{'split/class/name.jpg': [(box_class, box), ...]} for the split's photos whose name starts with `prefix`."""
    boxes: dict[str, list[tuple[str, Box]]] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            parts = row["file"].split("/")
            if parts[0] == split and parts[-1].startswith(prefix):
                boxes[row["file"]].append((row["box_class"], tuple(float(row[k]) for k in ("cx", "cy", "w", "h"))))
    return dict(boxes)


def inside(point: tuple[float, float], box: Box) -> bool:
    cx, cy, w, h = box
    return abs(point[0] - cx) <= w / 2 and abs(point[1] - cy) <= h / 2


def covered_fraction(boxes: list[Box], grid: int = 224) -> float:
    """The share of the image inside at least one box: the hit rate of a uniformly random point."""
    centres = (np.arange(grid) + 0.5) / grid
    x, y = np.meshgrid(centres, centres)
    covered = np.zeros((grid, grid), bool)
    for cx, cy, w, h in boxes:
        covered |= (np.abs(x - cx) <= w / 2) & (np.abs(y - cy) <= h / 2)
    return float(covered.mean())


def check_peaks(spec_path: Path, data_root: Path, boxes_csv: Path, split: str = "test",
                progress: bool = True) -> dict:
    """Peak-in-box counts per class for the split's boxed photos, through the daemon's engine and preprocessing."""
    from ..config import ModelConfig
    from ..inference.onnxruntime import OnnxRuntimeEngine

    spec = load_spec(str(spec_path))
    engine = OnnxRuntimeEngine(spec, ModelConfig(max_batch=1))
    preprocess = Preprocessor(spec.input)
    size = spec.input.width
    rows = []
    boxes_of = read_boxes(boxes_csv, split)
    for name in tqdm(sorted(boxes_of), desc="cam-check", unit="img", disable=not progress):
        label = name.split("/")[1]
        own = [box for kind, box in boxes_of[name] if kind == label]
        if not own:   # a photo labelled fire for flames the source did not box (SOURCE.md): nothing to check
            continue
        image = resize_stretch(read_rgb(data_root / name), size)
        logits, cam = engine.infer_with_map(preprocess([image]))
        index = LABELS.index(label)
        peak = peak_position(cam[0, index], size)
        rows.append({"file": name, "label": label, "boxes": len(own),
                     "predicted": LABELS[int(to_probabilities(logits, spec.output.kind)[0].argmax())],
                     "peak": [round(v, 4) for v in peak], "peak_in_box": any(inside(peak, b) for b in own),
                     "centre_in_box": any(inside((0.5, 0.5), b) for b in own),
                     "covered": round(covered_fraction(own, size), 4)})
    summary = {}
    for label in ("fire", "smoke", "all"):
        of = [r for r in rows if label in ("all", r["label"])]
        if not of:
            continue
        right = [r for r in of if r["predicted"] == r["label"]]
        summary[label] = {"photos": len(of), "peak_in_box": round(np.mean([r["peak_in_box"] for r in of]), 4),
                          "peak_in_box_when_predicted_right": round(np.mean([r["peak_in_box"] for r in right]), 4)
                          if right else None, "predicted_right": len(right),
                          "baseline_centre_in_box": round(np.mean([r["centre_in_box"] for r in of]), 4),
                          "baseline_random_point_in_box": round(np.mean([r["covered"] for r in of]), 4)}
    return {"summary": summary, "photos": rows}


def run_cam_check(checkpoint: Path, backbone: str, data_root: Path, base_spec: Path, out: Path,
                  progress: bool = True) -> dict:
    """Export with the map into a temporary folder, check the peaks, write `out` (JSON) with the command."""
    with tempfile.TemporaryDirectory() as work:
        spec_path = export_cam_model(checkpoint, backbone, Path(work), base_spec)
        result = check_peaks(spec_path, data_root, data_root / "boxes.csv", progress=progress)
    record = {"command": "firedetd " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "checkpoint": str(checkpoint), "checkpoint_sha256": sha256_of(checkpoint), "backbone": backbone,
              "what": "share of the test split's lzdet_ photos (with a source box of their class) whose class "
                      "activation map peak, of the photo's class, upsampled bilinearly to 224x224, lies inside a box "
                      "of that class; boxes are incomplete (SOURCE.md), so it is a lower bound",
              **result}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return record
