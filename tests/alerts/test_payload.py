"""firedetd/alerts/payload.py: the fields every sink sends for one outbox event."""

import json

from firedetd.alerts.payload import event_fields, iso_utc

FAR_FUTURE = 2**62


def test_iso_utc_is_utc_with_milliseconds_truncated_not_rounded():
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1714564800 * 10**9 + 999999999) == "2024-05-01T12:00:00.999Z"


def test_event_fields_name_the_event_the_alert_and_the_device(outbox, make_alert):
    outbox.enqueue(make_alert(3), ["hook"])
    event = outbox.next_pending("hook", FAR_FUTURE)

    fields = event_fields(event, "nano-1")

    assert fields["id"] == event["event_key"] and fields["alert_id"] == "alert-0003"
    assert (fields["device"], fields["camera"], fields["kind"], fields["state"]) == ("nano-1", "cam1", "fire",
                                                                                    "raised")
    assert fields["started_at"] == "2024-05-01T12:00:03.000Z" and fields["event_at"] == "2024-05-01T12:00:03.123Z"
    assert "snapshot" not in fields and "snapshot_jpeg" not in fields
    json.dumps(fields)   # every value is plain JSON


def test_the_mqtt_payload_and_the_webhook_body_carry_the_same_event_fields(outbox, make_alert, webhook_sink):
    from firedetd.alerts.mqtt import MqttSink
    from firedetd.config import MqttConfig

    outbox.enqueue(make_alert(4), ["hook"])
    event = outbox.next_pending("hook", FAR_FUTURE)
    body = json.loads(webhook_sink("http://127.0.0.1:9/alerts").encode(event).decode("utf-8"))
    mqtt = MqttSink("mqtt", MqttConfig(host="127.0.0.1", port=9), "device-1", "")   # the webhook sink's device
    try:
        payload = json.loads(mqtt.encode(event).decode("utf-8"))
    finally:
        mqtt.close()

    assert payload == {key: value for key, value in body.items() if key != "snapshot"}


def test_a_region_survives_the_outbox_into_the_webhook_body_and_mqtt_payload_only_when_there_is_one(
        outbox, make_alert, webhook_sink):
    import dataclasses

    from firedetd.alerts.mqtt import MqttSink
    from firedetd.config import MqttConfig

    outbox.enqueue(dataclasses.replace(make_alert(5), region=(0.5, 0.25, 0.125, 0.375)), ["hook"])
    outbox.enqueue(make_alert(6), ["hook"])
    with_region = outbox.next_pending("hook", FAR_FUTURE)
    outbox.mark_delivered("hook", with_region["row_id"])
    without = outbox.next_pending("hook", FAR_FUTURE)
    assert with_region["id"] == "alert-0005" and without["id"] == "alert-0006"

    body = json.loads(webhook_sink("http://127.0.0.1:9/alerts").encode(with_region).decode("utf-8"))
    mqtt = MqttSink("mqtt", MqttConfig(host="127.0.0.1", port=9), "device-1", "")
    try:
        payload = json.loads(mqtt.encode(with_region).decode("utf-8"))
    finally:
        mqtt.close()
    assert body["region"] == payload["region"] == [0.5, 0.25, 0.125, 0.375]
    assert "region" not in event_fields(without, "nano-1")   # a model without a map: the body as before
