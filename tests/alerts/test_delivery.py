"""Delivery threads with a real outbox, the real webhook sink and the real receiver on 127.0.0.1."""

import random
import time

import pytest

from firedetd.alerts import Sink
from firedetd.alerts.delivery import DeliveryStats, DeliveryThread
from firedetd.alerts.outbox import Outbox
from firedetd.clock import wall_ns
from firedetd.config import OutboxConfig
from firedetd.errors import SinkError
from firedetd.receiver import AlertReceiver

WAIT_S = 30  # generous: only there so a broken build fails instead of hanging


def wait_until(condition, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def first_occurrences(keys):
    seen, order = set(), []
    for key in keys:
        if key not in seen:
            seen.add(key)
            order.append(key)
    return order


@pytest.fixture
def start_thread():
    threads = []

    def start(sink, outbox, retry_initial_s=0.02, retry_max_s=0.2, **kwargs):
        retry = OutboxConfig(retry_initial_s=retry_initial_s, retry_max_s=retry_max_s)
        thread = DeliveryThread(sink, outbox, retry, **kwargs)
        thread.start()
        threads.append(thread)
        return thread

    yield start
    for thread in threads:
        assert thread.stop(WAIT_S)


def enqueue(outbox, make_alert, count, sink="hook"):
    return [make_alert(n) for n in range(count) if outbox.enqueue(make_alert(n), [sink])]


def test_a_receiver_down_then_up_gets_every_event_in_order(outbox, make_alert, webhook_sink, free_port,
                                                           start_thread):
    port = free_port()
    alerts = enqueue(outbox, make_alert, 8)
    thread = start_thread(webhook_sink("http://127.0.0.1:%d/alerts" % port), outbox)
    assert wait_until(lambda: thread.stats.failures.get("connection", 0) >= 3)

    with AlertReceiver(port=port) as receiver:
        assert wait_until(lambda: outbox.pending_count("hook") == 0)
        keys = receiver.keys()

    assert first_occurrences(keys) == [a.event_key for a in alerts]
    assert thread.stats.delivered == 8 and thread.is_alive()


def test_500s_for_a_while_hold_back_later_events_until_the_first_is_accepted(outbox, make_alert, receiver,
                                                                              webhook_sink, start_thread):
    receiver.fail_next(5, status=503)
    alerts = enqueue(outbox, make_alert, 4)
    hooks = {"delivered": [], "failed": []}

    thread = start_thread(webhook_sink(receiver.url), outbox,
                          stats={"delivered": hooks["delivered"].append, "failed": hooks["failed"].append})
    assert receiver.wait_for(4, WAIT_S)

    first = alerts[0].event_key
    assert receiver.attempts[:6] == [(first, 503)] * 5 + [(first, 200)]
    assert receiver.keys() == [a.event_key for a in alerts]
    assert thread.stats.failures == {"http_5xx": 5} and thread.stats.consecutive_failures == 0
    assert wait_until(lambda: outbox.pending_count("hook") == 0)
    assert hooks == {"delivered": [1, 1, 1, 1], "failed": ["http_5xx"] * 5}  # the metrics hooks saw the same
    delivered = [e for e in outbox.recent(10) if e["event_key"] == first][0]
    assert delivered["deliveries"]["hook"]["attempts"] == 6


def test_a_receiver_slower_than_the_timeout_gets_duplicates_only_under_the_same_key(outbox, make_alert, receiver,
                                                                                     webhook_sink, start_thread):
    receiver.delay_s = 0.6
    alerts = enqueue(outbox, make_alert, 3)
    thread = start_thread(webhook_sink(receiver.url, timeout_s=0.2), outbox)
    assert wait_until(lambda: thread.stats.failures.get("timeout", 0) >= 2)

    receiver.delay_s = 0.0
    assert wait_until(lambda: outbox.pending_count("hook") == 0)
    # each request the sender gave up on is still answered, and recorded, once its delay is over
    assert wait_until(lambda: len(receiver.alerts) == 3 + thread.stats.failures["timeout"])

    keys = receiver.keys()
    assert first_occurrences(keys) == [a.event_key for a in alerts]
    assert len(keys) > 3  # the slow answers were recorded by the receiver although the sender gave up
    assert [a.duplicate for a in receiver.alerts] == [key in keys[:i] for i, key in enumerate(keys)]


def test_a_slow_receiver_within_the_timeout_gets_each_event_once(outbox, make_alert, receiver, webhook_sink,
                                                                 start_thread):
    receiver.delay_s = 0.2
    alerts = enqueue(outbox, make_alert, 3)

    thread = start_thread(webhook_sink(receiver.url, timeout_s=10), outbox)

    assert receiver.wait_for(3, WAIT_S)
    assert receiver.keys() == [a.event_key for a in alerts]
    assert thread.stats.failures == {}


def test_stop_returns_promptly_in_the_middle_of_a_long_backoff(outbox, make_alert, receiver, webhook_sink):
    receiver.fail_next(1)
    enqueue(outbox, make_alert, 1)
    thread = DeliveryThread(webhook_sink(receiver.url), outbox, OutboxConfig(retry_initial_s=600, retry_max_s=600))
    thread.start()
    assert wait_until(lambda: thread.stats.failures.get("http_5xx") == 1)

    assert thread.stop(timeout=10) is True  # the backoff is at least 600 s: only the stop event ends this wait
    assert not thread.is_alive() and receiver.alerts == []


def test_a_non_retryable_error_is_retried_at_the_longest_delay_and_counted_apart(outbox, make_alert, receiver,
                                                                                 webhook_sink, start_thread):
    receiver.fail_next(1, status=404)
    alerts = enqueue(outbox, make_alert, 2)

    thread = start_thread(webhook_sink(receiver.url), outbox, retry_initial_s=0.01, retry_max_s=0.3)

    assert receiver.wait_for(2, WAIT_S)
    assert receiver.keys() == [a.event_key for a in alerts]
    assert thread.stats.non_retryable == 1 and thread.stats.failures == {"http_4xx": 1}


def test_wake_starts_a_delivery_without_waiting_for_the_idle_poll(outbox, make_alert, receiver, webhook_sink,
                                                                  start_thread):
    thread = start_thread(webhook_sink(receiver.url), outbox, idle_poll_s=600)
    assert wait_until(lambda: thread.is_alive())
    time.sleep(0.2)  # let it find the outbox empty and settle into its idle wait

    outbox.enqueue(make_alert(1), ["hook"])
    thread.wake()

    assert receiver.wait_for(1, WAIT_S)  # far sooner than the 600 s idle poll


def test_an_exception_from_a_buggy_sink_is_counted_and_the_thread_carries_on(outbox, make_alert, receiver,
                                                                             webhook_sink, start_thread):
    """The sink here wraps the real webhook sink and raises a plain exception once, standing in for a sink bug."""
    real = webhook_sink(receiver.url)

    class FlakySink:
        name = "hook"
        calls = 0

        def deliver(self, event):
            FlakySink.calls += 1
            if FlakySink.calls == 1:
                raise KeyError("bug in a sink")
            real.deliver(event)

    alerts = enqueue(outbox, make_alert, 2)
    thread = start_thread(FlakySink(), outbox)

    assert receiver.wait_for(2, WAIT_S)
    assert receiver.keys() == [a.event_key for a in alerts]
    assert thread.stats.failures == {"exception": 1} and thread.is_alive()


def test_a_sink_errors_reason_is_counted_and_its_retry_after_holds_the_event_back(outbox, make_alert,
                                                                                 start_thread):
    class ThrottledSink(Sink):
        """Answers every delivery as a receiver that says "429, come back in a minute" would."""

        name = "hook"

        def deliver(self, event):
            raise SinkError("hook: HTTP 429", True, "http_429", retry_after_s=60)

    enqueue(outbox, make_alert, 1)
    thread = start_thread(ThrottledSink(), outbox, retry_max_s=120)

    # the backoff alone would retry within 0.02 s; the sink's retry_after_s asks for 60
    assert wait_until(lambda: outbox.next_pending("hook", wall_ns() + 50 * 10**9) is None)
    assert outbox.next_pending("hook", wall_ns() + 130 * 10**9) is not None
    assert thread.stats.failures == {"http_429": 1}


def test_an_unwritable_outbox_is_counted_and_the_thread_recovers_when_it_works_again(tmp_path, make_alert, receiver,
                                                                                     webhook_sink, start_thread):
    box = Outbox(str(tmp_path / "outbox.sqlite3"))
    box.enqueue(make_alert(1), ["hook"])
    blocker = box._open_connection()
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the lock past busy_timeout: every write fails
    try:
        thread = start_thread(webhook_sink(receiver.url), box, retry_initial_s=0.05, retry_max_s=0.2)
        assert wait_until(lambda: thread.stats.errors >= 1, timeout=60)
        assert "database is locked" in thread.stats.last_error
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    assert wait_until(lambda: box.pending_count("hook") == 0)
    assert receiver.keys()[0] == make_alert(1).event_key  # sent again after the lost mark: same key
    assert thread.is_alive()
    thread.stop(WAIT_S)
    box.close()


def test_a_restarted_thread_continues_where_the_last_one_stopped(tmp_path, make_alert, receiver, webhook_sink,
                                                                 start_thread):
    path = str(tmp_path / "outbox.sqlite3")
    first_box = Outbox(path)
    alerts = enqueue(first_box, make_alert, 3)
    receiver.fail_next(1000)
    first = start_thread(webhook_sink(receiver.url), first_box)
    assert wait_until(lambda: first.stats.failures.get("http_5xx", 0) >= 2)
    assert first.stop(WAIT_S)
    first_box.close()

    receiver.fail_next(0)
    second_box = Outbox(path)
    start_thread(webhook_sink(receiver.url), second_box)

    assert receiver.wait_for(3, WAIT_S)
    assert receiver.keys() == [a.event_key for a in alerts]
    second_box.close()


def test_backoff_grows_with_jitter_and_keeps_to_its_limits(outbox):
    class Named:
        name = "hook"

    thread = DeliveryThread(Named(), outbox, OutboxConfig(retry_initial_s=1.0, retry_max_s=300.0),
                            rng=random.Random(7))

    for attempts in range(12):
        delays = [thread.backoff_s(attempts) for _ in range(50)]
        ceiling = min(300.0, 2.0 ** attempts)
        assert all(1.0 <= d <= ceiling for d in delays), attempts
    assert max(thread.backoff_s(6) for _ in range(50)) > 32  # it does grow
    assert len({round(thread.backoff_s(8), 6) for _ in range(20)}) > 10  # and is spread out
    assert all(150.0 <= thread.backoff_s(0, retryable=False) <= 300.0 for _ in range(50))
    assert thread.backoff_s(0, retry_after_s=30) >= 30
    assert thread.backoff_s(0, retry_after_s=10**6) <= 300.0
    assert thread.backoff_s(10**6) <= 300.0  # no overflow after a very long outage


def test_stats_snapshot_is_a_consistent_copy():
    stats = DeliveryStats()
    stats.record_failure("timeout", "no answer", True, 5)
    stats.record_delivered(9)

    snapshot = stats.snapshot()
    stats.record_failure("timeout", "again", False, 10)

    assert snapshot["failures"] == {"timeout": 1} and snapshot["delivered"] == 1
    assert snapshot["consecutive_failures"] == 0 and snapshot["last_success_ns"] == 9
    assert stats.non_retryable == 1 and stats.failures == {"timeout": 2}


def test_thread_is_named_after_its_sink(outbox):
    class Named:
        name = "ops-webhook"

    thread = DeliveryThread(Named(), outbox)

    assert thread.name == "deliver-ops-webhook" and thread.daemon
    assert thread.stop(1) is True  # stopping a thread that never started is harmless



def test_an_event_whose_delivered_mark_cannot_be_written_is_marked_again_not_sent_again(outbox, make_alert,
                                                                                        start_thread):
    """A full disk: the receiver took the event, the outbox could not record it. The thread retries the mark,
    not the POST (before: one event re-sent 37 times in 40 s)."""
    from firedetd.alerts.outbox import OutboxError

    class Receiving(object):
        name = "hook"

        def __init__(self):
            self.keys = []

        def deliver(self, event):
            self.keys.append(event["event_key"])

        def problem(self):
            return None

    class DiskFullFor(object):
        """The real outbox, whose mark_delivered fails the first `times` calls, as on a full disk."""

        def __init__(self, real, times):
            self.real, self.times = real, times

        def mark_delivered(self, sink, row_id):
            if self.times > 0:
                self.times -= 1
                raise OutboxError("database or disk is full")
            return self.real.mark_delivered(sink, row_id)

        def __getattr__(self, name):
            return getattr(self.real, name)

    enqueue(outbox, make_alert, 2)
    sink = Receiving()
    start_thread(sink, DiskFullFor(outbox, 5))
    assert wait_until(lambda: outbox.pending_count("hook") == 0)
    assert sink.keys == [make_alert(0).event_key, make_alert(1).event_key]
