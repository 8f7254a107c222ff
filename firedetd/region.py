"""Where the alarm is: a class activation map (the model's optional `cam` output, modelspec.MapSpec) read as a
position and a region of the image, in coordinates normalised to the model input (0..1, x right, y down).

The daemon stretches each frame to the model input, so normalised model-input coordinates are normalised frame
coordinates too.
"""

from typing import Tuple

import cv2
import numpy as np


def upsample(class_map: np.ndarray, size: int = 224) -> np.ndarray:
    """A (h, w) map resized to (size, size), bilinear with cell centres at cell centres (cv2's half-pixel rule)."""
    return cv2.resize(np.asarray(class_map, dtype=np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


def peak_position(class_map: np.ndarray, size: int = 224) -> Tuple[float, float]:
    """(x, y) of the map's maximum after upsampling to size x size: where the class is most evident."""
    fine = upsample(class_map, size)
    row, col = np.unravel_index(int(np.argmax(fine)), fine.shape)
    return (col + 0.5) / size, (row + 0.5) / size


def half_peak_region(class_map: np.ndarray) -> Tuple[float, float, float, float]:
    """(x, y, w, h) of the cells at or above half the way from the map's minimum to its peak.

    Relative to the minimum because the map is in logit units: a cell can be negative, so "half the peak" of the raw
    values means nothing when the peak is small or below zero. A flat map gives the whole image."""
    class_map = np.asarray(class_map, dtype=np.float32)
    low, high = float(class_map.min()), float(class_map.max())
    if not high > low:
        return 0.0, 0.0, 1.0, 1.0
    rows, cols = np.nonzero(class_map >= low + 0.5 * (high - low))
    height, width = class_map.shape
    x0, x1 = cols.min() / float(width), (cols.max() + 1) / float(width)
    y0, y1 = rows.min() / float(height), (rows.max() + 1) / float(height)
    return x0, y0, x1 - x0, y1 - y0


def in_frame(region: Tuple[float, float, float, float], crop=None) -> Tuple[float, float, float, float]:
    """A region in shares of the model's view as shares of the whole frame, when the view is a crop
    (cameras[].crop: x, y, width, height as shares of the frame)."""
    if crop is None:
        return region
    x, y, w, h = region
    return crop.x + x * crop.width, crop.y + y * crop.height, w * crop.width, h * crop.height
