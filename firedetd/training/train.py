"""Transfer learning for the fire/smoke/none classifier: head-only (cached features), full fine-tune, scratch.

Seeded and reproducible on one machine (same seed, same thread count); a checkpoint per epoch
(`last.pt`, `best.pt`), early stopping on validation accuracy (ties broken by validation loss),
a `history.json` and a `result.json` per run.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from . import augment as A
from .data import LABELS, Sample, format_counts, list_split, load_images
from .evaluate import classification_metrics, softmax
from .models import build_classifier, count_parameters, freeze_batchnorm

MODES = ("head", "full", "scratch")


@dataclass
class TrainConfig:
    data: Path
    out: Path
    weights: Path | None = None
    backbone: str = "mobilenetv2"
    mode: str = "full"
    epochs: int = 12
    lr: float = 3e-4
    head_lr_mult: float = 10.0       # a fresh head learns faster than pretrained layers should move
    batch_size: int = 32
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    patience: int = 4
    seed: int = 0
    size: int = 224
    threads: int = 2
    head_views: int = 4              # augmented views cached per image for head-only training
    rare_weight: float = 4.0         # oversampling of rare hard cases (distant plumes: afm_ prefix)
    rare_origins: tuple[str, ...] = ("afm",)
    # within a class, a source is drawn in proportion to (its image count) ** source_power: 1 = as the folder
    # holds them, 0 = every source alike; 0.5 lifts small sources without repeating their few images endlessly
    source_power: float = 0.5
    # how often each class is drawn, relative to the others (all 1: equally often)
    class_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    # hard-example mining: before these epochs (1-based) the model scores every training image (clean view) and
    # the ones it gets wrong, `none` called fire or smoke first of all, are drawn up to 1 + mining_boost as often
    mining_epochs: tuple[int, ...] = ()
    mining_boost: float = 4.0
    max_per_class: int = 0           # 0 = all; small numbers make quick tests
    feature_cache: Path | None = None  # head mode: reuse the frozen backbone's features across runs (LR sweep)
    progress: bool = True
    finish: bool = False             # score the run's best.pt and write result.json; no training (a cut-off run)
    augment: A.AugmentConfig = field(default_factory=A.AugmentConfig)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def limit_per_class(samples: list[Sample], limit: int) -> list[Sample]:
    if not limit:
        return samples
    kept: dict[int, int] = {}
    out = []
    for s in samples:
        if kept.get(s.label, 0) < limit:
            kept[s.label] = kept.get(s.label, 0) + 1
            out.append(s)
    return out


def none_images(samples: list[Sample], images: list[np.ndarray]) -> list[np.ndarray]:
    """Training scenes without fire or smoke: the backgrounds that zoom-out places small subjects in."""
    none = LABELS.index("none")
    return [im for s, im in zip(samples, images) if s.label == none]


def sampling_weights(samples: list[Sample], cfg: TrainConfig) -> np.ndarray:
    """Class- and source-balanced sampling: each class drawn as often as its class weight says (equally by default);
    inside a class each source (file-name prefix) in proportion to its size ** source_power; rare hard cases
    (distant plumes) more often still."""
    groups: dict[tuple[int, str], int] = {}
    for s in samples:
        groups[(s.label, s.origin)] = groups.get((s.label, s.origin), 0) + 1
    class_mass: dict[int, float] = {}
    for (label, _), n in groups.items():
        class_mass[label] = class_mass.get(label, 0.0) + n ** cfg.source_power
    weights = np.array([groups[(s.label, s.origin)] ** cfg.source_power / groups[(s.label, s.origin)]
                        / class_mass[s.label] * cfg.class_weights[s.label] for s in samples])
    weights *= np.array([cfg.rare_weight if s.origin in cfg.rare_origins else 1.0 for s in samples])
    return weights / weights.sum()


def hardness(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How wrong the model is on each image, 0..1: for `none` the probability it gives fire or smoke, for fire and
    smoke the probability it gives anything else."""
    return 1.0 - probs[np.arange(len(labels)), labels]


def mined_weights(base: np.ndarray, probs: np.ndarray, labels: np.ndarray, boost: float) -> np.ndarray:
    """Sampling weights with the hard examples drawn up to (1 + boost) times as often; a false alarm on `none`
    counts double, because it is the error a site pays for every day."""
    hard = hardness(probs, labels)
    none = LABELS.index("none")
    factor = 1.0 + boost * np.clip(np.where(labels == none, 2.0 * hard, hard), 0.0, 1.0)
    weights = base * factor
    return weights / weights.sum()


# channels_last runs MobileNet's depthwise convolutions about 2x faster on these CPUs (measured: 1.0 s vs
# 2.0 s for a batch of 32 at 224, forward + backward, 2 threads).
FAST_FORMAT = torch.channels_last


def clean_batch(images: list[np.ndarray], size: int) -> torch.Tensor:
    batch = np.stack([A.resize_stretch(im, size) for im in images])
    return torch.from_numpy(A.to_input(batch)).to(memory_format=FAST_FORMAT)


def augmented_batch(images: list[np.ndarray], rng: np.random.Generator, cfg: TrainConfig,
                    backgrounds: list[np.ndarray] | None = None, labels: np.ndarray | None = None) -> torch.Tensor:
    none = LABELS.index("none")
    is_none = [False] * len(images) if labels is None else [int(label) == none for label in labels]
    batch = np.stack([A.augment(im, rng, cfg.augment, backgrounds, flag) for im, flag in zip(images, is_none)])
    return torch.from_numpy(A.to_input(batch)).to(memory_format=FAST_FORMAT)


@torch.no_grad()
def predict_logits(model: nn.Module, images: list[np.ndarray], size: int, batch_size: int = 64,
                   progress: bool = False, desc: str = "eval") -> np.ndarray:
    model.eval()
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, leave=False):
        out.append(model(clean_batch(images[start:start + batch_size], size)).numpy())
    return np.concatenate(out)


@torch.no_grad()
def extract_features(model: nn.Module, batches, progress: bool, desc: str, total: int) -> torch.Tensor:
    model.eval()
    bar = tqdm(batches, desc=desc, total=total, disable=not progress, leave=False)
    feats = [model.forward_features(x) for x in bar]
    return torch.cat(feats)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    head = list(model.classifier.parameters())
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": head, "lr": cfg.lr * (cfg.head_lr_mult if cfg.mode == "full" else 1.0)}]
    if body and cfg.mode != "head":
        groups.append({"params": body, "lr": cfg.lr})
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


class EarlyStopper:
    """Track the best epoch by (val score, -val loss); say when `patience` epochs brought nothing."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best: tuple[float, float] | None = None
        self.best_epoch = -1
        self.bad_epochs = 0

    def update(self, epoch: int, score: float, loss: float) -> bool:
        key = (score, -loss)
        if self.best is None or key > self.best:
            self.best, self.best_epoch, self.bad_epochs = key, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience


def metrics_from_logits(logits: np.ndarray, labels: np.ndarray) -> dict:
    loss = float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)))
    metrics = classification_metrics(softmax(logits), labels, LABELS)
    metrics["loss"] = loss
    return metrics


def train(cfg: TrainConfig) -> dict:
    """Run one training configuration end to end; return (and write) its result."""
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    cfg.out.mkdir(parents=True, exist_ok=True)
    recorded = history_of_cut_off_run(cfg.out) if cfg.finish else None
    train_samples = limit_per_class(list_split(cfg.data, "train"), cfg.max_per_class)
    val_samples = limit_per_class(list_split(cfg.data, "val"), cfg.max_per_class)
    for split, samples in (("train", train_samples), ("val", val_samples)):
        print(format_counts(split, samples), flush=True)
    train_images = [] if cfg.finish else load_images(train_samples, progress=cfg.progress)
    val_images = load_images(val_samples, progress=cfg.progress)
    val_labels = np.array([s.label for s in val_samples])

    pretrained = cfg.weights if cfg.mode != "scratch" else None
    model = build_classifier(cfg.backbone, len(LABELS), pretrained).to(memory_format=FAST_FORMAT)
    started = time.time()
    if recorded is not None:
        history = recorded
    elif cfg.mode == "head":
        history = fit_head_on_cached_features(model, train_samples, train_images, val_images, val_labels, cfg)
    else:
        history = fit_network(model, train_samples, train_images, val_images, val_labels, cfg)
    best = torch.load(cfg.out / "best.pt", weights_only=True)
    model.load_state_dict(best["model"])
    val_logits = predict_logits(model, val_images, cfg.size, progress=cfg.progress)
    val = metrics_from_logits(val_logits, val_labels)
    temperature = fit_temperature(val_logits, val_labels)
    torch.save({**best, "temperature": temperature}, cfg.out / "best.pt")
    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "parameters": count_parameters(model),
        "train_seconds": None if cfg.finish else round(time.time() - started, 1),
        "finished_from_checkpoint": cfg.finish,
        "epochs_run": len(history),
        "best_epoch": max(range(len(history)), key=lambda i: (history[i].get("val_score", history[i]["val_accuracy"]),
                                                              -history[i]["val_loss"])),
        "temperature": round(temperature, 4),
        "val_nll_calibrated": round(float(nn.functional.cross_entropy(
            torch.from_numpy(val_logits / temperature), torch.from_numpy(val_labels))), 5),
        "val": val,
        "val_none_false_alarm_by_source": none_false_alarms_by_source(val_samples, val_logits),
        "history": history,
    }
    (cfg.out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"{cfg.backbone}/{cfg.mode} lr={cfg.lr:g}: val accuracy {val['accuracy']:.4f}, "
          f"none false alarms {val['none_false_alarm_rate']:.4f}, temperature {temperature:.3f}, "
          + ("finished from its checkpoint" if cfg.finish else f"{result['train_seconds']:.0f} s"), flush=True)
    return result


def history_of_cut_off_run(out: Path) -> list[dict]:
    """The epochs a run stopped before its end (killed, machine lost) recorded: its best.pt and history.json
    are written after every epoch, so `--finish` scores that checkpoint instead of training again."""
    missing = [name for name in ("best.pt", "history.json") if not (out / name).is_file()]
    if missing:
        raise SystemExit(f"firedetd train --finish: {out} has no {' or '.join(missing)}; nothing to finish")
    history = json.loads((out / "history.json").read_text())
    print(f"finishing {out} from its best checkpoint after {len(history)} recorded epoch(s)", flush=True)
    return history


def none_false_alarms_by_source(samples: list[Sample], logits: np.ndarray) -> dict[str, dict]:
    """For each source of `none` images: how many, and the share called fire or smoke at argmax."""
    none = LABELS.index("none")
    out: dict[str, dict] = {}
    for s, predicted in zip(samples, logits.argmax(axis=1)):
        if s.label != none:
            continue
        row = out.setdefault(s.origin, {"count": 0, "false_alarms": 0})
        row["count"] += 1
        row["false_alarms"] += int(predicted != none)
    for row in out.values():
        row["rate"] = round(row["false_alarms"] / row["count"], 4)
    return out


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, path)


def fit_network(model: nn.Module, samples: list[Sample], images: list[np.ndarray], val_images: list[np.ndarray],
                val_labels: np.ndarray, cfg: TrainConfig) -> list[dict]:
    """Train every layer (full fine-tune with BatchNorm statistics frozen, or from scratch)."""
    rng = np.random.default_rng(cfg.seed)
    base_weights = sampling_weights(samples, cfg)
    weights = base_weights
    labels = np.array([s.label for s in samples])
    backgrounds = none_images(samples, images)
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = max(1, len(samples) // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=cfg.epochs * steps_per_epoch,
        pct_start=min(0.3, 1.0 / max(cfg.epochs, 1)), anneal_strategy="cos")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    stopper = EarlyStopper(cfg.patience)
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        if epoch + 1 in cfg.mining_epochs:
            weights = mine_hard_examples(model, samples, images, labels, base_weights, cfg)
        model.train()
        if cfg.mode == "full":
            freeze_batchnorm(model)
        order = rng.choice(len(samples), size=steps_per_epoch * cfg.batch_size, replace=True, p=weights)
        running, seen = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress,
                   leave=False)
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x = augmented_batch([images[i] for i in idx], rng, cfg, backgrounds, labels[idx])
            y = torch.from_numpy(labels[idx])
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{running / seen:.4f}")
        val_logits = predict_logits(model, val_images, cfg.size, progress=cfg.progress)
        history.append(finish_epoch(model, optimizer, epoch, running / seen, val_logits, val_labels, cfg, stopper,
                                    history))
        if stopper.should_stop:
            print(f"early stop after epoch {epoch + 1}: no better val score for {cfg.patience} epochs", flush=True)
            break
    return history


def mine_hard_examples(model: nn.Module, samples: list[Sample], images: list[np.ndarray], labels: np.ndarray,
                       base_weights: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Score every training image with the current model; return sampling weights that favour its mistakes."""
    probs = softmax(predict_logits(model, images, cfg.size, progress=cfg.progress, desc="mining"))
    weights = mined_weights(base_weights, probs, labels, cfg.mining_boost)
    wrong = probs.argmax(axis=1) != labels
    none = LABELS.index("none")
    by_source: dict[str, int] = {}
    for s, miss in zip(samples, wrong):
        if miss:
            by_source[f"{LABELS[s.label]}/{s.origin}"] = by_source.get(f"{LABELS[s.label]}/{s.origin}", 0) + 1
    print(f"mining: {int(wrong.sum())} of {len(labels)} training images wrong "
          f"({int((wrong & (labels == none)).sum())} none called fire or smoke): "
          + ", ".join(f"{k} {v}" for k, v in sorted(by_source.items(), key=lambda kv: -kv[1])[:8]), flush=True)
    return weights


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the negative log-likelihood of softmax(logits / T) (Guo et al. 2017):
    label smoothing and class weighting leave probabilities too soft or too sharp; one scalar fixes that
    without changing any argmax."""
    x = torch.from_numpy(logits.astype(np.float64))
    y = torch.from_numpy(labels.astype(np.int64))

    def nll(t: float) -> float:
        return float(nn.functional.cross_entropy(x / t, y))

    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 161))
    best = min(grid, key=nll)
    step = grid[1] / grid[0]
    fine = np.exp(np.linspace(np.log(best / step), np.log(best * step), 41))
    return float(min(fine, key=nll))


def selection_score(metrics: dict) -> float:
    """What picks the best epoch: mean per-class recall, less the share of `none` called fire or smoke (a false
    alarm costs a site more than a point of accuracy)."""
    recalls = [v["recall"] for v in metrics["per_class"].values()]
    return float(np.mean(recalls)) - metrics["none_false_alarm_rate"]


def finish_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, train_loss: float,
                 val_logits: np.ndarray, val_labels: np.ndarray, cfg: TrainConfig, stopper: EarlyStopper,
                 history: list[dict]) -> dict:
    """Score the epoch on val, checkpoint it, print and record one history row."""
    val = metrics_from_logits(val_logits, val_labels)
    save_checkpoint(cfg.out / "last.pt", model, optimizer, epoch)
    improved = stopper.update(epoch, selection_score(val), val["loss"])
    if improved:
        save_checkpoint(cfg.out / "best.pt", model, optimizer, epoch)
    row = {"epoch": epoch + 1, "train_loss": round(train_loss, 5), "val_loss": round(val["loss"], 5),
           "val_accuracy": round(val["accuracy"], 5), "val_none_false_alarm": round(val["none_false_alarm_rate"], 5),
           "val_score": round(selection_score(val), 5)}
    print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
          f"val acc {row['val_accuracy']:.4f}  none->alarm {row['val_none_false_alarm']:.4f}"
          + ("  *" if improved else ""),
          flush=True)
    (cfg.out / "history.json").write_text(json.dumps(history + [row], indent=2))
    return row


def compute_head_features(model: nn.Module, images: list[np.ndarray], val_images: list[np.ndarray],
                          cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen-backbone features: one clean and head_views - 1 augmented views of each training image."""
    rng = np.random.default_rng(cfg.seed)
    bs = 64
    views = []
    for view in range(cfg.head_views):
        batches = (augmented_batch(images[i:i + bs], rng, cfg) if view else clean_batch(images[i:i + bs], cfg.size)
                   for i in range(0, len(images), bs))
        views.append(extract_features(model, batches, cfg.progress, f"features view {view + 1}/{cfg.head_views}",
                                      (len(images) + bs - 1) // bs))
    val_batches = (clean_batch(val_images[i:i + bs], cfg.size) for i in range(0, len(val_images), bs))
    val_feats = extract_features(model, val_batches, cfg.progress, "features val", (len(val_images) + bs - 1) // bs)
    return torch.cat(views), val_feats


def fit_head_on_cached_features(model: nn.Module, samples: list[Sample], images: list[np.ndarray],
                                val_images: list[np.ndarray], val_labels: np.ndarray, cfg: TrainConfig) -> list[dict]:
    """Train only the classifier on features of a frozen backbone, computed once for `head_views` augmented views."""
    if cfg.feature_cache is not None and cfg.feature_cache.is_file():
        feats, val_feats = torch.load(cfg.feature_cache, weights_only=True)
    else:
        feats, val_feats = compute_head_features(model, images, val_images, cfg)
        if cfg.feature_cache is not None:
            cfg.feature_cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save((feats, val_feats), cfg.feature_cache)
    labels = torch.from_numpy(np.tile([s.label for s in samples], cfg.head_views))
    weights = torch.from_numpy(np.tile(sampling_weights(samples, cfg), cfg.head_views))
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.classifier.parameters():
        p.requires_grad_(True)
    optimizer = make_optimizer(model, cfg)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    stopper = EarlyStopper(cfg.patience)
    history: list[dict] = []
    generator = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(cfg.epochs):
        order = torch.multinomial(weights, len(feats), replacement=True, generator=generator)
        running = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            loss = loss_fn(model.classifier(feats[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(idx)
        with torch.no_grad():
            val_logits = model.classifier(val_feats).numpy()
        history.append(finish_epoch(model, optimizer, epoch, running / len(order), val_logits, val_labels, cfg, stopper,
                                    history))
        if stopper.should_stop:
            break
    return history
