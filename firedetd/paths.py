"""Where the shipped model and the bundled sample video live: beside the package in a checkout or an
editable install, under <prefix>/share/firedetd in a wheel install."""

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _first_existing(relative):
    candidates = [
        os.path.join(os.path.dirname(_PACKAGE_DIR), relative),
        os.path.join(sys.prefix, "share", "firedetd", relative),
        os.path.join("/usr/share/firedetd", relative),
    ]
    for path in candidates:
        if os.path.exists(path):
            return path
    return candidates[0]


def engines_dir():
    return _first_existing("engines")


def default_spec_path():
    return os.path.join(engines_dir(), "firedetd.json")


def sample_video_path():
    return os.path.join(_first_existing("samples"), "furg_house6.mp4")
