"""firedetd/region.py: a class activation map read as a peak position and a half-peak region (normalised)."""

import numpy as np
import pytest

from firedetd.region import half_peak_region, peak_position


def test_peak_of_one_hot_cell_is_that_cell_centre():
    cam = np.full((7, 7), -3.0, np.float32)
    cam[5, 1] = 2.0
    x, y = peak_position(cam)
    assert x == pytest.approx(1.5 / 7, abs=1.0 / 224) and y == pytest.approx(5.5 / 7, abs=1.0 / 224)


def test_peak_between_two_equal_cells_falls_between_them_after_upsampling():
    cam = np.zeros((7, 7), np.float32)
    cam[3, 2] = cam[3, 4] = 1.0
    cam[3, 3] = 0.9
    x, y = peak_position(cam)
    assert 2.5 / 7 - 1.0 / 224 <= x <= 4.5 / 7 + 1.0 / 224 and y == pytest.approx(3.5 / 7, abs=1.0 / 224)


def test_region_covers_the_cells_above_half_way_from_minimum_to_peak_even_when_all_negative():
    cam = np.full((7, 7), -10.0, np.float32)
    cam[1:3, 4:7] = -4.0   # above -10 + 0.5 * 6 = -7
    cam[2, 5] = -4.0
    cam[6, 0] = -7.5       # below the half-way mark: left out
    x, y, w, h = half_peak_region(cam)
    assert (x, y, w, h) == pytest.approx((4 / 7, 1 / 7, 3 / 7, 2 / 7))


def test_flat_map_gives_the_whole_image():
    assert half_peak_region(np.zeros((7, 7), np.float32)) == (0.0, 0.0, 1.0, 1.0)
