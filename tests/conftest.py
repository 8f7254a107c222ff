"""Shared fixtures: where ../shared and the shipped model are, and small builders for config objects."""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
SPEC_PATH = os.path.join(REPO, "engines", "firedetd.json")
sys.path.insert(0, os.path.join(REPO, "tests"))


@pytest.fixture
def shared_dir():
    if not os.path.isdir(os.path.join(SHARED, "data")):
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED


@pytest.fixture
def spec():
    from firedetd.modelspec import load_spec

    return load_spec(SPEC_PATH)


@pytest.fixture
def make_config(tmp_path):
    """Build a validated Config from a mapping, with the state dir in tmp_path."""
    from firedetd.config import build_config

    def make(raw=None, environ=None):
        raw = dict(raw or {})
        raw.setdefault("state_dir", str(tmp_path / "state"))
        return build_config(raw, environ or {})

    return make

