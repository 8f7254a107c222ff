"""Export a trained checkpoint to ONNX (opset 13, dynamic batch), verify it, and write the model spec.

Opset 13 is the newest TensorRT 8.2 (Jetson Nano) parses and ONNX Runtime 1.10 (the last for
Python 3.6) runs. `dynamo=False` keeps one self-contained file (the dynamo exporter writes opset
18 with external weights, which TensorRT 8.2 cannot read).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .augment import resize_stretch, to_input
from .data import LABELS, list_split, manifest_sha256, read_rgb
from .models import build_classifier

OPSET = 13
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def load_checkpoint(path: Path, backbone: str, calibrated: bool = True) -> nn.Module:
    """The checkpoint's model in eval mode; with `calibrated`, its fitted temperature folded into the head
    (logits / T from the same single Linear layer: no extra node, no cost at run time)."""
    model = build_classifier(backbone, len(LABELS), None)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("model", state))
    temperature = float(state.get("temperature", 1.0)) if calibrated and "model" in state else 1.0
    with torch.no_grad():
        model.classifier.weight /= temperature
        model.classifier.bias /= temperature
    model.temperature = temperature
    return model.eval().to(memory_format=torch.contiguous_format)


def export_onnx(model: nn.Module, path: Path, size: int = 224) -> Path:
    """Write `model` as an opset-13 ONNX file with input `input` [N,3,size,size] and output `logits` [N,3]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(model, (dummy,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                      opset_version=OPSET, do_constant_folding=True, dynamo=False)
    return fold_constants(path)


def fold_constants(path: Path) -> Path:
    """Rewrite the ONNX file at `path` with every subgraph that only computes constants folded into initializers.

    torch.onnx builds each F.pad's `pads` input (TF-style SAME padding of the stride-2 convs) from
    Slice(step -1) / Transpose / Reshape / Cast ops that its own constant folding skips, so the file's Pads read
    computed pads. TensorRT's ONNX parser up to 8.0 rejects that (`importPad: Assertion failed:
    inputs.at(1).is_weights()`, NVIDIA/TensorRT#670) and it costs every runtime 35 needless nodes; folded, each
    Pad reads an initializer. The IR version is kept: ONNX Runtime 1.10 (Python 3.6) reads IR 7, not newer.
    """
    import onnx
    import onnx_graphsurgeon as gs

    model = onnx.load(str(path))
    graph = gs.import_onnx(model)
    graph.fold_constants().cleanup().toposort()
    folded = gs.export_onnx(graph)
    folded.ir_version = model.ir_version
    folded.producer_name, folded.producer_version = model.producer_name, model.producer_version
    onnx.checker.check_model(folded)
    onnx.save(folded, str(path))
    return path


def sample_images(data_root: Path, split: str, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `per_class` images of each class of a split, resized like the daemon does."""
    samples = list_split(data_root, split)
    chosen, labels = [], []
    for index in range(len(LABELS)):
        for s in [s for s in samples if s.label == index][:per_class]:
            chosen.append(resize_stretch(read_rgb(s.path), 224))
            labels.append(index)
    return np.stack(chosen), np.array(labels)


def max_abs_difference(model: nn.Module, onnx_path: Path, images: np.ndarray) -> float:
    """max |torch - ONNX Runtime| over the logits of real images (batches of 8, exercising the batch axis)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for start in range(0, len(images), 8):
        x = to_input(images[start:start + 8])
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
    return worst


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_entry(path: Path, precision: str) -> dict:
    return {"path": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size, "precision": precision}


def write_spec(engines: Path, name: str, version: str, files: dict[str, dict], data_root: Path, metrics: dict,
               recommended: dict, backbone: str, size: int = 224, temperature: float = 1.0) -> Path:
    """Write engines/firedetd.json: what every runtime reads instead of hard-coding anything. `temperature` is
    recorded, not applied: it is already folded into the exported head."""
    spec = {
        "name": name,
        "version": version,
        "backbone": backbone,
        "labels": list(LABELS),
        "input": {"name": INPUT_NAME, "height": size, "width": size, "layout": "NCHW", "color": "RGB",
                  "scale": 1.0, "mean": [128.0, 128.0, 128.0], "std": [128.0, 128.0, 128.0],
                  "resize": "stretch", "dtype": "float32", "batch": "dynamic"},
        "output": {"name": OUTPUT_NAME, "kind": "logits", "temperature": temperature},
        "opset": OPSET,
        "files": {role: file_entry(engines / Path(f["path"]).name, f.get("precision", role))
                  for role, f in files.items()},
        "dataset": {"name": "fire-smoke (shared)", "manifest_sha256": manifest_sha256(data_root)},
        "metrics": metrics,
        "recommended": recommended,
    }
    path = engines / "firedetd.json"
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path
