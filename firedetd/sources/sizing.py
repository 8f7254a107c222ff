"""Frame size arithmetic shared by the backends: the centre crop for `resize: center_crop`, snapshot sizes."""

from fractions import Fraction
from typing import Tuple


def center_crop_box(src_width: int, src_height: int, dst_width: int, dst_height: int) -> Tuple[int, int, int, int]:
    """(left, top, width, height) of the largest centred region of the source with the target's aspect."""
    if src_width * dst_height > dst_width * src_height:      # source wider than the target: cut the sides
        width = max(1, int(round(src_height * dst_width / float(dst_height))))
        return (src_width - width) // 2, 0, width, src_height
    height = max(1, int(round(src_width * dst_height / float(dst_width))))
    return 0, (src_height - height) // 2, src_width, height


def snapshot_height(src_width: int, src_height: int, snapshot_width: int,
                    pixel_aspect: Tuple[int, int] = (1, 1)) -> int:
    """Height of a square-pixel snapshot `snapshot_width` wide that keeps the source's display aspect."""
    display_width = src_width * pixel_aspect[0] / float(pixel_aspect[1])
    return max(1, int(round(snapshot_width * src_height / display_width)))


def fps_fraction(fps: float) -> Tuple[int, int]:
    """30.0 -> (30, 1); 29.97 -> (2997, 100): a GStreamer framerate from the config's float."""
    fraction = Fraction(fps).limit_denominator(1001)
    return fraction.numerator, fraction.denominator
