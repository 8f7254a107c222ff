"""The fire/smoke/none image folders: discovery, validation, class counts, decoding into memory.

Layout: ROOT/{train,val,test}/{fire,smoke,none}/*.jpg (see ../shared/data/fire-smoke/SOURCE.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import EXIT_USAGE, FiredetdError

LABELS = ("fire", "smoke", "none")
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class DatasetError(FiredetdError):
    """The dataset folder is missing, incomplete or unreadable; the message names the path (exit status 2)."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int

    @property
    def origin(self) -> str:
        """The file-name prefix that records the image's source (dq, sj, sun, web, dawn, afm...)."""
        return self.path.name.split("_", 1)[0]


def list_split(root: Path, split: str, labels: tuple[str, ...] = LABELS) -> list[Sample]:
    """List a split's images, in sorted order; raise DatasetError naming any missing or empty folder."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        expected = f"{root}/{{{','.join(SPLITS)}}}/{{{','.join(labels)}}}"
        raise DatasetError(f"{split_dir}: split folder not found (expected {expected})")
    samples: list[Sample] = []
    for index, label in enumerate(labels):
        class_dir = split_dir / label
        if not class_dir.is_dir():
            raise DatasetError(f"{class_dir}: class folder not found")
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"{class_dir}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        samples.extend(Sample(p, index) for p in files)
    return samples


def class_counts(samples: list[Sample], labels: tuple[str, ...] = LABELS) -> dict[str, int]:
    counts = {label: 0 for label in labels}
    for s in samples:
        counts[labels[s.label]] += 1
    return counts


def format_counts(split: str, samples: list[Sample], labels: tuple[str, ...] = LABELS) -> str:
    counts = class_counts(samples, labels)
    return f"{split:5s} " + "  ".join(f"{k} {v:4d}" for k, v in counts.items()) + f"  total {len(samples)}"


def read_rgb(path: Path, max_side: int = 0) -> np.ndarray:
    """Decode an image file to an RGB uint8 array; optionally shrink so the shorter side is <= max_side."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    if max_side:
        h, w = image.shape[:2]
        short = min(h, w)
        if short > max_side:
            f = max_side / short
            image = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_images(samples: list[Sample], max_side: int = 320, progress: bool = True) -> list[np.ndarray]:
    """Decode every sample into memory (the whole set is ~0.6 GB decoded, which saves a decode per epoch)."""
    from tqdm import tqdm

    bar = tqdm(samples, desc="decode", unit="img", disable=not progress, leave=False)
    return [read_rgb(s.path, max_side) for s in bar]


def manifest_sha256(root: Path) -> str:
    """sha256 of the dataset's MANIFEST.sha256 if present, else of the sorted per-file hashes (slow)."""
    manifest = Path(root) / "MANIFEST.sha256"
    if manifest.is_file():
        return hashlib.sha256(manifest.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for split in SPLITS:
        for s in list_split(root, split):
            digest.update(hashlib.sha256(s.path.read_bytes()).hexdigest().encode())
    return digest.hexdigest()
