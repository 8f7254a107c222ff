"""What every sink says about one outbox event: the fields of the webhook body and of the MQTT payload.

Kept apart from the sinks so that each sink depends only on this module and the interface, never on another
sink (the MQTT sink used to import these from the webhook sink).
"""

import time


def event_fields(event: dict, device_id: str) -> dict:
    """The fields every sink sends for one outbox event (webhook body, MQTT payload), snapshot aside. `region`
    ([x, y, w, h], shares of the frame) only when the model has a class activation map (docs/cam.md)."""
    fields = {
        "id": event["event_key"], "alert_id": event["id"], "device": device_id,
        "camera": event["camera"], "kind": event["kind"], "state": event["state"],
        "score": event["score"], "peak_score": event["peak_score"],
        "started_at": iso_utc(event["started_ns"]), "event_at": iso_utc(event["event_ns"]),
        "frame_seq": event["frame_seq"], "latency_ms": event["latency_ms"], "model": event["model"],
    }
    if event.get("region") is not None:
        fields["region"] = list(event["region"])
    return fields


def iso_utc(ns: int) -> str:
    """Wall-clock nanoseconds as ISO-8601 UTC with milliseconds: 2024-05-01T12:00:00.123Z."""
    seconds, rest = divmod(int(ns), 1000000000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + ".%03dZ" % (rest // 1000000)
