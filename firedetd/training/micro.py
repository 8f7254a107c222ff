"""firedetd-micro: a ~200 k-parameter fire/smoke/none CNN at 96x96 for microcontrollers, distilled from the
shipped MobileNetV2 (engines/firedetd.onnx) on the same data and augmentation as `firedetd train`.

Distillation runs from a bank of views made once: each training image gives one clean and `views - 1`
augmented 224x224 views (augment.py, the shipped recipe), the teacher scores each at 224, and the view is
stored at 96x96 for the student. Running the teacher per training step would cost ~10x the student's
time on these CPUs; a fixed bank of views plus cheap on-line flips and colour jitter keeps training at
minutes. Conversion to TFLite lives in firedetd/training/micro_convert.py (its own venv, see docs/micro.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from . import augment as A
from .data import LABELS, Sample, list_split, load_images, read_rgb
from .evaluate import classification_metrics, softmax
from .train import TrainConfig, fit_temperature, sampling_weights, seed_everything, selection_score

MICRO_SIZE = 96
# INTER_AREA averages the pixels a 96 px cell covers: a board's camera (or its ISP) bins the same way, and
# bilinear at ~1/3 scale would skip two pixels in three and alias flames into speckle.
MICRO_INTERPOLATION = cv2.INTER_AREA


def micro_view(image: np.ndarray, size: int = MICRO_SIZE) -> np.ndarray:
    """A whole RGB frame stretched to size x size the way the board does it (area averaging)."""
    return cv2.resize(image, (size, size), interpolation=MICRO_INTERPOLATION)


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


# depthwise-separable blocks: (output channels, stride); 96 -> 48 (stem) -> 24 -> 12 -> 6
MICRO_BLOCKS = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (256, 1))


class MicroNet(nn.Module):
    """MobileNetV1-shaped (stem conv, depthwise + pointwise blocks, average pool, one linear layer), sized so
    the INT8 weights stay near 200 KB and the largest pair of live activations (48x48x16 in, 48x48x32 out)
    near 110 KB. ReLU6 bounds every activation, which keeps the INT8 ranges tight."""

    def __init__(self, num_classes: int = len(LABELS), stem: int = 16,
                 blocks: tuple[tuple[int, int], ...] = MICRO_BLOCKS):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(3, stem, 3, 2)]
        cin = stem
        for cout, stride in blocks:
            layers += [_conv_bn_relu(cin, cin, 3, stride, groups=cin), _conv_bn_relu(cin, cout, 1, 1)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.num_features = cin
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def init_from_mobilenetv1(model: MicroNet, weights: Path) -> MicroNet:
    """Start from the shared ImageNet MobileNetV1 1.0 (WEIGHTS.md): MicroNet is its first eight blocks at half
    width, so each layer takes the pretrained filters of the channels with the largest L1 norm (the depthwise and
    the next pointwise layer follow the channels kept before them). Half of each layer's inputs are gone, so the
    scales are off: BatchNorm trains in train mode and re-learns them; the filters give ImageNet's edges, colours
    and textures a head start, which the `none` class (mostly ImageNet objects and scenes) needs."""
    source = torch.load(weights, map_location="cpu", weights_only=True)
    target = model.state_dict()

    def copy(src: str, dst: str, out_idx: torch.Tensor, in_idx: torch.Tensor | None) -> None:
        w = source[f"{src}.conv.weight"][out_idx]
        target[f"{dst}.0.weight"] = w[:, in_idx] if in_idx is not None else w
        for name in ("weight", "bias", "running_mean", "running_var"):
            target[f"{dst}.1.{name}"] = source[f"{src}.bn.{name}"][out_idx]

    def strongest(src: str, count: int) -> torch.Tensor:
        norms = source[f"{src}.conv.weight"].abs().flatten(1).sum(1)
        return torch.sort(torch.topk(norms, count).indices).values

    kept = strongest("features.0", target["features.0.0.weight"].shape[0])
    copy("features.0", "features.0", kept, None)
    for j in range(len(MICRO_BLOCKS)):
        copy(f"features.{j + 1}.dw", f"features.{1 + 2 * j}", kept, None)
        out = strongest(f"features.{j + 1}.pw", target[f"features.{2 + 2 * j}.0.weight"].shape[0])
        copy(f"features.{j + 1}.pw", f"features.{2 + 2 * j}", out, kept)
        kept = out
    model.load_state_dict(target)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- teacher and view bank

class OnnxTeacher:
    """The shipped model through ONNX Runtime: logits (its temperature already folded in) for RGB 224 views."""

    def __init__(self, onnx_path: Path, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def logits(self, views: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"input": A.to_input(views)})[0]


def make_view_bank(images: list[np.ndarray], labels: np.ndarray, teacher: OnnxTeacher, views: int, seed: int,
                   progress: bool = True, batch: int = 32) -> dict[str, np.ndarray]:
    """For each image: view 0 clean, views 1.. augmented at 224 (the shipped recipe); the teacher's logits at 224
    and the view at 96x96. Returns arrays `images` (N*views, 96, 96, 3), `teacher` (N*views, 3), `label`, `source`
    (index of the training image)."""
    rng = np.random.default_rng(seed)
    cfg = A.AugmentConfig(size=224)
    backgrounds = [im for im, label in zip(images, labels) if label == LABELS.index("none")]
    order = [(i, v) for v in range(views) for i in range(len(images))]
    small = np.empty((len(order), MICRO_SIZE, MICRO_SIZE, 3), np.uint8)
    scores = np.empty((len(order), len(LABELS)), np.float32)
    bar = tqdm(range(0, len(order), batch), desc="teacher views", unit="batch", disable=not progress)
    for start in bar:
        chunk = order[start:start + batch]
        big = np.stack([A.resize_stretch(images[i], 224) if v == 0 else
                        A.augment(images[i], rng, cfg, backgrounds, labels[i] == LABELS.index("none"))
                        for i, v in chunk])
        scores[start:start + len(chunk)] = teacher.logits(big)
        small[start:start + len(chunk)] = [micro_view(b) for b in big]
    source = np.array([i for i, _ in order])
    return {"images": small, "teacher": scores, "label": labels[source], "source": source}


# ---------------------------------------------------------------- distillation

@dataclass
class MicroTrainConfig:
    data: Path
    out: Path
    teacher: Path
    views: int = 3                 # per training image in the bank: 1 clean + 2 augmented
    epochs: int = 24               # passes over len(train) * views draws
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 4e-5
    distill_temperature: float = 2.0
    distill_weight: float = 0.7    # share of the loss that follows the teacher; the rest follows the label
    label_smoothing: float = 0.05
    seed: int = 0
    # None: from scratch; else the shared weights folder (../shared/weights), for init_from_mobilenetv1
    pretrained: Path | None = None
    none_weight: float = 1.0       # how often `none` is drawn against fire and smoke (1: equally)
    smoke_weight: float = 1.0      # how often smoke is drawn against fire
    threads: int = 1
    teacher_threads: int = 2       # the bank is made once; the teacher is ~90 % of its time
    max_per_class: int = 0
    progress: bool = True


def jitter_batch(views: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cheap on-line variety on top of the bank: mirror, brightness and contrast, a shift of a few pixels."""
    out = views.astype(np.float32)
    flip = rng.random(len(out)) < 0.5
    out[flip] = out[flip, :, ::-1]
    gain = rng.uniform(0.85, 1.15, (len(out), 1, 1, 1))
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * rng.uniform(0.85, 1.15, (len(out), 1, 1, 1)) + mean * gain
    dy, dx = (int(v) for v in rng.integers(-4, 5, 2))
    out = np.roll(out, (dy, dx), axis=(1, 2))
    return np.clip(out, 0, 255).astype(np.uint8)


# channels_last runs the depthwise convolutions 2-3x faster on these CPUs (measured: 0.23 s against 0.75 s a
# step of 64 at 96x96, forward + backward, 1 thread)
def to_tensor(views: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(A.to_input(views)).to(memory_format=torch.channels_last)


@torch.no_grad()
def predict(model: nn.Module, views: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    return np.concatenate([model(to_tensor(views[i:i + batch])).numpy() for i in range(0, len(views), batch)])


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, cfg: MicroTrainConfig):
    t = cfg.distill_temperature
    soft = F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1), reduction="batchmean") * t * t
    hard = F.cross_entropy(student, labels, label_smoothing=cfg.label_smoothing)
    return cfg.distill_weight * soft + (1 - cfg.distill_weight) * hard


def load_split_views(data: Path, split: str, max_per_class: int = 0,
                     progress: bool = True) -> tuple[list[Sample], np.ndarray]:
    """A split's images at 96x96 as the board sees them (the whole frame stretched)."""
    from .train import limit_per_class

    samples = limit_per_class(list_split(data, split), max_per_class)
    bar = tqdm(samples, desc=f"decode {split}", unit="img", disable=not progress, leave=False)
    return samples, np.stack([micro_view(read_rgb(s.path)) for s in bar])


def train_micro(cfg: MicroTrainConfig) -> dict:
    """Build (or reuse) the view bank, distill the student, keep the best epoch on val, fit its temperature;
    write best.pt (temperature folded into the head), history.json and result.json under cfg.out."""
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    cfg.out.mkdir(parents=True, exist_ok=True)
    from .train import limit_per_class

    samples = limit_per_class(list_split(cfg.data, "train"), cfg.max_per_class)
    bank_path = cfg.out / f"bank-{cfg.views}v-{len(samples)}.npz"
    if bank_path.is_file():
        bank = dict(np.load(bank_path))
    else:
        images = load_images(samples, max_side=320, progress=cfg.progress)
        labels = np.array([s.label for s in samples])
        bank = make_view_bank(images, labels, OnnxTeacher(cfg.teacher, cfg.teacher_threads), cfg.views, cfg.seed,
                              cfg.progress)
        np.savez(bank_path, **bank)
        del images
    val_samples, val_views = load_split_views(cfg.data, "val", cfg.max_per_class, cfg.progress)
    val_labels = np.array([s.label for s in val_samples])

    # class- and source-balanced draws, as `firedetd train` does; each view of an image shares its weight
    per_image = sampling_weights(samples, TrainConfig(data=cfg.data, out=cfg.out,
                                                      class_weights=(1.0, cfg.smoke_weight, cfg.none_weight)))
    weights = per_image[bank["source"]]
    weights /= weights.sum()
    model = MicroNet()
    if cfg.pretrained is not None:
        init_from_mobilenetv1(model, Path(cfg.pretrained) / "mobilenetv1_1.0_224_imagenet.pth")
    model = model.to(memory_format=torch.channels_last)
    steps = max(1, len(samples) * cfg.views // cfg.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps,
                                                    pct_start=0.15)
    rng = np.random.default_rng(cfg.seed)
    history, best_score, started = [], -np.inf, time.time()
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.choice(len(weights), size=steps * cfg.batch_size, replace=True, p=weights)
        running = 0.0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress, leave=False)
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = to_tensor(jitter_batch(bank["images"][idx], rng))
            loss = distill_loss(model(x), torch.from_numpy(bank["teacher"][idx]),
                                torch.from_numpy(bank["label"][idx].astype(np.int64)), cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item()
            bar.set_postfix(loss=f"{running / (step + 1):.4f}")
        val = classification_metrics(softmax(predict(model, val_views)), val_labels, LABELS)
        score = selection_score(val)
        row = {"epoch": epoch + 1, "train_loss": round(running / steps, 5), "val_accuracy": round(val["accuracy"], 5),
               "val_none_false_alarm": round(val["none_false_alarm_rate"], 5), "val_score": round(score, 5),
               "seconds": round(time.time() - started, 1)}
        history.append(row)
        improved = score > best_score
        if improved:
            best_score = score
            torch.save({"model": model.state_dict(), "epoch": epoch}, cfg.out / "best.pt")
        print(f"epoch {epoch + 1}: loss {row['train_loss']:.4f}  val acc {row['val_accuracy']:.4f}  "
              f"none->alarm {row['val_none_false_alarm']:.4f}" + ("  *" if improved else ""), flush=True)
        (cfg.out / "history.json").write_text(json.dumps(history, indent=2))

    best = torch.load(cfg.out / "best.pt", weights_only=True)
    model.load_state_dict(best["model"])
    val_logits = predict(model, val_views)
    temperature = fit_temperature(val_logits, val_labels)
    fold_temperature(model, temperature)
    none_offset = fit_none_offset(val_logits / temperature, val_labels)
    fold_none_offset(model, none_offset)
    torch.save({"model": model.state_dict(), "epoch": best["epoch"], "temperature": temperature,
                "none_offset": none_offset}, cfg.out / "best.pt")
    val = classification_metrics(softmax(predict(model, val_views)), val_labels, LABELS)
    result = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
              "parameters": count_parameters(model), "train_seconds": round(time.time() - started, 1),
              "best_epoch": best["epoch"] + 1, "temperature": round(temperature, 4), "none_offset": none_offset,
              "val": val, "history": history}
    (cfg.out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def fit_none_offset(logits: np.ndarray, labels: np.ndarray, max_false_alarm: float = 0.05) -> float:
    """A constant added to the `none` logit, chosen on validation: the most accurate offset that keeps the share
    of `none` called fire or smoke at or under `max_false_alarm` (else the best mean recall less that share). The
    student trains on class-balanced draws, so its prior for `none` is lower than a camera's; this moves it back
    without retraining, as the temperature fixes calibration."""
    none = LABELS.index("none")
    best_key, best_offset = None, 0.0
    for offset in np.round(np.arange(-1.0, 3.001, 0.05), 2):
        shifted = logits.copy()
        shifted[:, none] += offset
        m = classification_metrics(softmax(shifted), labels, LABELS)
        feasible = m["none_false_alarm_rate"] <= max_false_alarm
        key = (feasible, m["accuracy"] if feasible else selection_score(m), -abs(offset))
        if best_key is None or key > best_key:
            best_key, best_offset = key, float(offset)
    return best_offset


def fold_none_offset(model: MicroNet, offset: float) -> None:
    with torch.no_grad():
        model.classifier.bias[LABELS.index("none")] += offset


def fold_temperature(model: MicroNet, temperature: float) -> None:
    """logits / T from the same Linear layer: calibrated probabilities at no cost on the board."""
    with torch.no_grad():
        model.classifier.weight /= temperature
        model.classifier.bias /= temperature


def load_micro(path: Path) -> MicroNet:
    """A trained student (temperature already folded in) in eval mode."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = MicroNet()
    model.load_state_dict(state.get("model", state))
    return model.eval()
