"""Ship a trained checkpoint: ONNX FP32 + INT8 into engines/, verified, evaluated, with firedetd.json.

The test-split evaluation runs the exported ONNX files with ONNX Runtime and the daemon's own
preprocessing (firedetd.inference.preprocess), so the metrics in the spec are the daemon's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..inference.preprocess import Preprocessor, to_probabilities
from ..modelspec import InputSpec
from .augment import resize_stretch
from .data import LABELS, list_split, read_rgb
from .evaluate import classification_metrics
from .export import (
    CAM_NAME,
    cam_spec,
    export_onnx,
    load_checkpoint,
    max_abs_difference,
    sample_images,
    sha256_of,
    write_spec,
)
from .trtcalib import entropy_thresholds, read_trt_calibration_cache, write_trt_calibration_cache

INPUT = InputSpec(name="input", height=224, width=224, layout="NCHW", color="RGB", scale=1.0,
                  mean=(128.0, 128.0, 128.0), std=(128.0, 128.0, 128.0), resize="stretch")
EXPORT_TOLERANCE = 1e-3   # max |torch - ORT| on logits; float32 reorderings stay far below it
OUTPUT_NAMES = ("logits",)
OUTPUT_NAMES_WITH_CAM = ("logits", CAM_NAME)


def recommended_detection() -> dict:
    """The shipped detection defaults (the daemon's config defaults; a test keeps the two equal)."""
    from ..config import DetectionConfig

    d = DetectionConfig()
    return {"smoothing_alpha": d.smoothing_alpha,
            "fire": {"on": d.fire.on, "off": d.fire.off, "raise_frames": d.fire.raise_frames,
                     "clear_frames": d.fire.clear_frames},
            "smoke": {"on": d.smoke.on, "off": d.smoke.off, "raise_frames": d.smoke.raise_frames,
                      "clear_frames": d.smoke.clear_frames}}


def split_images(data_root: Path, split: str, progress: bool = True) -> tuple[list[np.ndarray], np.ndarray]:
    samples = list_split(data_root, split)
    images = [resize_stretch(read_rgb(s.path), 224) for s in tqdm(samples, desc=f"read {split}", disable=not progress,
                                                                  leave=False)]
    return images, np.array([s.label for s in samples])


def onnx_probabilities(path: Path, images: list[np.ndarray], threads: int = 2, batch: int = 16) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    preprocess = Preprocessor(INPUT)
    out = [session.run(["logits"], {"input": preprocess(images[i:i + batch])})[0] for i in range(0, len(images), batch)]
    return to_probabilities(np.concatenate(out), "logits")


def evaluate_onnx(path: Path, images: list[np.ndarray], labels: np.ndarray, thresholds: dict | None = None) -> dict:
    return classification_metrics(onnx_probabilities(path, images), labels, LABELS, thresholds)


class CalibrationReader:
    """Feeds ONNX Runtime's static quantizer training images, preprocessed as the daemon does."""

    def __init__(self, images: list[np.ndarray], batch: int = 8):
        self.batches = [Preprocessor(INPUT)(images[i:i + batch]) for i in range(0, len(images), batch)]
        self.index = 0

    def get_next(self):
        if self.index >= len(self.batches):
            return None
        self.index += 1
        return {"input": self.batches[self.index - 1]}

    def rewind(self):
        self.index = 0


def calibration_images(data_root: Path, count: int, seed: int = 0) -> list[np.ndarray]:
    """A class-balanced, seeded sample of training images for INT8 calibration."""
    samples = list_split(data_root, "train")
    rng = np.random.default_rng(seed)
    chosen = []
    for index in range(len(LABELS)):
        of_class = [s for s in samples if s.label == index]
        picks = rng.choice(len(of_class), size=min(len(of_class), count // len(LABELS)), replace=False)
        chosen.extend(of_class[i] for i in sorted(picks))
    return [resize_stretch(read_rgb(s.path), 224) for s in chosen]


def quantize_int8(fp32_path: Path, int8_path: Path, images: list[np.ndarray]) -> Path:
    """Static INT8 (QDQ, per-channel weights, calibrated on training images) with ONNX Runtime."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = int8_path.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    try:
        quantize_static(str(prepared), str(int8_path), CalibrationReader(images), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        prepared.unlink(missing_ok=True)
    strip_unused_opsets(int8_path)
    compact_tensor_names(int8_path)
    return int8_path


def compact_tensor_names(path: Path) -> None:
    """Rename every inner tensor and node to a short id (the graph's inputs and outputs keep theirs). QDQ
    quantization adds four names per layer, each spelled out in full several times (initializer, node inputs,
    node outputs); the text was ~4 % of the INT8 file. Outputs are bit-identical."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    kept = {v.name for v in graph.input} | {v.name for v in graph.output}
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or name in kept:
            return name
        return short.setdefault(name, f"t{len(short):x}")

    for tensor in graph.initializer:
        tensor.name = rename(tensor.name)
    for index, node in enumerate(graph.node):
        node.name = f"n{index:x}"
        node.input[:] = [rename(name) for name in node.input]
        node.output[:] = [rename(name) for name in node.output]
    del graph.value_info[:]  # inferred shapes only; ONNX Runtime infers them again at load
    onnx.save(model, str(path))


def strip_unused_opsets(path: Path) -> None:
    """Keep only the opset domains the graph uses: the quantizer stamps ai.onnx.ml 5 and others, which
    ONNX Runtime 1.10 (the last for Python 3.6, the Nano's) refuses to load."""
    import onnx

    model = onnx.load(str(path))
    used = {node.domain for node in model.graph.node}
    kept = [o for o in model.opset_import if o.domain in used or o.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(path))


def add_calibration_entry(spec_path: Path, calib: Path) -> None:
    """Record the TensorRT INT8 calibration cache in the spec (a device never needs the dataset)."""
    spec = json.loads(spec_path.read_text())
    spec["calibration"] = {"path": calib.name, "sha256": sha256_of(calib), "format": "TensorRT EntropyCalibration2",
                           "made_with": "ONNX Runtime entropy calibrator on 120 training images"}
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")


def ship_model(checkpoint: Path, backbone: str, engines: Path, data_root: Path, version: str,
               calibration_count: int = 300, progress: bool = True, cam: bool = False) -> dict:
    """Export, verify, quantize, evaluate and describe the model; returns the spec's metrics. With `cam` the files
    get the class activation map as a second output (export.WithClassMap)."""
    engines.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint(checkpoint, backbone)
    fp32 = export_onnx(model, engines / "firedetd.onnx", cam=cam)
    check_images, _ = sample_images(data_root, "val", per_class=8)
    diffs = {}
    for output in (OUTPUT_NAMES_WITH_CAM if cam else OUTPUT_NAMES):
        diffs[output] = max_abs_difference(model, fp32, check_images, output)
        print(f"export: max |torch - onnxruntime| of {output} on {len(check_images)} val images = "
              f"{diffs[output]:.2e}", flush=True)
        if diffs[output] > EXPORT_TOLERANCE:
            raise RuntimeError(f"ONNX export's {output} disagrees with torch by {diffs[output]:.3g} "
                               f"(> {EXPORT_TOLERANCE})")
    diff = diffs["logits"]
    calibration = calibration_images(data_root, calibration_count)
    int8 = quantize_int8(fp32, engines / "firedetd-int8.onnx", calibration)
    calib = write_trt_calibration_cache(engines / "firedetd-int8.calib",
                                        entropy_thresholds(fp32, CalibrationReader(calibration[:120]).batches))
    print(f"TensorRT INT8 calibration cache: {calib} ({len(read_trt_calibration_cache(calib))} tensors)", flush=True)
    test_images, test_labels = split_images(data_root, "test", progress)
    thresholds = {k: v["on"] for k, v in recommended_detection().items() if isinstance(v, dict)}
    metrics = {"export_max_abs_diff": diff, "test": {}}
    for role, path in (("fp32", fp32), ("int8", int8)):
        m = evaluate_onnx(path, test_images, test_labels)
        m_thr = evaluate_onnx(path, test_images, test_labels, thresholds)
        metrics["test"][role] = {"accuracy": round(m["accuracy"], 4),
                                 "none_false_alarm_rate": round(m["none_false_alarm_rate"], 4),
                                 "none_false_alarm_rate_at_thresholds": round(m_thr["none_false_alarm_rate"], 4),
                                 "per_class": m["per_class"], "confusion": m["confusion"], "count": m["count"]}
        print(f"{role}: test accuracy {m['accuracy']:.4f}, none called fire/smoke {m['none_false_alarm_rate']:.4f} "
              f"(at thresholds {m_thr['none_false_alarm_rate']:.4f})", flush=True)
    files = {"fp32": {"path": fp32.name, "precision": "fp32"}, "int8": {"path": int8.name, "precision": "int8"}}
    spec_path = write_spec(engines, f"firedetd-{backbone}", version, files, data_root, metrics, recommended_detection(),
                           backbone, temperature=round(getattr(model, "temperature", 1.0), 4),
                           cam=cam_spec(model) if cam else None)
    add_calibration_entry(spec_path, calib)
    (engines / "export-report.json").write_text(json.dumps({"checkpoint": str(checkpoint), **metrics}, indent=2))
    return metrics
