"""firedetd/alerts/notify.py: real Apprise (json://) posting to the real AlertReceiver over HTTP on 127.0.0.1."""

import base64
import logging
import time
from dataclasses import replace

import pytest

from firedetd import cli
from firedetd.alerts import create_sinks
from firedetd.alerts.delivery import DeliveryThread
from firedetd.alerts.notify import NotifyConfig, NotifySink
from firedetd.config import OutboxConfig
from firedetd.errors import ConfigError, SinkError
from firedetd.receiver import AlertReceiver
from firedetd.types import CLEARED, ESCALATED, ONGOING, RAISED


class FakeClock:
    """The sink's monotonic clock, moved by the test (the rate limit is about minutes)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def plain_receiver():
    # Apprise's json:// posts unsigned JSON: a receiver without a signing secret
    server = AlertReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def notify_sink():
    sinks = []

    def build(url, clock=None, **options):
        sinks.append(NotifySink("phone", NotifyConfig(url=url, **options), url, "device-1",
                                clock=clock or time.monotonic))
        return sinks[-1]

    yield build
    for sink in sinks:
        sink.close()


def json_url(receiver):
    return "json://127.0.0.1:%d/alerts" % receiver.port


def event_of(outbox, alert):
    outbox.enqueue(alert, ["phone"])
    return outbox.next_pending("phone", 2**62)


def deliver_and_mark(sink, outbox, alert):
    event = event_of(outbox, alert)
    sink.deliver(event)
    outbox.mark_delivered("phone", event["row_id"])


def test_a_raised_event_arrives_with_its_title_body_and_snapshot_attached(plain_receiver, notify_sink, outbox,
                                                                          make_alert):
    sink = notify_sink(json_url(plain_receiver), title="{kind} at {camera}", body="{state} {score:.2f} on {device}")
    alert = make_alert(1, state=RAISED, camera="kitchen")
    sink.deliver(event_of(outbox, alert))

    assert plain_receiver.wait_for(1)
    body = plain_receiver.alerts[0].body
    assert body["title"] == "fire at kitchen"
    assert body["message"] == "raised %.2f on device-1" % alert.score
    assert body["type"] == "failure"
    [attachment] = body["attachments"]
    assert attachment["mimetype"] == "image/jpeg"
    assert attachment["filename"] == "kitchen-%s.jpg" % alert.id
    assert base64.b64decode(attachment["base64"]) == alert.snapshot_jpeg


def test_no_attachment_is_sent_when_attach_snapshot_is_off(plain_receiver, notify_sink, outbox, make_alert):
    notify_sink(json_url(plain_receiver), attach_snapshot=False).deliver(event_of(outbox, make_alert(1)))
    assert plain_receiver.wait_for(1)
    assert not plain_receiver.alerts[0].body.get("attachments")


def test_one_incident_notifies_at_most_once_per_interval_but_escalation_and_clear_always_go(
        plain_receiver, notify_sink, outbox, make_alert):
    clock = FakeClock()
    sink = notify_sink(json_url(plain_receiver), clock=clock, min_interval_s=300, title="{state}")
    steps = [(0, RAISED, True), (60, ONGOING, False), (120, ONGOING, False), (150, ESCALATED, True),
             (200, ONGOING, False), (460, ONGOING, True), (470, ONGOING, False), (480, CLEARED, True)]
    start = clock.now
    for n, (at_s, state, _) in enumerate(steps):
        clock.now = start + at_s
        alert = make_alert(1, state=state, snapshot_size=0)
        # one incident: make_alert(1) keeps the id; ongoing events differ by event time
        alert = replace(alert, event_ns=alert.event_ns + n * 10**9)
        deliver_and_mark(sink, outbox, alert)

    expected = [state for _, state, sent in steps if sent]
    assert plain_receiver.wait_for(len(expected))
    time.sleep(0.2)   # nothing else is on its way
    assert [a.body["title"] for a in plain_receiver.alerts] == expected
    assert sink.suppressed == len(steps) - len(expected)


def test_the_rate_limit_is_per_incident(plain_receiver, notify_sink, outbox, make_alert):
    clock = FakeClock()
    sink = notify_sink(json_url(plain_receiver), clock=clock, min_interval_s=300, title="{alert_id} {state}")
    deliver_and_mark(sink, outbox, make_alert(1, state=RAISED))
    deliver_and_mark(sink, outbox, make_alert(2, state=ONGOING))   # another camera's incident: not limited
    assert plain_receiver.wait_for(2)
    assert [a.body["title"] for a in plain_receiver.alerts] == ["alert-0001 raised", "alert-0002 ongoing"]


def test_a_failed_notification_raises_a_sink_error_without_the_urls_credentials(notify_sink, outbox, make_alert,
                                                                                free_port, caplog):
    url = "json://firedetd:hunter2-token@127.0.0.1:%d/alerts" % free_port()
    sink = notify_sink(url)
    with caplog.at_level(logging.INFO), pytest.raises(SinkError) as raised:
        sink.deliver(event_of(outbox, make_alert(1)))

    assert raised.value.reason == "connection" and raised.value.retryable
    assert "Connection error" in str(raised.value)
    assert "hunter2-token" not in str(raised.value) and "hunter2-token" not in repr(sink)
    # Apprise's own warning goes into the error, not once more into the daemon's log on every retry
    assert not [r for r in caplog.records if r.name == "apprise" and r.levelno >= logging.WARNING]


def test_a_refusing_service_is_a_sink_error_with_its_status(plain_receiver, notify_sink, outbox, make_alert):
    plain_receiver.fail_next(1, status=503)
    with pytest.raises(SinkError) as raised:
        notify_sink(json_url(plain_receiver)).deliver(event_of(outbox, make_alert(1)))
    assert raised.value.reason == "http_5xx" and raised.value.retryable


def test_a_down_service_is_retried_by_the_outbox_until_the_notification_arrives(notify_sink, outbox, make_alert,
                                                                                free_port):
    port = free_port()
    sink = notify_sink("json://127.0.0.1:%d/alerts" % port, title="{alert_id}")
    for n in (1, 2):
        outbox.enqueue(make_alert(n), ["phone"])
    thread = DeliveryThread(sink, outbox, OutboxConfig(retry_initial_s=0.05, retry_max_s=0.2))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while thread.stats.snapshot()["failures"].get("connection", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert thread.stats.snapshot()["delivered"] == 0
        with AlertReceiver(port=port) as receiver:
            assert receiver.wait_for(2, timeout=10)
            assert [a.body["title"] for a in receiver.alerts] == ["alert-0001", "alert-0002"]
            assert base64.b64decode(receiver.alerts[0].body["attachments"][0]["base64"]) == \
                make_alert(1).snapshot_jpeg
            # the service has both; the thread marks the second delivered just after its POST returns
            deadline = time.monotonic() + 10
            while outbox.next_pending("phone", 2**62) is not None and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        thread.stop(5)
    assert thread.stats.snapshot()["failures"]["connection"] >= 2
    assert outbox.next_pending("phone", 2**62) is None


# ---- config

def test_the_url_comes_from_the_environment_and_its_token_never_names_the_sink(make_config, plain_receiver):
    raw = {"alerts": {"notify": [{"url_env": "PHONE_URL"}]}}
    first = create_sinks(make_config(raw), {"PHONE_URL": json_url(plain_receiver) + "?token=one"})
    second = create_sinks(make_config(raw), {"PHONE_URL": json_url(plain_receiver) + "?token=two"})
    try:
        assert first[0].name == second[0].name      # a rotated token keeps the sink's outbox queue
        assert "token=one" not in repr(first[0])
    finally:
        for sink in first + second:
            sink.close()


def test_an_unset_url_variable_is_a_config_error_naming_the_key(make_config):
    config = make_config({"alerts": {"notify": [{"url_env": "PHONE_URL"}]}})
    with pytest.raises(ConfigError, match=r"alerts\.notify\[0\]\.url_env: environment variable PHONE_URL is not set"):
        create_sinks(config, {})


def test_the_url_can_come_from_a_file(make_config, plain_receiver, tmp_path):
    path = tmp_path / "phone-url"
    path.write_text(json_url(plain_receiver) + "\n")
    [sink] = create_sinks(make_config({"alerts": {"notify": [{"url_file": str(path)}]}}), {})
    sink.close()
    assert sink.name.startswith("notify-")


@pytest.mark.parametrize("entry, message", [
    ({}, r"alerts\.notify\[0\]: give exactly one of url, url_env, url_file \(none given\)"),
    ({"url": "json://h/a", "url_env": "X"}, r"give exactly one of url, url_env, url_file \(got url, url_env\)"),
    ({"url": "nosuchservice://x"}, r"alerts\.notify\[0\]\.url: Apprise reads no service from nosuchservice://\*\*\*"),
    ({"url": "json://h/a", "title": "{camra}"}, r"alerts\.notify\[0\]\.title: unknown field \{camra\}"),
    ({"url": "json://h/a", "body": "{camera:.2f}"}, r"alerts\.notify\[0\]\.body: .* is not a valid template"),
    ({"url": "json://h/a", "min_interval_s": -1}, r"alerts\.notify\[0\]\.min_interval_s: -1 is out of range"),
])
def test_a_bad_notify_entry_is_a_config_error_naming_its_key(make_config, entry, message):
    with pytest.raises(ConfigError, match=message):
        make_config({"alerts": {"notify": [entry]}})


def test_two_entries_with_one_name_are_a_config_error(make_config):
    config = make_config({"alerts": {"notify": [{"url": "json://h/a", "name": "p"}, {"url": "json://h/b",
                                                                                      "name": "p"}]}})
    with pytest.raises(ConfigError, match=r"alerts\.notify\[1\]: sink name 'p' is used twice"):
        create_sinks(config, {})


def test_check_config_counts_the_notification_sinks(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("alerts:\n  notify:\n    - url: json://127.0.0.1:9/a\n")
    assert cli.main(["check-config", "-c", str(path), "--state-dir", str(tmp_path / "state")]) == 0
    assert "sinks: 1 notify" in capsys.readouterr().out
