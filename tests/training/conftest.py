"""Training tests run in their own pytest process in scripts/test.sh.

PyGObject (GStreamer) initialised after numpy, then torch.onnx.export in the same process, aborts
inside torch (`pybind11::stop_iteration` escapes as std::terminate; seen with PyGObject 3.48 and
torch 2.13). The daemon never imports torch, so only a test session that mixes both is affected:
`needs_clean_torch` skips such tests there, with the reason, instead of aborting the whole run.
"""

import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"


@pytest.fixture
def clean_torch_process():
    if "gi" in sys.modules:
        pytest.skip("GStreamer's PyGObject is loaded in this process; torch.onnx.export aborts next to it "
                    "(run tests/training in its own pytest process, as scripts/test.sh does)")


@pytest.fixture(scope="module")
def real_images():
    """Four validation images of each class, as the daemon would see them (RGB, 224x224)."""
    from firedetd.training.export import sample_images

    data = SHARED / "data" / "fire-smoke"
    if not data.is_dir() or not (SHARED / "weights").is_dir():
        pytest.skip("../shared/data and ../shared/weights are not beside this checkout")
    images, _ = sample_images(data, "val", per_class=4)
    return images
