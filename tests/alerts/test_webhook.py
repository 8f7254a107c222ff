"""The webhook sink against the real demo receiver on 127.0.0.1: body, signature, replay window, failures."""

import base64
import json
import logging
import time

import pytest
import requests

from firedetd.alerts.webhook import redact_url, sign, verify_signature
from firedetd.errors import SinkError
from firedetd.receiver import AlertReceiver

FAR_FUTURE = 2**62


@pytest.fixture
def event(outbox, make_alert):
    """An outbox event as a delivery thread hands it to a sink."""
    outbox.enqueue(make_alert(7, snapshot_size=5000), ["hook"])
    return outbox.next_pending("hook", FAR_FUTURE)


def deliver_expecting_error(sink, event):
    with pytest.raises(SinkError) as caught:
        sink.deliver(event)
    return caught.value


def test_the_body_carries_every_alert_field_and_the_snapshot(receiver, webhook_sink, event, make_alert,
                                                            snapshot_bytes):
    sink = webhook_sink(receiver.url, headers={"Authorization": "Bearer token-123"})
    sink.deliver(event)

    [received] = receiver.alerts
    body, alert = received.body, make_alert(7)
    assert body["id"] == alert.event_key and body["alert_id"] == alert.id and body["device"] == "device-1"
    assert (body["camera"], body["kind"], body["state"]) == (alert.camera, alert.kind, alert.state)
    assert (body["score"], body["peak_score"]) == (alert.score, alert.peak_score)
    assert (body["frame_seq"], body["latency_ms"], body["model"]) == (alert.frame_seq, alert.latency_ms, alert.model)
    assert body["started_at"] == "2024-05-01T12:00:07.000Z" and body["event_at"] == "2024-05-01T12:00:07.123Z"
    assert body["snapshot"]["content_type"] == "image/jpeg"
    assert base64.b64decode(body["snapshot"]["data_base64"]) == snapshot_bytes(7, 5000)
    assert received.headers["content-type"] == "application/json"
    assert received.headers["idempotency-key"] == alert.event_key
    assert received.headers["authorization"] == "Bearer token-123"


def test_include_snapshot_false_sends_null(receiver, webhook_sink, event):
    webhook_sink(receiver.url, include_snapshot=False).deliver(event)

    assert receiver.alerts[0].body["snapshot"] is None


def test_an_event_whose_snapshot_was_dropped_sends_null(receiver, webhook_sink, outbox, make_alert):
    outbox.enqueue(make_alert(1, snapshot_size=0), ["hook"])
    webhook_sink(receiver.url).deliver(outbox.next_pending("hook", FAR_FUTURE))

    assert receiver.alerts[0].body["snapshot"] is None


def test_the_signature_verifies_with_the_shared_secret_only(receiver, webhook_sink, event, secret):
    webhook_sink(receiver.url).deliver(event)

    [received] = receiver.alerts
    timestamp = received.headers["x-firedetd-timestamp"]
    signature = received.headers["x-firedetd-signature"]
    assert signature.startswith("sha256=")
    assert verify_signature(secret, timestamp, received.raw, signature, time.time())
    assert not verify_signature("another-secret", timestamp, received.raw, signature, time.time())
    assert not verify_signature(secret, timestamp, received.raw.replace(b"fire", b"smoke"), signature, time.time())
    assert not verify_signature(secret, str(int(timestamp) + 1), received.raw, signature, int(timestamp) + 1)


def test_a_receiver_with_another_secret_answers_401_which_is_not_retryable(webhook_sink, event):
    with AlertReceiver(secret="the-receivers-secret") as other:
        error = deliver_expecting_error(webhook_sink(other.url), event)

        assert error.retryable is False and error.reason == "http_4xx" and "401" in str(error)
        assert other.alerts == [] and other.attempts == [(event["event_key"], 401)]


def test_an_unsigned_alert_is_refused_by_a_receiver_with_a_secret(receiver, webhook_sink, event):
    error = deliver_expecting_error(webhook_sink(receiver.url, secret=""), event)

    assert "401" in str(error) and receiver.alerts == []


def test_a_correctly_signed_but_stale_request_is_refused_as_a_replay(receiver, webhook_sink, event, secret):
    body = webhook_sink(receiver.url).encode(event)
    old = str(int(time.time()) - 600)

    response = requests.post(receiver.url, data=body, timeout=10, headers={
        "Content-Type": "application/json", "Idempotency-Key": event["event_key"],
        "X-Firedetd-Timestamp": old, "X-Firedetd-Signature": sign(secret, old, body)})

    assert response.status_code == 401 and receiver.alerts == []


def test_verify_signature_keeps_to_the_replay_window(secret):
    body, timestamp = b'{"id":"x"}', "1714564800"
    signature = sign(secret, timestamp, body)

    assert verify_signature(secret, timestamp, body, signature, now=1714564800 + 300)
    assert verify_signature(secret, timestamp, body, signature, now=1714564800 - 300)  # receiver's clock behind
    assert not verify_signature(secret, timestamp, body, signature, now=1714564800 + 301)
    assert not verify_signature(secret, timestamp, body, signature, now=1714564800 + 60, window_s=30)
    assert not verify_signature(secret, "not-a-time", body, signature, now=1714564800)
    assert not verify_signature(secret, timestamp, body, None, now=1714564800)
    assert not verify_signature("", timestamp, body, signature, now=1714564800)


def test_retries_send_the_same_idempotency_key_and_the_same_body(receiver, webhook_sink, event):
    sink = webhook_sink(receiver.url)
    receiver.fail_next(2)

    errors = [deliver_expecting_error(sink, event) for _ in range(2)]
    sink.deliver(event)

    assert [e.retryable for e in errors] == [True, True] and [e.reason for e in errors] == ["http_5xx"] * 2
    assert receiver.attempts == [(event["event_key"], 500), (event["event_key"], 500), (event["event_key"], 200)]
    assert receiver.alerts[0].raw == sink.encode(event)


@pytest.mark.parametrize("status,retryable", [(500, True), (503, True), (429, True), (408, True), (404, False),
                                              (400, False), (302, False)])
def test_status_codes_map_to_retryable_or_not(receiver, webhook_sink, event, status, retryable):
    receiver.fail_next(1, status=status)

    error = deliver_expecting_error(webhook_sink(receiver.url), event)

    assert error.retryable is retryable and str(status) in str(error)
    assert receiver.alerts == []


def test_a_receiver_slower_than_the_timeout_is_a_retryable_timeout(receiver, webhook_sink, event):
    receiver.delay_s = 3.0

    error = deliver_expecting_error(webhook_sink(receiver.url, timeout_s=0.3), event)

    assert error.retryable is True and error.reason == "timeout"


def test_a_closed_connection_and_a_refused_connection_are_retryable(receiver, webhook_sink, event, free_port):
    receiver.drop_next(1)
    dropped = deliver_expecting_error(webhook_sink(receiver.url), event)
    refused = deliver_expecting_error(webhook_sink("http://127.0.0.1:%d/alerts" % free_port()), event)

    assert (dropped.retryable, dropped.reason) == (True, "connection")
    assert (refused.retryable, refused.reason) == (True, "connection")


def test_secrets_and_credentials_stay_out_of_errors_and_logs(webhook_sink, event, free_port, caplog):
    url = "http://user:url-password@127.0.0.1:%d/alerts?token=query-token" % free_port()
    sink = webhook_sink(url, secret="signing-secret", headers={"Authorization": "Bearer header-token"})

    with caplog.at_level(logging.DEBUG):
        error = deliver_expecting_error(sink, event)

    leaked = str(error) + caplog.text + repr(sink)
    for credential in ("signing-secret", "header-token", "url-password", "query-token"):
        assert credential not in leaked
    assert "127.0.0.1" in str(error)


def test_redact_url_hides_credentials_and_the_query():
    assert redact_url("https://u:p@example.org:8443/a/b?k=v") == "https://***@example.org:8443/a/b?***"
    assert redact_url("http://127.0.0.1:8765/alerts") == "http://127.0.0.1:8765/alerts"


def test_the_body_is_compact_sorted_utf8_json(receiver, webhook_sink, event):
    sink = webhook_sink(receiver.url)

    raw = sink.encode(event)

    assert json.loads(raw.decode("utf-8"))["id"] == event["event_key"]
    assert raw == json.dumps(json.loads(raw.decode("utf-8")), sort_keys=True, separators=(",", ":")).encode()
