"""The SQLite outbox on real files: order, idempotency, the size cap, pruning, corruption, a full disk, a kill."""

import json
import logging
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from firedetd.alerts.outbox import Outbox, OutboxWriter
from firedetd.clock import wall_ns
from firedetd.errors import OutboxError
from firedetd.types import CLEARED, ONGOING

FAR_FUTURE = 2**62


def deliver_head(box, sink):
    event = box.next_pending(sink, FAR_FUTURE)
    box.mark_delivered(sink, event["row_id"])
    return event


def checkpointed_size(path):
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    return os.path.getsize(path)


def test_each_sink_gets_its_events_oldest_first_with_every_field(outbox, make_alert, snapshot_bytes):
    alerts = [make_alert(n) for n in range(3)]
    for alert in alerts:
        outbox.enqueue(alert, ["a", "b"])

    first = deliver_head(outbox, "a")
    second = outbox.next_pending("a", FAR_FUTURE)

    assert first["event_key"] == alerts[0].event_key and second["event_key"] == alerts[1].event_key
    assert outbox.next_pending("b", FAR_FUTURE)["event_key"] == alerts[0].event_key  # sinks are independent
    for name in ("id", "camera", "kind", "state", "started_ns", "event_ns", "score", "peak_score", "frame_seq",
                 "latency_ms", "model"):
        assert second[name] == getattr(alerts[1], name), name
    assert second["snapshot_jpeg"] == snapshot_bytes(1) and second["attempts"] == 0
    assert outbox.pending_count("a") == 2 and outbox.pending_count("b") == 3 and outbox.pending_count() == 5


def test_enqueueing_the_same_event_twice_stores_it_once(outbox, make_alert):
    raised = make_alert(1)
    first = outbox.enqueue(raised, ["a"])
    again = outbox.enqueue(raised, ["a"])

    assert again == first
    assert outbox.pending_count("a") == 1
    assert outbox.counts()["events"] == 1


def test_ongoing_events_of_one_incident_are_distinct_but_each_is_idempotent(outbox, make_alert):
    ongoing = make_alert(1, state=ONGOING)
    later = replace(ongoing, event_ns=ongoing.event_ns + 60 * 10**9)
    for alert in (make_alert(1), ongoing, later, later, make_alert(1, state=CLEARED)):
        outbox.enqueue(alert, ["a"])

    keys = [deliver_head(outbox, "a")["event_key"] for _ in range(4)]

    assert keys == [make_alert(1).event_key, ongoing.event_key, later.event_key, make_alert(1, CLEARED).event_key]
    assert outbox.next_pending("a", FAR_FUTURE) is None


def test_a_head_waiting_for_its_retry_blocks_later_events_of_that_sink(outbox, make_alert):
    outbox.enqueue(make_alert(1), ["a", "b"])
    outbox.enqueue(make_alert(2), ["a", "b"])
    now = wall_ns()
    head = outbox.next_pending("a", now)

    outbox.mark_failed("a", head["row_id"], "HTTP 503", now + 10 * 10**9)

    assert outbox.next_pending("a", now) is None  # not alert 2: nothing overtakes the head
    assert outbox.head_due_ns("a") == now + 10 * 10**9
    retried = outbox.next_pending("a", now + 11 * 10**9)
    assert retried["event_key"] == head["event_key"]
    assert retried["attempts"] == 1 and retried["last_error"] == "HTTP 503"
    assert outbox.next_pending("b", now)["event_key"] == head["event_key"]  # the other sink is not held up


def test_delivery_state_survives_reopening_the_file(tmp_path, make_alert):
    path = str(tmp_path / "outbox.sqlite3")
    box = Outbox(path)
    for n in range(3):
        box.enqueue(make_alert(n), ["a"])
    deliver_head(box, "a")
    box.mark_failed("a", box.next_pending("a", FAR_FUTURE)["row_id"], "timeout", 0)
    box.close()

    reopened = Outbox(path)
    head = reopened.next_pending("a", FAR_FUTURE)

    assert reopened.recovered_from is None
    assert head["event_key"] == make_alert(1).event_key and head["attempts"] == 1
    assert reopened.counts()["delivered"] == 1 and reopened.pending_count("a") == 2
    reopened.close()


def test_size_cap_frees_delivered_snapshots_then_pending_snapshots_then_history_but_keeps_pending_events(
        tmp_path, make_alert):
    path = str(tmp_path / "outbox.sqlite3")
    box = Outbox(path, max_bytes=64 << 20)
    keys = [box.enqueue(make_alert(n, snapshot_size=40000), ["a"]) for n in range(6)]
    for _ in range(3):
        deliver_head(box, "a")
    size_before = checkpointed_size(path)

    box.max_bytes = box.counts()["bytes"] - 100000
    box.enforce_cap()
    assert [box.snapshot(k) is not None for k in keys] == [False, False, False, True, True, True]

    box.max_bytes = box.counts()["bytes"] - 60000
    box.enforce_cap()
    assert [box.snapshot(k) is not None for k in keys] == [False, False, False, False, False, True]
    assert len(box.recent(10)) == 6  # history is still there: snapshots went first

    box.max_bytes = 1
    box.enforce_cap()
    assert [e["row_id"] for e in box.recent(10)] == keys[:2:-1]  # only the three undelivered events remain
    head = box.next_pending("a", FAR_FUTURE)
    assert head["row_id"] == keys[3] and head["snapshot_jpeg"] is None and head["snapshot_dropped"]
    assert box.pending_count("a") == 3
    assert box.counts()["snapshots_dropped"] == 6 and box.snapshots_dropped == 6
    assert checkpointed_size(path) < size_before - 200000  # the freed pages went back to the file system
    assert box.size_bytes() == os.path.getsize(path) + os.path.getsize(path + "-wal")
    box.close()


def test_enqueue_past_the_cap_keeps_every_event_and_drops_the_oldest_snapshots(tmp_path, make_alert):
    box = Outbox(str(tmp_path / "outbox.sqlite3"), max_bytes=200000)
    ids = [box.enqueue(make_alert(n, snapshot_size=40000), ["a"]) for n in range(10)]

    kept = [box.snapshot(i) is not None for i in ids]

    assert box.pending_count("a") == 10
    assert kept[-1] and not kept[0]
    assert kept == sorted(kept)  # dropped ones are all older than kept ones
    assert box.counts()["bytes"] <= 200000
    assert box.counts()["snapshots_dropped"] == kept.count(False)
    box.close()


def test_prune_deletes_only_events_every_sink_received_long_enough_ago(tmp_path, make_alert):
    box = Outbox(str(tmp_path / "outbox.sqlite3"), keep_delivered_s=3600)
    for n in range(3):
        box.enqueue(make_alert(n), ["a", "b"])
    deliver_head(box, "a")
    deliver_head(box, "b")
    deliver_head(box, "a")  # alert 1: delivered to a only
    now = wall_ns()

    assert box.prune(now) == 0  # delivered just now: kept for the status page
    assert box.prune(now + 3601 * 10**9) == 1

    assert [e["id"] for e in box.recent(10)] == [make_alert(2).id, make_alert(1).id]
    assert box.counts()["events_pruned"] == 1
    assert box.snapshot(1) is None
    box.close()


def test_recent_reports_each_sinks_status(outbox, make_alert):
    outbox.enqueue(make_alert(1), ["a", "b"])
    deliver_head(outbox, "a")
    outbox.mark_failed("b", 1, "HTTP 500 boom", 0)

    [event] = outbox.recent(5)

    assert event["deliveries"]["a"]["delivered_ns"] is not None
    assert event["deliveries"]["b"]["delivered_ns"] is None
    assert event["deliveries"]["b"]["last_error"] == "HTTP 500 boom"
    assert event["snapshot_bytes"] == 2048
    assert outbox.counts(["a", "b", "c"])["pending"] == {"a": 0, "b": 1, "c": 0}


def test_a_file_that_is_not_a_database_is_moved_aside_and_a_fresh_one_works(tmp_path, make_alert, caplog):
    path = str(tmp_path / "outbox.sqlite3")
    garbage = b"this is not an SQLite database\n" * 200
    with open(path, "wb") as f:
        f.write(garbage)

    with caplog.at_level(logging.ERROR):
        box = Outbox(path)
    box.enqueue(make_alert(1), ["a"])

    assert box.recovered_from is not None and ".corrupt-" in box.recovered_from
    with open(box.recovered_from, "rb") as f:
        assert f.read() == garbage
    assert box.recovered_from in caplog.text
    assert box.next_pending("a", FAR_FUTURE)["event_key"] == make_alert(1).event_key
    box.close()


def test_damaged_pages_are_found_at_open_and_the_file_moved_aside(tmp_path, make_alert):
    path = str(tmp_path / "outbox.sqlite3")
    box = Outbox(path)
    for n in range(5):
        box.enqueue(make_alert(n, snapshot_size=20000), ["a"])
    box.close()
    checkpointed_size(path)
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(b"\xa5" * 8192)  # pages 2 and 3: the header still says "SQLite format 3"

    reopened = Outbox(path)

    assert reopened.recovered_from is not None
    assert reopened.pending_count() == 0
    reopened.enqueue(make_alert(9), ["a"])
    assert reopened.pending_count("a") == 1
    reopened.close()


def test_a_newer_schema_is_refused_and_left_in_place(tmp_path):
    path = str(tmp_path / "outbox.sqlite3")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()

    with pytest.raises(OutboxError, match="schema version 99"):
        Outbox(path)
    assert os.path.exists(path) and not [n for n in os.listdir(str(tmp_path)) if ".corrupt-" in n]


def test_a_full_database_raises_outbox_error_and_the_writer_keeps_alerts_until_it_has_room(outbox, make_alert):
    """SQLite's own page limit (PRAGMA max_page_count) makes it report "database or disk is full" for real."""
    outbox.enqueue(make_alert(0, snapshot_size=1000), ["a"])
    conn = outbox._conn()  # the calling thread's connection: the limit is per connection
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute("PRAGMA max_page_count = %d" % pages)

    with pytest.raises(OutboxError, match="full"):
        outbox.enqueue(make_alert(1, snapshot_size=50000), ["a"])

    errors = []
    writer = OutboxWriter(outbox, ["a"], retry_interval_s=0, metrics_error=lambda: errors.append(1))
    assert writer.enqueue(make_alert(1, snapshot_size=50000)) is False
    assert writer.enqueue(make_alert(2, snapshot_size=50000)) is False
    assert not writer.healthy and writer.write_errors == 2 and writer.backlog_size() == 2 and len(errors) == 2
    assert str(outbox.path) in writer.last_error

    conn.execute("PRAGMA max_page_count = 1073741823")
    assert writer.flush_backlog() is True

    assert writer.healthy and writer.dropped == 0
    keys = [deliver_head(outbox, "a")["event_key"] for _ in range(3)]
    assert keys == [make_alert(n).event_key for n in range(3)]


def test_a_full_writer_backlog_strips_the_newest_snapshots_then_drops_the_newest_alerts(outbox, make_alert,
                                                                                        snapshot_bytes):
    conn = outbox._conn()
    conn.execute("PRAGMA max_page_count = %d" % conn.execute("PRAGMA page_count").fetchone()[0])
    stored = []
    writer = OutboxWriter(outbox, ["a"], max_alerts=3, max_snapshot_bytes=150000, retry_interval_s=0,
                          on_stored=lambda: stored.append(1))

    for n in range(5):
        writer.enqueue(make_alert(n, snapshot_size=100000))
    assert (writer.backlog_size(), writer.snapshots_stripped, writer.dropped) == (3, 2, 2)

    conn.execute("PRAGMA max_page_count = 1073741823")
    assert writer.flush_backlog()

    events = [deliver_head(outbox, "a") for _ in range(3)]
    assert [e["event_key"] for e in events] == [make_alert(n).event_key for n in range(3)]
    assert [e["snapshot_jpeg"] for e in events] == [snapshot_bytes(0, 100000), None, None]
    assert outbox.next_pending("a", FAR_FUTURE) is None
    assert stored  # the owner was told, to wake the delivery threads


def test_after_a_failed_write_the_writer_waits_before_touching_the_disk_again(outbox, make_alert):
    conn = outbox._conn()
    conn.execute("PRAGMA max_page_count = %d" % conn.execute("PRAGMA page_count").fetchone()[0])
    writer = OutboxWriter(outbox, ["a"], retry_interval_s=3600)
    writer.enqueue(make_alert(1, snapshot_size=50000))
    conn.execute("PRAGMA max_page_count = 1073741823")

    writer.enqueue(make_alert(2))  # queued behind the first, not written: the retry interval is not over
    assert writer.flush_backlog() is False
    assert writer.write_errors == 1 and writer.backlog_size() == 2 and outbox.pending_count() == 0

    assert writer.flush_backlog(force=True) is True
    assert [deliver_head(outbox, "a")["event_key"] for _ in range(2)] == [make_alert(n).event_key for n in (1, 2)]


def test_writer_queues_for_the_sinks_named_last(outbox, make_alert):
    writer = OutboxWriter(outbox, ["a"])
    writer.enqueue(make_alert(1))
    writer.set_sinks(["b", "c"])
    writer.enqueue(make_alert(2))

    assert outbox.counts()["pending"] == {"a": 1, "b": 1, "c": 1}
    assert outbox.next_pending("b", FAR_FUTURE)["event_key"] == make_alert(2).event_key


_FILE_SIZE_LIMIT_CHILD = textwrap.dedent("""
    import json, resource, signal, sys
    from firedetd.alerts.outbox import Outbox, OutboxWriter
    from firedetd.types import Alert

    def alert(n, size):
        return Alert(id="a%d" % n, camera="c", kind="fire", state="raised", started_ns=n, event_ns=n, score=0.9,
                     peak_score=0.9, frame_seq=n, latency_ms=1.0, model="m", snapshot_jpeg=b"j" * size)

    box = Outbox(sys.argv[1])
    box.enqueue(alert(0, 100), ["a"])
    writer = OutboxWriter(box, ["a"], retry_interval_s=0)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel then fails the write with EFBIG instead
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, hard))
    stored_while_limited = writer.enqueue(alert(1, 200000))
    error = writer.last_error
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    flushed = writer.flush_backlog()
    keys = []
    while True:
        event = box.next_pending("a", 2**62)
        if event is None:
            break
        keys.append((event["event_key"], len(event["snapshot_jpeg"])))
        box.mark_delivered("a", event["row_id"])
    print(json.dumps({"stored_while_limited": stored_while_limited, "error": error, "flushed": flushed,
                      "keys": keys}))
""")


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_FSIZE)[1] != resource.RLIM_INFINITY,
                    reason="a hard file-size limit is set; the child could not lift its own limit again")
def test_a_file_system_that_refuses_the_write_is_survived_without_losing_the_alert(tmp_path, subprocess_env):
    """A child process caps its own file size (RLIMIT_FSIZE): the kernel refuses SQLite's writes for real."""
    path = str(tmp_path / "outbox.sqlite3")
    output = subprocess.check_output([sys.executable, "-c", _FILE_SIZE_LIMIT_CHILD, path], env=subprocess_env,
                                     timeout=60)
    result = json.loads(output.decode().strip().splitlines()[-1])

    assert result["stored_while_limited"] is False
    assert path in result["error"]
    assert result["flushed"] is True
    assert result["keys"] == [["a0:raised", 100], ["a1:raised", 200000]]


_ENQUEUE_FOREVER_CHILD = textwrap.dedent("""
    import hashlib, sys
    from firedetd.alerts.outbox import Outbox
    from firedetd.types import Alert

    box = Outbox(sys.argv[1])
    n = 0
    while True:
        jpeg = hashlib.sha256(b"%d" % n).digest() * (100 + n % 50)
        box.enqueue(Alert(id="a%d" % n, camera="c", kind="fire", state="raised", started_ns=n, event_ns=n,
                          score=n / 1e6, peak_score=0.5, frame_seq=n, latency_ms=1.5, model="m", snapshot_jpeg=jpeg),
                    ["a", "b"])
        print(n, flush=True)  # after the commit: every number printed is durably stored
        n += 1
""")


def test_every_event_committed_before_a_sigkill_is_intact_afterwards(tmp_path, subprocess_env):
    """A real process enqueues in a loop and is killed with SIGKILL at an arbitrary point, maybe mid-write."""
    import hashlib

    path = str(tmp_path / "outbox.sqlite3")
    child = subprocess.Popen([sys.executable, "-c", _ENQUEUE_FOREVER_CHILD, path], stdout=subprocess.PIPE,
                             env=subprocess_env)
    try:
        committed = -1
        while committed < 40:
            line = child.stdout.readline()
            assert line, "the child ended early"
            committed = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    committed = max([committed] + [int(x) for x in child.stdout.read().split()])
    child.stdout.close()

    box = Outbox(path)
    events = []
    while True:
        event = box.next_pending("a", FAR_FUTURE)
        if event is None:
            break
        events.append(event)
        box.mark_delivered("a", event["row_id"])

    assert box.recovered_from is None
    assert len(events) >= committed + 1
    for n, event in enumerate(events):  # in order, nothing missing, nothing torn
        assert event["event_key"] == "a%d:raised" % n
        assert event["snapshot_jpeg"] == hashlib.sha256(b"%d" % n).digest() * (100 + n % 50)
        assert event["score"] == n / 1e6
    assert box.pending_count("b") == len(events)
    box.close()


def test_recent_incidents_keep_every_incident_listed_while_one_repeats_ongoing_events(outbox, make_alert):
    from firedetd.status import incident_rows
    from firedetd.types import ESCALATED

    smoke = make_alert(1, kind="smoke", camera="hall")
    outbox.enqueue(smoke, ["hook"])
    escalated = replace(make_alert(1, kind="fire", camera="hall"), state=ESCALATED, event_ns=smoke.event_ns + 5)
    outbox.enqueue(escalated, ["hook"])
    outbox.enqueue(replace(escalated, state=CLEARED, event_ns=smoke.event_ns + 9, snapshot_jpeg=None), ["hook"])
    stuck = make_alert(2, camera="garage")
    outbox.enqueue(stuck, ["hook"])
    for n in range(40):   # a long incident's reminders: 40 events, more than the page used to list
        outbox.enqueue(replace(stuck, state=ONGOING, event_ns=stuck.event_ns + n + 1, snapshot_jpeg=None), ["hook"])
    deliver_head(outbox, "hook")

    assert {e["id"] for e in outbox.recent(20)} == {stuck.id}   # the old list: the hall incident pushed off
    rows = incident_rows(outbox.recent_incidents(20), images=True)
    assert [r["id"] for r in rows] == [stuck.id, smoke.id]
    garage, hall = rows
    assert (garage["ongoing"], garage["cleared_ns"], garage["kind"]) == (40, None, "fire")
    assert (hall["first_kind"], hall["kind"]) == ("smoke", "fire")
    assert hall["escalated_ns"] == smoke.event_ns + 5 and hall["cleared_ns"] == smoke.event_ns + 9
    assert hall["snapshot_url"] and hall["escalation_snapshot_url"] and hall["snapshot_url"] != \
        hall["escalation_snapshot_url"]
    assert hall["deliveries"]["hook"] == {"delivered": 1, "pending": 2, "last_error": None}
    assert len(outbox.recent_incidents(1)) == 2   # the newest incident only: its raised and newest ongoing events
