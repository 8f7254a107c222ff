"""Crop and snapshot size arithmetic."""

from firedetd.sources.sizing import center_crop_box, fps_fraction, snapshot_height


def test_center_crop_of_a_wide_source_cuts_the_sides():
    assert center_crop_box(1280, 720, 224, 224) == (280, 0, 720, 720)


def test_center_crop_of_a_tall_source_cuts_top_and_bottom():
    assert center_crop_box(480, 640, 320, 240) == (0, 140, 480, 360)


def test_center_crop_of_the_same_aspect_keeps_everything():
    assert center_crop_box(640, 480, 320, 240) == (0, 0, 640, 480)


def test_snapshot_height_keeps_the_display_aspect():
    assert snapshot_height(1920, 1080, 640) == 360
    assert snapshot_height(720, 576, 640, pixel_aspect=(16, 15)) == 480   # PAL 4:3 with non-square pixels


def test_fps_fraction():
    assert fps_fraction(30.0) == (30, 1)
    assert fps_fraction(12.5) == (25, 2)
    assert fps_fraction(0.5) == (1, 2)
