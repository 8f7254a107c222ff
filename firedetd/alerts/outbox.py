"""The durable alert outbox: one SQLite file in the state dir that holds every alert event until each sink
has accepted it, so a crash, a reboot or a receiver that is down for a day loses nothing.

Layout (schema version 1, `PRAGMA user_version`):
- `events`: one row per alert event, in enqueue order (`id`), unique on the alert's `event_key`, the alert's
  fields as JSON (all but the snapshot);
- `snapshots`: the event's JPEG, apart from the event so that dropping it is one DELETE;
- `deliveries`: one row per (event, sink): pending while `delivered_ns` is NULL, with attempts, the last error
  and the wall-clock time of the next attempt;
- `counters`: totals that outlive pruned rows (delivered, snapshots_dropped, ...).

Each sink is fed strictly in enqueue order: `next_pending` returns the oldest undelivered event of a sink,
or None while that event waits for its retry time (head-of-line: nothing later goes first).

Size cap (`max_bytes`, the pages in use; the WAL adds up to a few MiB between checkpoints): when an enqueue
leaves the database above the cap, space is freed in this order, oldest first, until it fits:
  1. snapshots of events every sink has received;
  2. snapshots of events some sink still waits for;
  3. delivered events (the status page's history).
An undelivered event is never deleted: when only those remain the outbox grows past the cap, says so once
in the log, and the disk is the limit. Freed pages go back to the file system by incremental vacuum.

Durability: WAL with synchronous=FULL. Alerts are rare (a handful per incident, never per frame), so one
fsync per commit costs nothing measurable, and a fire is just when the power is likely to go: with NORMAL,
the last commits before a power cut may be lost, and that would be the `raised` event.

Threads: one `Outbox` object is shared by the postprocessor and every delivery thread; it opens one
connection per thread (thread-local), as sqlite3 connections must not be used by two threads at once. WAL
lets readers run beside the single writer; writers wait for each other up to `busy_timeout`.

Failures: any write the disk refuses (full, read-only, I/O error) raises OutboxError naming the file and the
cause; `OutboxWriter` keeps such alerts in memory and writes them once the disk takes them again. A corrupt
file found at open is moved aside to `<name>.corrupt-<UTC time>` (with its -wal and -shm) and a fresh one
is started; `recovered_from` names the moved file.

SQLite features are limited to 3.22 (Ubuntu 18.04 / JetPack 4.6): no UPSERT, no RETURNING.
"""

import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..clock import wall_ns
from ..errors import OutboxError
from ..types import Alert

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000
ALERT_FIELDS = ("id", "camera", "kind", "state", "started_ns", "event_ns", "score", "peak_score", "frame_seq",
                "latency_ms", "model")
_INT_FIELDS = ("started_ns", "event_ns", "frame_seq")
_FLOAT_FIELDS = ("score", "peak_score", "latency_ms")
# rough bytes a deleted event row frees besides its snapshot (JSON + keys + delivery rows)
_EVENT_ROW_BYTES = 600

_SCHEMA = (
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_key TEXT NOT NULL UNIQUE,
        enqueued_ns INTEGER NOT NULL,
        payload TEXT NOT NULL,
        snapshot_bytes INTEGER,
        snapshot_dropped INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE snapshots (
        event_id INTEGER PRIMARY KEY,
        jpeg BLOB NOT NULL)""",
    """CREATE TABLE deliveries (
        event_id INTEGER NOT NULL,
        sink TEXT NOT NULL,
        delivered_ns INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ns INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        PRIMARY KEY (event_id, sink)) WITHOUT ROWID""",
    "CREATE INDEX deliveries_pending ON deliveries (sink, event_id) WHERE delivered_ns IS NULL",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
)

_PENDING_EVENT = "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = %s AND d.delivered_ns IS NULL)"


class Outbox:
    """The durable queue of alert events between the postprocessor and the sinks (see the module docstring)."""

    def __init__(self, path: str, max_bytes: int = 64 << 20, keep_delivered_s: float = 24 * 3600.0) -> None:
        self.path = os.path.abspath(path)
        self.max_bytes = int(max_bytes)
        self.keep_delivered_s = float(keep_delivered_s)
        self.recovered_from: Optional[str] = None
        self._local = threading.local()
        self._connections = []  # (thread, connection) pairs, so close() and dead threads can release them
        self._connections_lock = threading.Lock()
        self._closed = False
        self._over_cap_logged = False
        self._prepare_file()

    # ---- opening, checking, recovering

    def _prepare_file(self):
        directory = os.path.dirname(self.path)
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory)
            if not os.path.exists(self.path):
                # snapshots are pictures of people's premises: owner-only; SQLite gives -wal/-shm the same mode
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as e:
            raise OutboxError("outbox %s: cannot create it (%s)" % (self.path, e.strerror or e)) from e
        try:
            self._check_and_migrate()
        except sqlite3.OperationalError as e:
            raise OutboxError("outbox %s: cannot open it (%s)" % (self.path, e)) from e
        except _CorruptDatabase as e:
            self._move_aside(str(e))
        except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
            self._move_aside(str(e))

    def _check_and_migrate(self):
        conn = self._open_connection()
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise _CorruptDatabase("quick_check: %s" % _first_problems(result))
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxError("outbox %s: schema version %d is newer than this firedetd's (%d); move the file "
                                  "away or upgrade firedetd" % (self.path, version, SCHEMA_VERSION))
            if version == 0:
                self._create_schema(conn)
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()

    def _create_schema(self, conn):
        # auto_vacuum can only be chosen before the first table exists
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)
        conn.execute("COMMIT")

    def _move_aside(self, cause):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = "%s.corrupt-%s" % (self.path, stamp)
        n = 1
        while os.path.exists(target):
            n += 1
            target = "%s.corrupt-%s-%d" % (self.path, stamp, n)
        try:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(self.path + suffix):
                    os.rename(self.path + suffix, target + suffix)
        except OSError as e:
            raise OutboxError("outbox %s is corrupt (%s) and cannot be moved aside (%s)" % (
                self.path, cause, e.strerror or e)) from e
        log.error("outbox %s is corrupt (%s): moved it to %s and started a new one; undelivered alerts "
                  "in it will not be sent", self.path, cause, target)
        self.recovered_from = target
        self._prepare_file()

    def _open_connection(self):
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000.0, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = %d" % BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA synchronous = FULL")
        # the WAL is truncated back to this size after each checkpoint instead of keeping its peak size
        conn.execute("PRAGMA journal_size_limit = %d" % (4 << 20))
        return conn

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise OutboxError("outbox %s: used after close()" % self.path)
        try:
            conn = self._open_connection()
        except sqlite3.Error as e:
            raise OutboxError("outbox %s: cannot open it (%s)" % (self.path, e)) from e
        with self._connections_lock:
            self._release_dead_threads_connections()
            self._connections.append((threading.current_thread(), conn))
        self._local.conn = conn
        return conn

    def _release_dead_threads_connections(self):
        alive = []
        for thread, conn in self._connections:
            if thread.is_alive():
                alive.append((thread, conn))
            else:
                conn.close()
        self._connections = alive

    def close(self):
        """Close every thread's connection; call after the threads using the outbox have stopped."""
        with self._connections_lock:
            self._closed = True
            for _, conn in self._connections:
                conn.close()
            self._connections = []

    # ---- transactions and error translation

    @contextmanager
    def _sqlite_errors(self, action):
        try:
            yield
        except sqlite3.Error as e:
            raise OutboxError("outbox %s: %s failed: %s%s" % (self.path, action, e, _hint(e))) from e

    @contextmanager
    def _write(self, action):
        """One IMMEDIATE transaction: taking the write lock up front avoids a deadlock-prone lock upgrade."""
        with self._sqlite_errors(action):
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (e.g. after SQLITE_FULL)
                    conn.execute("ROLLBACK")
                raise

    # ---- the queue

    def enqueue(self, alert: Alert, sink_names: Sequence[str]) -> int:
        """Store an alert event and one pending delivery per sink in one transaction; return the event's row id.

        Idempotent on `alert.event_key`: the same event enqueued again is stored once.
        """
        payload = json.dumps(alert_payload(alert), sort_keys=True)
        snapshot = alert.snapshot_jpeg
        with self._write("enqueue %s" % alert.event_key) as conn:
            row = conn.execute("SELECT id FROM events WHERE event_key = ?", (alert.event_key,)).fetchone()
            if row is not None:
                event_id = row[0]
            else:
                event_id = conn.execute(
                    "INSERT INTO events (event_key, enqueued_ns, payload, snapshot_bytes) VALUES (?, ?, ?, ?)",
                    (alert.event_key, wall_ns(), payload, len(snapshot) if snapshot else None)).lastrowid
                if snapshot:
                    conn.execute("INSERT INTO snapshots (event_id, jpeg) VALUES (?, ?)",
                                 (event_id, sqlite3.Binary(snapshot)))
            conn.executemany("INSERT OR IGNORE INTO deliveries (event_id, sink) VALUES (?, ?)",
                             [(event_id, sink) for sink in sink_names])
        try:
            self.enforce_cap()
        except OutboxError as e:  # the event itself is committed: the cap is tried again at the next enqueue
            log.warning("%s", e)
        return event_id

    def next_pending(self, sink: str, now_ns: int) -> Optional[dict]:
        """The oldest undelivered event for `sink`, or None when there is none or it waits for its retry time.

        The dict holds the alert's fields (`ALERT_FIELDS`), `event_key`, `row_id`, `enqueued_ns`, `attempts`,
        `last_error`, `snapshot_jpeg` (bytes or None) and `snapshot_dropped` (bool).
        """
        with self._sqlite_errors("read next event for sink %s" % sink):
            row = self._conn().execute(
                "SELECT e.id, e.event_key, e.enqueued_ns, e.payload, e.snapshot_dropped, d.attempts, d.last_error, "
                "d.next_attempt_ns, s.jpeg FROM deliveries d JOIN events e ON e.id = d.event_id "
                "LEFT JOIN snapshots s ON s.event_id = e.id "
                "WHERE d.sink = ? AND d.delivered_ns IS NULL ORDER BY d.event_id LIMIT 1", (sink,)).fetchone()
        if row is None or row[7] > now_ns:
            return None
        event = json.loads(row[3])
        event.update(row_id=row[0], event_key=row[1], enqueued_ns=row[2], snapshot_dropped=bool(row[4]),
                     attempts=row[5], last_error=row[6], snapshot_jpeg=bytes(row[8]) if row[8] is not None else None)
        return event

    def head_due_ns(self, sink: str) -> Optional[int]:
        """When the oldest undelivered event of `sink` may be tried next (wall-clock ns), or None if none waits."""
        with self._sqlite_errors("read next attempt time for sink %s" % sink):
            row = self._conn().execute(
                "SELECT next_attempt_ns FROM deliveries WHERE sink = ? AND delivered_ns IS NULL "
                "ORDER BY event_id LIMIT 1", (sink,)).fetchone()
        return None if row is None else row[0]

    def mark_delivered(self, sink: str, row_id: int) -> None:
        """Record that `sink` accepted event `row_id`."""
        with self._write("mark event %d delivered to %s" % (row_id, sink)) as conn:
            changed = conn.execute("UPDATE deliveries SET delivered_ns = ?, attempts = attempts + 1, "
                                   "last_error = NULL WHERE event_id = ? AND sink = ? AND delivered_ns IS NULL",
                                   (wall_ns(), row_id, sink)).rowcount
            _add_counter(conn, "delivered", changed)

    def mark_failed(self, sink: str, row_id: int, error: str, retry_at_ns: int) -> None:
        """Record a failed attempt of `sink` on event `row_id`; it is tried again at `retry_at_ns` (wall clock)."""
        with self._write("mark event %d failed on %s" % (row_id, sink)) as conn:
            conn.execute("UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_ns = ? "
                         "WHERE event_id = ? AND sink = ? AND delivered_ns IS NULL",
                         (str(error)[:500], int(retry_at_ns), row_id, sink))

    def forget_sink(self, sink: str) -> int:
        """Drop the pending deliveries of a sink that left the config (they would pin their events forever)."""
        with self._write("forget sink %s" % sink) as conn:
            return conn.execute("DELETE FROM deliveries WHERE sink = ? AND delivered_ns IS NULL", (sink,)).rowcount

    # ---- status and metrics

    def pending_count(self, sink: Optional[str] = None) -> int:
        """Undelivered events of one sink, or undelivered (event, sink) pairs of all sinks."""
        with self._sqlite_errors("count pending events"):
            if sink is None:
                return self._conn().execute("SELECT COUNT(*) FROM deliveries WHERE delivered_ns IS NULL").fetchone()[0]
            return self._conn().execute("SELECT COUNT(*) FROM deliveries WHERE sink = ? AND delivered_ns IS NULL",
                                        (sink,)).fetchone()[0]

    def sinks(self) -> List[str]:
        """Every sink name that has pending deliveries (configured or not)."""
        with self._sqlite_errors("list sinks"):
            rows = self._conn().execute("SELECT DISTINCT sink FROM deliveries WHERE delivered_ns IS NULL").fetchall()
        return sorted(r[0] for r in rows)

    def counts(self, sink_names: Iterable[str] = ()) -> dict:
        """Figures for metrics: pending and oldest pending enqueue time per sink (zero for each of `sink_names`),
        events stored, delivered (total), snapshots_dropped (total), events_pruned (total) and bytes in use."""
        pending: Dict[str, int] = {name: 0 for name in sink_names}
        oldest: Dict[str, int] = {}
        with self._sqlite_errors("count events"):
            conn = self._conn()
            for sink, count, first in conn.execute(
                    "SELECT d.sink, COUNT(*), MIN(e.enqueued_ns) FROM deliveries d JOIN events e ON e.id = d.event_id "
                    "WHERE d.delivered_ns IS NULL GROUP BY d.sink"):
                pending[sink] = count
                oldest[sink] = first
            counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
            events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            used = _used_bytes(conn)
        return {"pending": pending, "oldest_pending_ns": oldest, "events": events, "bytes": used,
                "delivered": counters.get("delivered", 0), "snapshots_dropped": counters.get("snapshots_dropped", 0),
                "events_pruned": counters.get("events_pruned", 0)}

    def recent(self, limit: int = 50) -> List[dict]:
        """The newest events, newest first, each with its alert fields, `row_id`, `event_key`, `enqueued_ns`,
        `snapshot_bytes`, `snapshot_dropped`, and `deliveries`: {sink: {delivered_ns, attempts, last_error,
        next_attempt_ns}} for the status page."""
        with self._sqlite_errors("list recent events"):
            conn = self._conn()
            rows = conn.execute("SELECT id, event_key, enqueued_ns, payload, snapshot_bytes, snapshot_dropped "
                                "FROM events ORDER BY id DESC LIMIT ?", (int(limit),)).fetchall()
            return [_event_with_deliveries(conn, row) for row in rows]

    def recent_incidents(self, limit: int = 20) -> List[Tuple[dict, int]]:
        """The `limit` incidents with the newest events, as (event, ongoing_count) pairs, newest event first:
        each incident's raised, escalated and cleared events and its newest ongoing one (fields as in recent()),
        with how many ongoing events it sent. A camera whose alert keeps flapping or repeating cannot push the
        other incidents off the page this way, as it did with a plain list of the last events."""
        with self._sqlite_errors("list recent incidents"):
            conn = self._conn()
            wanted, keep, ongoing = [], [], {}
            # keys only: a scan of the whole table is a few thousand short strings, no payloads
            for row_id, key in conn.execute("SELECT id, event_key FROM events ORDER BY id DESC"):
                incident, _, state = key.rpartition(":")
                if incident not in ongoing:
                    if len(wanted) == limit:
                        continue
                    wanted.append(incident)
                    ongoing[incident] = 0
                if state.startswith("ongoing"):
                    ongoing[incident] += 1
                    if ongoing[incident] > 1:
                        continue   # older reminders only count
                keep.append(row_id)
            if not keep:
                return []
            # at most 4 rows per incident: well under SQLite's 999 bound parameters
            rows = conn.execute("SELECT id, event_key, enqueued_ns, payload, snapshot_bytes, snapshot_dropped "
                                "FROM events WHERE id IN (%s) ORDER BY id DESC" % ",".join("?" * len(keep)),
                                keep).fetchall()
            return [(_event_with_deliveries(conn, row), ongoing[row[1].rpartition(":")[0]]) for row in rows]

    def size_bytes(self) -> int:
        """Bytes the outbox takes on disk now (database and WAL files)."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:  # no WAL right after a clean close
                pass
        return total

    @property
    def snapshots_dropped(self) -> int:
        """Snapshots dropped so far to keep under the size cap (kept across restarts)."""
        with self._sqlite_errors("read counters"):
            row = self._conn().execute("SELECT value FROM counters WHERE name = 'snapshots_dropped'").fetchone()
        return row[0] if row else 0

    def snapshot(self, row_id: int) -> Optional[bytes]:
        """The snapshot JPEG of event `row_id`, or None (never had one, dropped, or pruned)."""
        with self._sqlite_errors("read snapshot of event %d" % row_id):
            row = self._conn().execute("SELECT jpeg FROM snapshots WHERE event_id = ?", (row_id,)).fetchone()
        return None if row is None else bytes(row[0])

    # ---- housekeeping

    def prune(self, now_ns: int) -> int:
        """Delete events every sink received more than keep_delivered_s before `now_ns`; return how many."""
        cutoff = int(now_ns - self.keep_delivered_s * 1e9)
        with self._write("prune delivered events") as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT e.id FROM events e WHERE NOT " + _PENDING_EVENT % "e.id" + " AND "
                "COALESCE((SELECT MAX(d.delivered_ns) FROM deliveries d WHERE d.event_id = e.id), e.enqueued_ns) < ?",
                (cutoff,))]
            _delete_events(conn, ids)
            _add_counter(conn, "events_pruned", len(ids))
            _return_free_pages(conn)
        return len(ids)

    def enforce_cap(self):
        """Bring the database under max_bytes by the policy of the module docstring; never drops pending events."""
        with self._sqlite_errors("measure size"):
            excess = _used_bytes(self._conn()) - self.max_bytes
        if excess <= 0:
            self._over_cap_logged = False
            return
        with self._write("free space (size cap %d bytes)" % self.max_bytes) as conn:
            excess -= self._drop_snapshots(conn, excess, pending=False)
            if excess > 0:
                excess -= self._drop_snapshots(conn, excess, pending=True)
            if excess > 0:
                excess -= self._drop_delivered_events(conn, excess)
            _return_free_pages(conn)
        if excess > 0 and not self._over_cap_logged:
            self._over_cap_logged = True
            log.warning("outbox %s: above its size cap of %.1f MiB with only undelivered alerts left; they are kept "
                        "(%d pending deliveries)", self.path, self.max_bytes / 1048576.0, self.pending_count())

    def _drop_snapshots(self, conn, excess, pending):
        where = _PENDING_EVENT % "s.event_id"
        rows = conn.execute("SELECT s.event_id, LENGTH(s.jpeg) FROM snapshots s WHERE %s%s ORDER BY s.event_id" % (
            "" if pending else "NOT ", where)).fetchall()
        ids, freed = _oldest_covering(rows, excess)
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            conn.execute("DELETE FROM snapshots WHERE event_id IN (%s)" % marks, chunk)
            conn.execute("UPDATE events SET snapshot_dropped = 1 WHERE id IN (%s)" % marks, chunk)
        _add_counter(conn, "snapshots_dropped", len(ids))
        if ids:
            log.warning("outbox %s: over its size cap; dropped the snapshots of %d %s events", self.path, len(ids),
                        "undelivered" if pending else "delivered")
        return freed

    def _drop_delivered_events(self, conn, excess):
        rows = conn.execute("SELECT e.id, LENGTH(e.payload) + %d FROM events e WHERE NOT %s ORDER BY e.id" % (
            _EVENT_ROW_BYTES, _PENDING_EVENT % "e.id")).fetchall()
        ids, freed = _oldest_covering(rows, excess)
        _delete_events(conn, ids)
        _add_counter(conn, "events_pruned", len(ids))
        if ids:
            log.warning("outbox %s: over its size cap; deleted %d delivered events from the history", self.path,
                        len(ids))
        return freed


def _event_with_deliveries(conn, row):
    row_id, key, enqueued, payload, size, dropped = row
    event = json.loads(payload)
    event.update(row_id=row_id, event_key=key, enqueued_ns=enqueued,
                 snapshot_bytes=None if dropped else size, snapshot_dropped=bool(dropped), deliveries={})
    for sink, delivered, attempts, error, due in conn.execute(
            "SELECT sink, delivered_ns, attempts, last_error, next_attempt_ns FROM deliveries "
            "WHERE event_id = ? ORDER BY sink", (row_id,)):
        event["deliveries"][sink] = {"delivered_ns": delivered, "attempts": attempts,
                                     "last_error": error, "next_attempt_ns": due}
    return event


def read_spilled(path: str) -> List[Alert]:
    """The alerts OutboxWriter.spill wrote to `path` (skipping lines a crash cut short)."""
    import base64

    alerts = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
                if row.get("snapshot_jpeg"):
                    row["snapshot_jpeg"] = base64.b64decode(row["snapshot_jpeg"])
                alerts.append(Alert(**row))
            except (ValueError, TypeError) as e:
                log.error("outbox: skipped a damaged line of %s: %s", path, e)
    return alerts


class OutboxWriter:
    """Enqueues alerts into the outbox for the postprocessor, keeping them in a bounded in-memory backlog while
    the disk refuses writes, and storing them, in order, once it takes them again.

    Its owner calls `flush_backlog()` often (every loop): that is free while the backlog is empty, and after a
    failure the disk is tried again at most every `retry_interval_s`, so a failing SD card is not hammered
    once per frame. When the backlog holds `max_snapshot_bytes` of pictures, newer alerts are kept without
    their snapshot; when it holds `max_alerts`, newer alerts are dropped and counted (`dropped`): the oldest,
    the ones that raised an incident, are the ones kept.
    """

    def __init__(self, outbox: Outbox, sink_names: Sequence[str], max_alerts: int = 1000,
                 max_snapshot_bytes: int = 16 << 20, retry_interval_s: float = 1.0,
                 metrics_error: Optional[Callable[[], None]] = None,
                 on_stored: Optional[Callable[[], None]] = None) -> None:
        self.outbox = outbox
        self.sink_names = tuple(sink_names)
        self.max_alerts = max_alerts
        self.max_snapshot_bytes = max_snapshot_bytes
        self.retry_interval_s = retry_interval_s
        self.metrics_error = metrics_error  # called once per failed write, e.g. a Prometheus counter's inc
        self.on_stored = on_stored  # called after alerts reached the outbox, e.g. to wake the delivery threads
        self.write_errors = 0
        self.snapshots_stripped = 0
        self.dropped = 0
        self.last_error = ""
        self._backlog: List[Alert] = []
        self._backlog_snapshot_bytes = 0
        self._failed_at: Optional[float] = None  # time.monotonic() of the last failed write
        self._lock = threading.Lock()

    @property
    def healthy(self) -> bool:
        """True while nothing waits in memory for the disk."""
        return not self._backlog

    def backlog_size(self) -> int:
        """Alerts waiting in memory for the disk."""
        return len(self._backlog)

    def set_sinks(self, sink_names: Sequence[str]) -> None:
        """The sinks alerts stored from now on are queued for (after a config reload)."""
        with self._lock:
            self.sink_names = tuple(sink_names)

    def enqueue(self, alert: Alert) -> bool:
        """Store `alert` durably behind any older backlog; return True if it (and the backlog) reached the outbox."""
        with self._lock:
            if len(self._backlog) >= self.max_alerts:
                self._flush_when_due()  # the disk may take them again: make room rather than drop this one
            self._keep_in_backlog(alert)
            return self._flush_when_due()

    def flush_backlog(self, force: bool = False) -> bool:
        """Try to store the backlog, in order (if the last failure is older than retry_interval_s, or `force`);
        return True when the backlog is empty."""
        with self._lock:
            if not self._backlog:
                return True
            return self._flush_locked() if force else self._flush_when_due()

    def spill(self, path: str) -> int:
        """Write the alerts still waiting in memory (the disk refused them) to `path`, a file on another file
        system (tmpfs), for the next start to store; return how many. Raises OSError if that fails too."""
        import base64

        with self._lock:
            alerts = list(self._backlog)
        if not alerts:
            return 0
        lines = []
        for alert in alerts:
            row = dict(alert.__dict__)
            row["snapshot_jpeg"] = base64.b64encode(alert.snapshot_jpeg).decode("ascii") if alert.snapshot_jpeg \
                else None
            lines.append(json.dumps(row, sort_keys=True))
        tmp = path + ".part"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return len(alerts)

    def _keep_in_backlog(self, alert):
        if len(self._backlog) >= self.max_alerts:
            self.dropped += 1
            log.error("outbox %s unwritable and %d alerts already wait in memory: dropped %s",
                      self.outbox.path, len(self._backlog), alert.event_key)
            return
        size = len(alert.snapshot_jpeg or b"")
        if size and self._backlog_snapshot_bytes + size > self.max_snapshot_bytes:
            alert = replace(alert, snapshot_jpeg=None)
            self.snapshots_stripped += 1
            size = 0
        self._backlog.append(alert)
        self._backlog_snapshot_bytes += size

    def _flush_when_due(self):
        if self._failed_at is not None and time.monotonic() - self._failed_at < self.retry_interval_s:
            return False
        return self._flush_locked()

    def _flush_locked(self):
        stored_any = False
        while self._backlog:
            alert = self._backlog[0]
            try:
                self.outbox.enqueue(alert, self.sink_names)
            except OutboxError as e:
                self._record_write_error(e)
                break
            self._backlog.pop(0)
            self._backlog_snapshot_bytes -= len(alert.snapshot_jpeg or b"")
            stored_any = True
        if stored_any and self.on_stored is not None:
            self.on_stored()
        if not self._backlog:
            self._failed_at = None
            if self.last_error:
                log.info("outbox %s writable again; the alerts kept in memory are stored", self.outbox.path)
                self.last_error = ""
        return not self._backlog

    def _record_write_error(self, error):
        self.write_errors += 1
        self._failed_at = time.monotonic()
        if self.metrics_error is not None:
            self.metrics_error()
        if str(error) != self.last_error:
            log.error("%s; keeping %d alert(s) in memory and retrying", error, len(self._backlog))
        self.last_error = str(error)


def alert_payload(alert: Alert) -> dict:
    """The alert's fields as plain JSON types (numpy scalars become int/float), without the snapshot."""
    payload = {}
    for name in ALERT_FIELDS:
        value = getattr(alert, name)
        if name in _INT_FIELDS:
            value = int(value)
        elif name in _FLOAT_FIELDS:
            value = float(value)
        payload[name] = value
    if alert.region is not None:   # only models with a class activation map give one; other payloads stay as they were
        payload["region"] = [float(v) for v in alert.region]
    return payload


class _CorruptDatabase(Exception):
    pass


def _first_problems(report, shown=3):
    """SQLite's quick_check report (one problem a line, often hundreds) as one short log-friendly line."""
    problems = [line.strip() for line in report.splitlines() if line.strip() and not line.startswith("***")]
    more = len(problems) - shown
    return "; ".join(problems[:shown]) + (" (and %d more)" % more if more > 0 else "")


def _hint(error):
    text = str(error)
    if "disk is full" in text:
        return " (the disk or the file system quota is full)"
    if "readonly" in text:
        return " (the file or the state directory is read-only)"
    if "disk I/O error" in text:
        return " (the file system refused a read or write: full, over a size limit, or a failing disk)"
    return ""


def _used_bytes(conn):
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * page_size


def _return_free_pages(conn):
    """Give free pages back to the file system (the file shrinks at the next checkpoint)."""
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    while free:
        # Python 3.7+ steps a statement without result columns only once, and each step frees one page
        conn.execute("PRAGMA incremental_vacuum").fetchall()
        left = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if left >= free:
            break
        free = left


def _oldest_covering(rows, excess):
    """The ids of the first rows whose sizes add up to at least `excess`, and that sum."""
    ids, freed = [], 0
    for row_id, size in rows:
        if freed >= excess:
            break
        ids.append(row_id)
        freed += size or 0
    return ids, freed


def _chunks(ids, size=500):
    # SQLite before 3.32 allows at most 999 bound parameters per statement
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def _delete_events(conn, ids):
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for table, column in (("deliveries", "event_id"), ("snapshots", "event_id"), ("events", "id")):
            conn.execute("DELETE FROM %s WHERE %s IN (%s)" % (table, column, marks), chunk)


def _add_counter(conn, name, amount):
    if amount:
        conn.execute("INSERT OR IGNORE INTO counters (name, value) VALUES (?, 0)", (name,))
        conn.execute("UPDATE counters SET value = value + ? WHERE name = ?", (amount, name))
