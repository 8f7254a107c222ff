"""PyTorch student -> full-INT8 .tflite with litert-torch (PT2E static quantization), then the spec and C array.

Needs the converter venv (docs/micro.md: torch 2.13.0 CPU + litert-torch 0.10.0, which brings litert-converter
and torchao; no TensorFlow). Python 3.11 only, like the training package.

Why these choices:
- PT2E with per-channel symmetric INT8 weights and INT8 activations is the scheme TFLM's optimized kernels
  (CMSIS-NN, ESP-NN) implement; litert-torch folds the quantize at the input and the dequantize at the output,
  so the flatbuffer's input and output tensors are int8 and no float buffer sits in the arena.
- The network is wrapped to take NHWC: a board's camera gives rows of RGB pixels, and TFLite kernels are
  NHWC, so no TRANSPOSE is left in the graph.
- Tensor names are stripped: TFLM never reads them, and they cost ~20 KB of flash.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..micro import ARENA_BUDGET_BYTES, FLASH_BUDGET_BYTES, SPEC_NAME, load_micro_spec
from ..micro.carray import write_c_array
from . import augment as A
from .data import LABELS, list_split, read_rgb
from .micro import MICRO_SIZE, load_micro, micro_view

TFLITE_NAME = "firedetd-micro.tflite"
PYTORCH_NAME = "firedetd-micro.pt"


class NHWCInput(nn.Module):
    """Takes (N, H, W, 3) normalised RGB, as the board's frame buffer is laid out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.permute(0, 3, 1, 2))


def normalise(views: np.ndarray) -> torch.Tensor:
    """uint8 NHWC RGB -> float NHWC (pixel - 128) / 128, the student's training input."""
    return torch.from_numpy((views.astype(np.float32) - 128.0) / 128.0)


def calibration_views(data_root: Path, count: int, seed: int = 0) -> np.ndarray:
    """A representative set from the train split: `count` images drawn evenly over the classes, each as the board
    sees it (clean) and once through the training augmentation (dusk, haze, blur, JPEG: the ranges a camera meets)."""
    rng = np.random.default_rng(seed)
    samples = list_split(data_root, "train")
    chosen = []
    for label in range(len(LABELS)):
        of_class = [s for s in samples if s.label == label]
        chosen += [of_class[i] for i in rng.choice(len(of_class), count // len(LABELS), replace=False)]
    cfg = A.AugmentConfig(size=224)
    views = []
    for s in chosen:
        image = read_rgb(s.path, 320)
        views.append(micro_view(image))
        views.append(micro_view(A.augment(image, rng, cfg, None, s.label == LABELS.index("none"))))
    return np.stack(views)


def convert_int8(model: nn.Module, calibration: np.ndarray, path: Path) -> Path:
    """Quantize `model` (NCHW, eval) with PT2E on `calibration` (uint8 NHWC views) and write the INT8 .tflite."""
    import litert_torch
    from ai_edge_litert.tools import flatbuffer_utils
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    wrapped = NHWCInput(model.eval()).eval()
    example = (normalise(calibration[:1]),)
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    prepared = quantize_pt2e.prepare_pt2e(torch.export.export(wrapped, example).module(), quantizer)
    with torch.no_grad():
        # the exported graph is specialised to batch 1 (the board's), so calibration goes one view at a time
        for index in range(len(calibration)):
            prepared(normalise(calibration[index:index + 1]))
    quantized = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    move_exported_model_to_eval(quantized)
    edge = litert_torch.convert(quantized, example, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    path.parent.mkdir(parents=True, exist_ok=True)
    edge.export(str(path))
    flat = flatbuffer_utils.read_model(str(path))
    flatbuffer_utils.strip_strings(flat)
    flatbuffer_utils.write_model(flat, str(path))
    return path


def io_quantization(model_bytes: bytes) -> tuple[dict, dict]:
    """The input and output tensors' dtype, scale and zero point, read by LiteRT from the flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    details = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    out = []
    for d in details:
        if d["dtype"] is not np.int8:
            raise RuntimeError(f"the converted model's {d['name']} is {d['dtype']}, not int8: not a full-INT8 model")
        scale, zero_point = d["quantization"]
        out.append({"scale": float(scale), "zero_point": int(zero_point), "shape": [int(v) for v in d["shape"]]})
    return out[0], out[1]


def package_versions() -> dict:
    from importlib.metadata import version

    names = ("torch", "litert-torch", "litert-converter", "torchao", "ai-edge-litert", "tflite-micro")
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing package is recorded as missing, not fatal
            found[name] = None
    return found


def write_micro_spec(out_dir: Path, tflite: Path, model_input: dict, model_output: dict, arena_bytes: int,
                     temperature: float, none_offset: float, extra: dict) -> Path:
    data = tflite.read_bytes()
    spec = {
        "name": "firedetd-micro",
        "version": extra.pop("version", "1"),
        "labels": list(LABELS),
        "input": {"height": model_input["shape"][1], "width": model_input["shape"][2], "channels": 3,
                  "layout": "NHWC", "color": "RGB", "resize": "stretch", "interpolation": "area",
                  "mean": 128.0, "std": 128.0, "dtype": "int8",
                  "scale": model_input["scale"], "zero_point": model_input["zero_point"]},
        "output": {"kind": "logits", "dtype": "int8", "scale": model_output["scale"],
                   "zero_point": model_output["zero_point"], "temperature_folded": round(temperature, 4),
                   "none_offset_folded": none_offset},
        "arena_bytes": arena_bytes,
        "budget": {"flash_bytes": FLASH_BUDGET_BYTES, "arena_bytes": ARENA_BUDGET_BYTES},
        "files": {"tflite": {"path": tflite.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
                  "pytorch": {"path": PYTORCH_NAME, "precision": "fp32", "note": "the student before conversion"}},
        **extra,
    }
    path = out_dir / SPEC_NAME
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def export_micro(checkpoint: Path, data_root: Path, out_dir: Path, calibration_images: int = 420,
                 version: str = "1") -> dict:
    """Convert a trained student to engines/micro/: the .tflite, its spec (with the arena TFLM needs) and the
    C array. Returns the spec as written."""
    from ..micro.runtime import minimum_arena

    torch.set_num_threads(1)
    model = load_micro(checkpoint)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    temperature, none_offset = float(state.get("temperature", 1.0)), float(state.get("none_offset", 0.0))
    calibration = calibration_views(data_root, calibration_images)
    print(f"calibration set: {len(calibration)} views of {calibration_images} training images", flush=True)
    tflite = convert_int8(model, calibration, out_dir / TFLITE_NAME)
    # the float student beside its INT8 file: what the agreement tests compare against (~0.85 MB)
    torch.save({"model": model.state_dict(), "temperature": temperature, "none_offset": none_offset},
               out_dir / PYTORCH_NAME)
    data = tflite.read_bytes()
    model_input, model_output = io_quantization(data)
    probe = np.round(normalise(calibration[:1]).numpy() / model_input["scale"]) + model_input["zero_point"]
    arena = minimum_arena(data, np.clip(probe, -128, 127).astype(np.int8))
    extra = {"version": version, "converter": package_versions(), "calibration_views": int(len(calibration)),
             "input_size": MICRO_SIZE}
    spec_path = write_micro_spec(out_dir, tflite, model_input, model_output, arena, temperature, none_offset, extra)
    spec = load_micro_spec(str(spec_path))
    header, source = write_c_array(spec, str(out_dir))
    print(f"{tflite}: {len(data)} bytes (budget {FLASH_BUDGET_BYTES}), arena {arena} bytes (budget "
          f"{ARENA_BUDGET_BYTES}); C array {os.path.basename(header)} + {os.path.basename(source)}", flush=True)
    return spec.raw
