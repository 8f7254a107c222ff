"""Receiver faults against the whole daemon: a real `firedetd run` process raising real alerts on the bundled
sample video, a real webhook receiver on 127.0.0.1 that goes away, answers 500, times out and answers slowly,
real /metrics scrapes and the real SQLite outbox read beside the running daemon.

The outage lasts OUTAGE_S (a minute); the design for hours is the same code path (docs/reliability.md: events
wait on disk, retries back off to alerts.outbox.retry_max_s). Alerts flap less here than in the other fault tests
(OUTAGE_DETECTION), so a minute's backlog drains in seconds on a loaded 2-core machine.
"""

import time

from support.daemon import free_port, metric, scrape, wait_until

from firedetd.receiver import AlertReceiver

from .daemon_setup import (
    FLAPPING_DETECTION,
    SINK,
    outbox_deliveries,
    outbox_path,
    record_figures,
    running_daemon,
    sample_camera,
    stop_daemon,
    total,
    unique_in_order,
    webhook,
    write_config,
)

OUTAGE_S = 60.0
# a few events a second on the sample video, against the dozen a second FLAPPING_DETECTION makes
OUTAGE_DETECTION = dict(FLAPPING_DETECTION, ongoing_interval_s=10.0,
                        fire={"on": 0.5, "off": 0.5, "raise_frames": 8, "clear_frames": 20},
                        smoke={"on": 0.5, "off": 0.5, "raise_frames": 8, "clear_frames": 20})
TIMEOUT_S = 1.0  # the webhook's request timeout: the "timing out" receiver answers after 1.5 s


def received(receivers):
    """Every accepted POST of the receivers, in arrival order (each receiver ran after the one before)."""
    return [alert for receiver in receivers for alert in receiver.alerts]


def caught_up(port, receivers):
    """(scrape, keys received) at a moment when nothing is pending, every event the daemon generated has
    arrived as a unique key and is counted as delivered; None while deliveries are still catching up."""
    keys_before = set(a.key for a in received(receivers))
    values = scrape(port)
    generated = total(values, "firedetd_alert_events_total")
    if metric(values, "firedetd_alerts_pending", sink=SINK) != 0 or not generated:
        return None
    # the outbox row is marked delivered a moment before the counter moves: a scrape in between is not caught up
    if metric(values, "firedetd_alerts_delivered_total", sink=SINK) != generated:
        return None
    keys_after = set(a.key for a in received(receivers))
    if keys_before != keys_after or len(keys_after) != generated:
        return None
    return values, keys_after


def processed(port):
    return total(scrape(port), "firedetd_frames_processed_total")


def assert_delivered_in_outbox_order(path, alerts):
    """The receiver saw each event's first copy in the outbox's enqueue order, and nothing the outbox lacks."""
    rows = outbox_deliveries(path)
    arrival = unique_in_order(a.key for a in alerts)
    delivered = [key for key, done in rows if done]
    assert arrival == delivered[:len(arrival)]
    assert set(arrival) <= set(key for key, _ in rows)
    # head-of-line: whatever is still pending comes after everything delivered
    first_pending = next((i for i, (_, done) in enumerate(rows) if not done), len(rows))
    assert all(not done for _, done in rows[first_pending:])


def assert_duplicates_are_exact_repeats(alerts):
    first = {}
    for alert in alerts:
        if alert.key in first:
            assert alert.duplicate and alert.raw == first[alert.key].raw
        else:
            assert not alert.duplicate
            first[alert.key] = alert


def test_receiver_down_then_500s_then_timeouts_then_slow_loses_no_alert_and_never_stalls_inference(tmp_path):
    http_port, receiver_port = free_port(), free_port()
    url = "http://127.0.0.1:%d/alerts" % receiver_port
    config = write_config(tmp_path, [sample_camera()], [webhook(url, timeout_s=TIMEOUT_S)],
                          detection=OUTAGE_DETECTION, http_port=http_port)
    receivers = [AlertReceiver(port=receiver_port).start()]
    figures = {}
    try:
        with running_daemon(config) as daemon:
            wait_until(lambda: len(receivers[0].alerts) >= 5, 60, message="the first alerts")

            receivers[0].stop()  # down: connection refused
            outage_started, frames_before = time.time(), processed(http_port)
            pending_during = []
            while time.time() - outage_started < OUTAGE_S:
                values = scrape(http_port)
                pending_during.append(metric(values, "firedetd_alerts_pending", sink=SINK))
                assert metric(values, "firedetd_source_up", camera="sample") == 1
                time.sleep(1.0)
            frames_during = processed(http_port) - frames_before
            figures.update(outage_s=round(time.time() - outage_started, 1), frames_during_outage=frames_during,
                           max_pending_during_outage=max(pending_during))

            back = AlertReceiver(port=receiver_port)
            back.fail_next(5, 500)  # back, but failing
            receivers.append(back.start())
            wait_until(lambda: sum(1 for _, status in back.attempts if status == 500) >= 5, 30,
                       message="five 500 answers")
            back.delay_s = TIMEOUT_S * 1.5  # answering after the sender gave up: timeouts
            time.sleep(4.0)
            back.delay_s = TIMEOUT_S * 0.3  # slow, within the timeout
            time.sleep(3.0)
            back.delay_s = 0.0
            recovered_at = time.time()
            values, keys = wait_until(lambda: caught_up(http_port, receivers), 60, message="every alert delivered")
            figures.update(catch_up_s=round(time.time() - recovered_at, 1), received_unique=len(keys),
                           generated=total(values, "firedetd_alert_events_total"),
                           delivered=metric(values, "firedetd_alerts_delivered_total", sink=SINK),
                           failed_attempts=total(values, "firedetd_alert_delivery_failures_total", sink=SINK),
                           http_500=sum(1 for _, status in back.attempts if status == 500))
            assert stop_daemon(daemon) == 0
    finally:
        receivers[-1].stop()

    alerts = received(receivers)
    figures.update(duplicates=sum(1 for a in alerts if a.duplicate))
    record_figures("receiver_faults", **figures)
    assert frames_during > 100  # inference went on while the receiver was away
    assert figures["max_pending_during_outage"] > 0
    assert figures["delivered"] == figures["generated"] == len(keys)
    assert total(values, "firedetd_alert_delivery_failures_total", sink=SINK, reason="http_5xx") >= 5
    assert total(values, "firedetd_alert_delivery_failures_total", sink=SINK, reason="timeout") >= 1
    assert_delivered_in_outbox_order(outbox_path(tmp_path), alerts)
    assert_duplicates_are_exact_repeats(alerts)


def test_outbox_at_its_size_cap_drops_old_snapshots_but_delivers_every_alert(tmp_path):
    """A 1 MiB outbox (the smallest allowed) fills with snapshots while nobody receives; every event still
    arrives, only the oldest pictures are gone, and firedetd_outbox_snapshots_dropped says how many."""
    http_port, receiver_port = free_port(), free_port()
    url = "http://127.0.0.1:%d/alerts" % receiver_port
    detection = dict(FLAPPING_DETECTION, snapshot={"width": 1280, "jpeg_quality": 95})
    config = write_config(tmp_path, [sample_camera()], [webhook(url)], detection=detection,
                          outbox={"max_mb": 1}, http_port=http_port)
    with running_daemon(config) as daemon:
        values = wait_until(lambda: _snapshots_dropped(http_port, at_least=3), 90, message="the cap to drop snapshots")
        dropped_while_down = metric(values, "firedetd_outbox_snapshots_dropped_total")
        with AlertReceiver(port=receiver_port) as receiver:
            values, keys = wait_until(lambda: caught_up(http_port, [receiver]), 60, message="every alert delivered")
            assert stop_daemon(daemon) == 0
    alerts = receiver.alerts
    raised = [a.body for a in unique_alerts(alerts) if a.body["state"] == "raised"]
    without_snapshot = [i for i, body in enumerate(raised) if body["snapshot"] is None]
    record_figures("outbox_cap", max_mb=1, generated=total(values, "firedetd_alert_events_total"),
                   received_unique=len(keys), raised=len(raised),
                   raised_without_snapshot=len(without_snapshot),
                   snapshots_dropped=metric(values, "firedetd_outbox_snapshots_dropped_total"),
                   outbox_bytes=metric(values, "firedetd_outbox_bytes"))
    assert dropped_while_down >= 3
    assert len(keys) == total(values, "firedetd_alert_events_total")
    # the oldest pictures went first: the raised events without one are the first ones, except at most the one
    # event the sink had already read (snapshot and all; it reads one at a time) when the cap dropped its picture
    assert without_snapshot
    kept_among_oldest = sorted(set(range(without_snapshot[-1] + 1)) - set(without_snapshot))
    assert len(kept_among_oldest) <= 1, kept_among_oldest
    assert raised[-1]["snapshot"] is not None
    assert len(without_snapshot) <= metric(values, "firedetd_outbox_snapshots_dropped_total")
    assert_delivered_in_outbox_order(outbox_path(tmp_path), alerts)


def unique_alerts(alerts):
    seen = set()
    for alert in alerts:
        if alert.key not in seen:
            seen.add(alert.key)
            yield alert


def _snapshots_dropped(port, at_least):
    values = scrape(port)
    return values if (metric(values, "firedetd_outbox_snapshots_dropped_total") or 0) >= at_least else None
