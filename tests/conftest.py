"""Shared fixtures: where ../shared and the shipped model are, and small builders for config objects."""

import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
SPEC_PATH = os.path.join(REPO, "engines", "firedetd.json")
sys.path.insert(0, os.path.join(REPO, "tests"))

# FIREDETD_STRICT_SKIPS=1 (CI, or scripts/test.sh once every system package is there): a test that skips for a
# missing package or file fails instead, so a green run means every test that can run here ran. Only what this
# kind of machine can never have is allowed to skip: TensorRT and a GPU, torch and the training extras on
# Python 3.6, tools without a 3.6 wheel, privileges a developer may lack.
STRICT_SKIPS = os.environ.get("FIREDETD_STRICT_SKIPS") == "1"
ALLOWED_SKIP = re.compile(
    r"TensorRT|tensorrt|CUDA|GPU|Jetson|torch|Python 3\.8|3\.11 venv|train extra|federated extra|\bonnx\b|"
    r"onnxconverter_common|torch_pruning|matplotlib|Flower|hadolint|development Python|systemd < 252|"
    r"in use on this machine|tmpfs|PyGObject is loaded in this process", re.IGNORECASE)


def _skip_reason(report):
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail_if_not_allowed(report):
    if STRICT_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not ALLOWED_SKIP.search(reason):
            report.outcome = "failed"
            report.longrepr = "skipped, but FIREDETD_STRICT_SKIPS=1 wants it run: %s" % reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_if_not_allowed(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_if_not_allowed(outcome.get_result())


@pytest.fixture
def shared_dir():
    if not os.path.isdir(os.path.join(SHARED, "data")):
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto on 127.0.0.1 for this test (tests/support/mqtt_broker.py); skips, with the reason, where
    mosquitto or paho-mqtt is missing."""
    from support.mqtt_broker import MOSQUITTO, SKIP_REASON, MosquittoBroker

    if MOSQUITTO is None:
        pytest.skip(SKIP_REASON)
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed (the mqtt extra)")
    server = MosquittoBroker(tmp_path / "broker").start()
    yield server
    server.stop()


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

