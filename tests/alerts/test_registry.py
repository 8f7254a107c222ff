"""firedetd/alerts/__init__.py: the Sink interface and the SINKS registry that builds sinks from the config."""

import sys
import types

import pytest

from firedetd import alerts, cli
from firedetd.alerts import SINKS, Sink, SinkKind, configured_sinks, create_sinks
from firedetd.alerts.mqtt import MqttSink
from firedetd.alerts.webhook import WebhookSink
from firedetd.config import AlertsConfig
from firedetd.errors import SinkError

TWO_HOOKS_AND_MQTT = {"alerts": {"webhooks": [{"url": "http://127.0.0.1:9/a", "name": "first"},
                                              {"url": "http://127.0.0.1:9/b", "name": "second"}],
                                 "mqtt": {"host": "127.0.0.1", "port": 9}}}


@pytest.fixture
def built_sinks():
    sinks = []

    def build(config, environ=None):
        sinks.extend(create_sinks(config, environ or {}))
        return list(sinks)

    yield build
    for sink in sinks:
        sink.close()


def test_create_sinks_builds_one_sink_per_configured_entry_in_registry_order(make_config, built_sinks):
    sinks = built_sinks(make_config(TWO_HOOKS_AND_MQTT))
    assert [(type(s), s.name) for s in sinks] == [(WebhookSink, "first"), (WebhookSink, "second"), (MqttSink, "mqtt")]


def test_no_sink_is_built_when_none_is_configured(make_config, built_sinks):
    assert built_sinks(make_config({})) == []


def test_every_registered_kind_is_set_up_by_a_key_of_the_alerts_section():
    keys = set(AlertsConfig.__dataclass_fields__)
    assert all(kind.config_key in keys for kind in SINKS.values())


def test_a_kind_added_to_the_registry_is_built_without_touching_create_sinks(make_config, built_sinks, monkeypatch):
    # FAKE: a notification sink module, set up here by the webhooks block for want of a config key of its own
    module = types.ModuleType("fake_notify_sink")

    class NotifySink(Sink):
        name = "notify"

        def deliver(self, event):
            pass

    module.sinks_from_config = lambda config, environ: [NotifySink()]
    monkeypatch.setitem(sys.modules, "fake_notify_sink", module)
    monkeypatch.setitem(SINKS, "notify", SinkKind("webhooks", "fake_notify_sink:sinks_from_config"))

    sinks = built_sinks(make_config({"alerts": {"webhooks": [{"url": "http://127.0.0.1:9/a", "name": "a"}]}}))
    assert [s.name for s in sinks] == ["a", "notify"]


def test_configured_sinks_counts_each_kind_and_leaves_out_those_not_set_up(make_config):
    assert configured_sinks(make_config(TWO_HOOKS_AND_MQTT)) == [("webhook", 2), ("mqtt", 1)]
    assert configured_sinks(make_config({"alerts": {"mqtt": {"host": "broker"}}})) == [("mqtt", 1)]
    assert configured_sinks(make_config({})) == []


def test_check_config_lists_the_configured_sinks_by_kind(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("alerts:\n  webhooks:\n    - url: http://127.0.0.1:9/a\n      name: a\n"
                    "    - url: http://127.0.0.1:9/b\n      name: b\n  mqtt:\n    host: 127.0.0.1\n    port: 9\n")
    assert cli.main(["check-config", "-c", str(path), "--state-dir", str(tmp_path / "state")]) == 0
    assert "sinks: 2 webhook, 1 mqtt" in capsys.readouterr().out


def test_a_sink_that_keeps_no_live_state_takes_publish_status_as_a_no_op():
    class EventsOnly(Sink):
        def deliver(self, event):
            pass

    assert EventsOnly().publish_status({"cam": {"fire": True, "smoke": False, "fps": 10.0, "problem": None}}) is None
    assert EventsOnly().problem() is None


def test_sink_error_carries_its_reason_and_retry_after_from_construction():
    error = SinkError("hook: HTTP 429", True, "http_429", retry_after_s=30.0)
    assert (error.retryable, error.reason, error.retry_after_s, str(error)) == (True, "http_429", 30.0,
                                                                                 "hook: HTTP 429")
    plain = SinkError("hook: failed")
    assert (plain.retryable, plain.reason, plain.retry_after_s) == (True, None, None)


def test_no_sink_module_imports_another_sink_module():
    # each sink depends on the interface and payload.py only: mqtt.py used to import its payload from webhook.py
    import ast
    import os

    directory = os.path.dirname(alerts.__file__)
    sink_modules = {target.split(":")[0].rsplit(".", 1)[1] for target in (k.factory for k in SINKS.values())}
    for name in sink_modules:
        with open(os.path.join(directory, name + ".py")) as f:
            tree = ast.parse(f.read())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & (sink_modules - {name}), name
