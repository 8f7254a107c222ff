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
import torch.nn.functional as F

from .augment import resize_stretch, to_input
from .data import LABELS, list_split, manifest_sha256, read_rgb
from .models import build_classifier, global_average

OPSET = 13
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
CAM_NAME = "cam"


class WithClassMap(nn.Module):
    """The classifier with a second output: its class activation map, (N, classes, h, w) at the last feature map's
    resolution (7x7 at 224 input).

    Each cell is the head's Linear layer applied to that cell's features (a 1x1 convolution with the same weight and
    bias), so the map is in logit units, carries the folded temperature like the logits, and its spatial mean is the
    logits exactly (the mean of W f + b over cells is W mean(f) + b). The logits keep today's path (pool, then Linear)
    so they stay what the single-output export computed.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature_map = self.model.forward_feature_map(x)
        logits = self.model.classifier(global_average(feature_map))
        head = self.model.classifier
        cam = F.conv2d(feature_map, head.weight[:, :, None, None], head.bias)
        return logits, cam


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


def export_onnx(model: nn.Module, path: Path, size: int = 224, cam: bool = False) -> Path:
    """Write `model` as an opset-13 ONNX file with input `input` [N,3,size,size] and output `logits` [N,3]; with
    `cam`, a second output `cam` [N,3,h,w], the class activation map (WithClassMap)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(1, 3, size, size)
    outputs = [OUTPUT_NAME, CAM_NAME] if cam else [OUTPUT_NAME]
    # the wrapper in eval mode too: torch.onnx.export restores the exported module's mode afterwards, recursively,
    # and a fresh wrapper's (train) would switch the caller's model to batch-statistics BatchNorm
    exported = WithClassMap(model).eval() if cam else model
    torch.onnx.export(exported, (dummy,), str(path), input_names=[INPUT_NAME],
                      output_names=outputs, dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME] + outputs},
                      opset_version=OPSET, do_constant_folding=True, dynamo=False)
    if cam:
        set_output_dims(path, CAM_NAME, class_map_size(model, size))
    return fold_constants(path)


def set_output_dims(path: Path, name: str, spatial: tuple[int, int]) -> None:
    """Write the map's fixed (h, w) into the graph's description of output `name`. torch.onnx (2.x, TorchScript
    exporter) declares the Conv output's height with the batch axis's symbol and its width with a fresh one; ONNX
    Runtime infers the true shape anyway, but a TensorRT parser or a reader of the file should not be told that the
    height varies with the batch."""
    import onnx

    model = onnx.load(str(path))
    (output,) = [o for o in model.graph.output if o.name == name]
    for dim, value in zip(output.type.tensor_type.shape.dim[2:], spatial):
        dim.Clear()
        dim.dim_value = int(value)
    onnx.save(model, str(path))


def class_map_size(model: nn.Module, size: int = 224) -> tuple[int, int]:
    """(h, w) of the class activation map at a `size` x `size` input."""
    with torch.no_grad():
        return tuple(model.forward_feature_map(torch.zeros(1, 3, size, size)).shape[2:])


def cam_spec(model: nn.Module, size: int = 224) -> dict:
    """The spec's description of the `cam` output (firedetd.modelspec reads it)."""
    height, width = class_map_size(model, size)
    return {"name": CAM_NAME, "kind": "class_activation_map", "height": height, "width": width,
            "units": "logits: the head applied to each cell, temperature folded in; the spatial mean is the logits"}


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


def max_abs_difference(model: nn.Module, onnx_path: Path, images: np.ndarray, output: str = OUTPUT_NAME) -> float:
    """max |torch - ONNX Runtime| over the logits (or, with output="cam", the class activation maps) of real images
    (batches of 8, exercising the batch axis)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for start in range(0, len(images), 8):
        x = to_input(images[start:start + 8])
        with torch.no_grad():
            expected = (class_map(model, torch.from_numpy(x)) if output == CAM_NAME else model(torch.from_numpy(x)))
        got = session.run([output], {INPUT_NAME: x})[0]
        worst = max(worst, float(np.abs(expected.numpy() - got).max()))
    return worst


def class_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The class activation map as torch computes it, written apart from WithClassMap's convolution (a per-cell
    matrix product) so comparing the two checks the exported graph, not the same code twice."""
    feature_map = model.forward_feature_map(x)
    return torch.einsum("kc,nchw->nkhw", model.classifier.weight, feature_map) + model.classifier.bias[:, None, None]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_entry(path: Path, precision: str) -> dict:
    return {"path": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size, "precision": precision}


def write_spec(engines: Path, name: str, version: str, files: dict[str, dict], data_root: Path, metrics: dict,
               recommended: dict, backbone: str, size: int = 224, temperature: float = 1.0,
               cam: dict | None = None) -> Path:
    """Write engines/firedetd.json: what every runtime reads instead of hard-coding anything. `temperature` is
    recorded, not applied: it is already folded into the exported head. `cam` (cam_spec) describes the class
    activation map output when the files have one."""
    spec = {
        "name": name,
        "version": version,
        "backbone": backbone,
        "labels": list(LABELS),
        "input": {"name": INPUT_NAME, "height": size, "width": size, "layout": "NCHW", "color": "RGB",
                  "scale": 1.0, "mean": [128.0, 128.0, 128.0], "std": [128.0, 128.0, 128.0],
                  "resize": "stretch", "dtype": "float32", "batch": "dynamic"},
        "output": {"name": OUTPUT_NAME, "kind": "logits", "temperature": temperature},
        **({"cam": cam} if cam else {}),
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
