"""Model compression, measured: FP16 and INT8 ONNX, structured channel pruning, weight clustering.

- FP16: onnxconverter-common, inputs/outputs kept float32 (the runtimes feed float32).
- INT8: ONNX Runtime static quantization (QDQ, per-channel weights) calibrated on training images
  (ship.quantize_int8).
- Pruning: torch-pruning's dependency graph removes whole channels (L2 magnitude) from every conv
  but the classifier, keeping depthwise groups and residual adds consistent; then fine-tuning.
- Clustering: k-means per layer (16 or 32 centroids shared by all weights of a conv/linear) on the weights
  divided by their output channel's scale, so each weight is scale[channel] x centroid; then fine-tuning
  with the assignments fixed and the centroids updated as the mean of their weights after each step.
  Per-channel scales are needed because the pretrained weights have BatchNorm folded in: output channels
  of one layer differ in magnitude by orders, and one plain codebook per layer (as TF-MOT clusters) zeroes
  the small channels (49 % on 150 validation images at 32 clusters before fine-tuning, against 97 %). The file stays
  float32 (same size on disk); it pays when zipped (k distinct values per output channel).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from .data import Sample
from .models import freeze_batchnorm
from .train import FAST_FORMAT, TrainConfig, augmented_batch, none_images, sampling_weights


def zipped_size(path: Path) -> int:
    """Bytes of the file in a deflate (level 9) zip: what an OTA update or a download would move."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.write(path, arcname=Path(path).name)
    return len(buffer.getvalue())


def convert_fp16(fp32_path: Path, fp16_path: Path) -> Path:
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    onnx.save(model, str(fp16_path))
    return fp16_path


def fine_tune(model: nn.Module, samples: list[Sample], images: list[np.ndarray], cfg: TrainConfig, epochs: int,
              lr: float, after_step=None, desc: str = "fine-tune") -> nn.Module:
    """A short full fine-tune (BatchNorm statistics frozen) used after pruning or clustering."""
    rng = np.random.default_rng(cfg.seed)
    weights = sampling_weights(samples, cfg)
    labels = np.array([s.label for s in samples])
    backgrounds = none_images(samples, images)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=cfg.weight_decay)
    steps = max(1, len(samples) // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    model = model.to(memory_format=FAST_FORMAT)
    for epoch in range(epochs):
        model.train()
        freeze_batchnorm(model)
        order = rng.choice(len(samples), size=steps * cfg.batch_size, replace=True, p=weights)
        for step in tqdm(range(steps), desc=f"{desc} {epoch + 1}/{epochs}", disable=not cfg.progress, leave=False):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            loss = loss_fn(model(augmented_batch([images[i] for i in idx], rng, cfg, backgrounds)),
                           torch.from_numpy(labels[idx]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if after_step is not None:
                after_step()
    return model.eval()


# ---------------------------------------------------------------------------------------- pruning

def prune_channels(model: nn.Module, ratio: float, size: int = 224) -> nn.Module:
    """Remove `ratio` of the expanded channels inside every inverted-residual block, by L2 magnitude (and the
    channels of the last 1x1 conv before pooling). The residual stream (each block's projection output) and
    the stem keep all their channels: pruning them too, uniformly, left 40 % validation accuracy at a 25 %
    ratio before fine-tuning and did not recover in 3 epochs (67 %), while the expanded channels hold most
    of the multiply-adds and tolerate it."""
    import torch_pruning as tp

    model = model.eval().to(memory_format=torch.contiguous_format)
    example = torch.randn(1, 3, size, size)
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=ratio, ignored_layers=residual_stream_layers(model),
                                       round_to=8)
    pruner.step()
    return model


def residual_stream_layers(model: nn.Module) -> list[nn.Module]:
    """The classifier, the stem conv, and the projection (last) conv of every block with a `conv` body."""
    convs = lambda module: [m for m in module.modules() if isinstance(m, nn.Conv2d)]  # noqa: E731
    layers = [model.classifier, convs(model.features[0])[0]]
    for block in model.features:
        if hasattr(block, "conv"):
            layers.append(convs(block.conv)[-1])
    return layers


# ---------------------------------------------------------------------------------------- clustering

@dataclass
class ClusteredTensor:
    param: nn.Parameter
    assignment: torch.Tensor   # index of each weight's centroid
    centroids: torch.Tensor
    scale: torch.Tensor        # per output channel, shaped to broadcast over the weight


def channel_scale(weight: torch.Tensor) -> torch.Tensor:
    """Each output channel's largest |weight| (1 for an all-zero channel), shaped [out, 1, ...]."""
    flat = weight.detach().reshape(weight.shape[0], -1).abs().amax(dim=1)
    return torch.where(flat > 0, flat, torch.ones_like(flat)).view(-1, *([1] * (weight.dim() - 1)))


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on scalars, centroids initialised linearly over the range (as TF-MOT's 'linear')."""
    centroids = np.linspace(values.min(), values.max(), k)
    for _ in range(iterations):
        assignment = np.abs(values[:, None] - centroids[None, :]).argmin(axis=1)
        sums = np.bincount(assignment, weights=values, minlength=k)
        counts = np.bincount(assignment, minlength=k)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(moved, centroids):
            break
        centroids = moved
    assignment = np.abs(values[:, None] - centroids[None, :]).argmin(axis=1)
    return centroids, assignment


def cluster_weights(model: nn.Module, k: int, min_size: int = 1024) -> list[ClusteredTensor]:
    """Replace the weights of every conv/linear layer with >= min_size weights by k shared values."""
    clustered = []
    for module in model.modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or module.weight.numel() < min_size:
            continue
        scale = channel_scale(module.weight)
        values = (module.weight.detach() / scale).cpu().numpy().ravel().astype(np.float64)
        centroids, assignment = kmeans_1d(values, k)
        c = torch.tensor(centroids, dtype=torch.float32)
        a = torch.tensor(assignment, dtype=torch.long)
        with torch.no_grad():
            module.weight.copy_(scale * c[a].view_as(module.weight))
        clustered.append(ClusteredTensor(module.weight, a, c, scale))
    return clustered


def resnap_clusters(clustered: list[ClusteredTensor]) -> None:
    """After an optimiser step: each centroid becomes the mean of its weights, and every weight its centroid."""
    with torch.no_grad():
        for ct in clustered:
            flat = (ct.param.detach() / ct.scale).reshape(-1)
            k = ct.centroids.numel()
            sums = torch.zeros(k).index_add_(0, ct.assignment, flat)
            counts = torch.bincount(ct.assignment, minlength=k).clamp(min=1).float()
            ct.centroids = sums / counts
            ct.param.copy_(ct.scale * ct.centroids[ct.assignment].view_as(ct.param))


def distinct_values_per_channel(model: nn.Module) -> int:
    """The largest number of distinct weight values in any output channel of a clustered layer (checks that
    the clustering held through fine-tuning)."""
    most = 0
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight.numel() >= 1024:
            for channel in module.weight.detach().reshape(module.weight.shape[0], -1):
                most = max(most, int(torch.unique(channel).numel()))
    return most
