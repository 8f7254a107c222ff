"""Training tests run in their own pytest process in scripts/test.sh.

PyGObject (GStreamer) initialised after numpy, then torch.onnx.export in the same process, aborts
inside torch (`pybind11::stop_iteration` escapes as std::terminate; seen with PyGObject 3.48 and
torch 2.13). The daemon never imports torch, so only a test session that mixes both is affected:
`needs_clean_torch` skips such tests there, with the reason, instead of aborting the whole run.
"""

import sys

import pytest


@pytest.fixture
def clean_torch_process():
    if "gi" in sys.modules:
        pytest.skip("GStreamer's PyGObject is loaded in this process; torch.onnx.export aborts next to it "
                    "(run tests/training in its own pytest process, as scripts/test.sh does)")
