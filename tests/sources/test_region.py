"""firedetd/sources/region.py: crop, masks and tiles on real frames of the bundled video."""

import os

import cv2
import numpy as np
from support.daemon import REPO

from firedetd.config import CameraConfig, CropConfig, MaskConfig, SourceConfig
from firedetd.sources.region import WatchedRegion, capture_size


def camera(**kw):
    return CameraConfig(name="c", source=SourceConfig(uri="test://"), **kw)


def first_frame(width, height):
    cap = cv2.VideoCapture(os.path.join(REPO, "samples", "furg_house6.mp4"))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    return cv2.cvtColor(cv2.resize(bgr, (width, height)), cv2.COLOR_BGR2RGB)


def test_a_camera_without_crop_masks_or_tiles_passes_its_frame_through_uncopied():
    region = WatchedRegion(camera(), 224, 224)
    frame = first_frame(224, 224)
    views = region.views(frame)
    assert region.size == (224, 224) and views.image is frame and views.raw is frame and views.tiles is None


def test_a_crop_asks_the_source_for_more_pixels_and_decides_only_the_region():
    crop = CropConfig(x=0.5, y=0.0, width=0.5, height=0.5)
    region = WatchedRegion(camera(crop=crop), 224, 224)
    assert region.size == capture_size(224, 224, crop, 1) == (448, 448)
    frame = first_frame(448, 448)
    views = region.views(frame)
    assert views.image.shape == (224, 224, 3)
    assert np.array_equal(views.image, frame[:224, 224:])   # exactly the top right quarter, no resampling


def test_tiles_split_the_region_into_a_grid_decided_beside_the_whole_view():
    region = WatchedRegion(camera(tiles=2), 224, 224)
    frame = first_frame(*region.size)
    views = region.views(frame)
    assert views.tiles.shape == (4, 224, 224, 3) and views.image.shape == (224, 224, 3)
    assert np.array_equal(views.tiles[1], frame[:224, 224:]) and np.array_equal(views.tiles[2], frame[224:, :224])


def test_a_mask_is_painted_in_the_mean_colour_of_the_rest_and_the_raw_view_keeps_it():
    mask = MaskConfig(polygon=((0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)), name="stove")
    region = WatchedRegion(camera(masks=(mask,)), 224, 224)
    frame = first_frame(224, 224)
    views = region.views(frame)
    hidden = views.image[:100, :100].reshape(-1, 3)
    assert (hidden == hidden[0]).all()                      # one flat colour where the mask is
    visible = np.ones((224, 224), bool)
    visible[:113, :113] = False
    assert np.abs(hidden[0].astype(float) - frame[visible].mean(axis=0)).max() <= 1.0
    assert np.array_equal(views.image[120:, 120:], frame[120:, 120:])   # the rest untouched
    assert np.array_equal(views.raw, frame) and not np.array_equal(views.image, frame)


def test_mask_corners_are_shares_of_the_full_frame_even_with_a_crop():
    crop = CropConfig(x=0.5, y=0.5, width=0.5, height=0.5)
    # a mask over the bottom right quarter of the frame is the whole of this crop
    mask = MaskConfig(polygon=((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)))
    region = WatchedRegion(camera(crop=crop, masks=(mask,)), 224, 224)
    views = region.views(first_frame(*region.size))
    assert (views.image.reshape(-1, 3) == views.image[0, 0]).all()
