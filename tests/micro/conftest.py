"""firedetd-micro tests: the shipped engines/micro model in the real TFLM interpreter and in LiteRT.

The micro extra (tflite-micro, ai-edge-litert) is installed on Python 3.10+ only (pyproject.toml); on older
Pythons (the Nano's 3.6) these tests skip with that reason. On 3.10+ a missing package is an error, not a skip.
"""

import os
import sys

import pytest

OLD_PYTHON_REASON = ("the micro extra (tflite-micro, ai-edge-litert) is installed on Python 3.10+ only; "
                     "on the Nano's Python 3.6 and anything up to Python 3.8/3.9 these tests skip")
HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    if sys.version_info >= (3, 10):
        return
    for item in items:
        if str(item.fspath).startswith(HERE):
            item.add_marker(pytest.mark.skip(reason=OLD_PYTHON_REASON))


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE_VIDEO = os.path.join(REPO, "samples", "furg_house6.mp4")


@pytest.fixture(scope="session")
def micro_spec():
    from firedetd.micro import load_micro_spec

    return load_micro_spec()


@pytest.fixture(scope="session")
def video_frames():
    """Every 25th frame of the bundled real fire video (CC0), RGB: real camera pictures that ship with the repo."""
    import cv2

    capture = cv2.VideoCapture(SAMPLE_VIDEO)
    frames, index = [], 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        if index % 25 == 0:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        index += 1
    capture.release()
    assert len(frames) >= 10, "samples/furg_house6.mp4 gave too few frames"
    return frames
