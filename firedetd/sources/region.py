"""What part of a camera's picture the model looks at: a crop, masks painted over, tiles (cameras[] keys).

The source delivers the frame scaled so that the cropped region comes out at exactly the size the views need
(`capture_size`): the model's input size, times the tile grid. Here, in the capture thread, the region is
cut out (a slice, no copy), masks are painted in the region's mean colour (what a network reads as "nothing
here", unlike black or grey, which look like night or smoke), and the whole view and the tiles are made.
Nothing is done, and nothing copied, for a camera without crop, masks or tiles.
"""

from typing import List, NamedTuple, Optional, Tuple

import numpy as np


class Views(NamedTuple):
    raw: np.ndarray                  # the whole watched region at model size, masks not painted (for the gate)
    image: np.ndarray                # the same with masks painted: what the model decides
    tiles: Optional[np.ndarray]      # (N*N, H, W, 3) tiles of the painted region, or None


def capture_size(model_width: int, model_height: int, crop, tiles: int) -> Tuple[int, int]:
    """The frame size to ask of the source so that the crop comes out at tiles x the model size (even numbers:
    some converters want them)."""
    share_w = crop.width if crop is not None else 1.0
    share_h = crop.height if crop is not None else 1.0
    width = int(round(model_width * tiles / share_w / 2.0)) * 2
    height = int(round(model_height * tiles / share_h / 2.0)) * 2
    return max(2, width), max(2, height)


def crop_box(width: int, height: int, crop) -> Tuple[int, int, int, int]:
    """(left, top, right, bottom) pixels of the normalised crop in a width x height frame."""
    if crop is None:
        return 0, 0, width, height
    left = int(round(crop.x * width))
    top = int(round(crop.y * height))
    return left, top, min(width, left + int(round(crop.width * width))), min(height,
                                                                              top + int(round(crop.height * height)))


def mask_polygons(masks, crop, width: int, height: int) -> List[np.ndarray]:
    """The masks' corners (shares of the full frame) in pixels of the cropped region width x height."""
    x0, y0 = (crop.x, crop.y) if crop is not None else (0.0, 0.0)
    sw, sh = (crop.width, crop.height) if crop is not None else (1.0, 1.0)
    polygons = []
    for mask in masks:
        points = [((x - x0) / sw * width, (y - y0) / sh * height) for x, y in mask.polygon]
        polygons.append(np.round(np.array(points, dtype=np.float64)).astype(np.int32))
    return polygons


class WatchedRegion(object):
    """One camera's crop, masks and tiles, applied to each frame the source delivers at `capture_size`."""

    def __init__(self, camera, model_width: int, model_height: int):
        self.crop = camera.crop if camera.crop is not None and not camera.crop.is_whole_frame else None
        self.tiles = camera.tiles
        self.masks = camera.masks
        self.model_size = (model_width, model_height)
        self.size = capture_size(model_width, model_height, self.crop, self.tiles)
        self.box = crop_box(self.size[0], self.size[1], self.crop)
        region_w, region_h = self.box[2] - self.box[0], self.box[3] - self.box[1]
        self.polygons = mask_polygons(self.masks, self.crop, region_w, region_h)

    @property
    def is_whole_frame(self) -> bool:
        """True when the source's frame is the model's input as it is (no crop, no tiles, no masks)."""
        return self.crop is None and self.tiles == 1 and not self.masks

    def views(self, frame: np.ndarray) -> Views:
        """The model's views of one frame of `capture_size`."""
        if self.is_whole_frame:
            return Views(frame, frame, None)
        left, top, right, bottom = self.box
        region = frame[top:bottom, left:right]
        painted = self.paint(region) if self.polygons else region
        raw = self._scaled(region)
        image = raw if painted is region else self._scaled(painted)
        return Views(raw, image, self._tiles(painted) if self.tiles > 1 else None)

    def paint(self, region: np.ndarray) -> np.ndarray:
        """A copy of `region` with every mask filled with the mean colour of what is left unmasked."""
        import cv2

        hidden = np.zeros(region.shape[:2], np.uint8)
        cv2.fillPoly(hidden, self.polygons, 255)
        visible = cv2.bitwise_not(hidden)
        mean = cv2.mean(region, mask=visible)[:3] if cv2.countNonZero(visible) else (128.0, 128.0, 128.0)
        out = region.copy()
        out[hidden > 0] = np.round(mean).astype(np.uint8)
        return out

    def _scaled(self, region: np.ndarray) -> np.ndarray:
        import cv2

        width, height = self.model_size
        if region.shape[1] == width and region.shape[0] == height:
            return region
        return cv2.resize(region, (width, height), interpolation=cv2.INTER_AREA)

    def _tiles(self, region: np.ndarray) -> np.ndarray:
        import cv2

        width, height = self.model_size
        n = self.tiles
        if region.shape[:2] != (height * n, width * n):   # a rounding pixel off: bring it to the exact grid
            region = cv2.resize(region, (width * n, height * n), interpolation=cv2.INTER_AREA)
        grid = region.reshape(n, height, n, width, 3).swapaxes(1, 2)
        return np.ascontiguousarray(grid.reshape(n * n, height, width, 3))
