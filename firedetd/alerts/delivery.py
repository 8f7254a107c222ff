"""One delivery thread per sink: feeds the sink the outbox's events strictly in order, retrying each one with
exponential backoff and jitter until the sink accepts it. Nothing is ever dropped here.

A failed event blocks the events behind it on the same sink (head-of-line), so a receiver sees each incident's
raised/ongoing/cleared events in order. Non-retryable failures (a 4xx: bad token, wrong URL) are retried too,
at the longest delay, and counted apart so an operator sees that the receiver needs fixing. Deliveries are
at-least-once: if the process dies between the sink's answer and the outbox's record of it, the event is sent
again with the same idempotency key.
"""

import logging
import random
import threading
from typing import Callable, Dict, Optional, Union

from ..clock import wall_ns
from ..config import OutboxConfig
from ..errors import OutboxError, SinkError

log = logging.getLogger(__name__)

_MAX_DOUBLINGS = 32  # beyond this the delay is retry_max_s anyway; keeps 2**n a small number


class DeliveryStats:
    """Counters of one sink's deliveries, written by its thread and read (`snapshot()`) by the metrics exporter,
    with optional hooks called as things happen: `on_delivered(count)` and `on_failed(reason)` (e.g. the `inc`
    of Prometheus counters)."""

    def __init__(self, on_delivered: Optional[Callable[[int], None]] = None,
                 on_failed: Optional[Callable[[str], None]] = None) -> None:
        self.on_delivered = on_delivered
        self.on_failed = on_failed
        self._lock = threading.Lock()
        self.delivered = 0
        self.failures: Dict[str, int] = {}  # failed attempts by reason (timeout, connection, http_5xx, ...)
        self.non_retryable = 0              # failed attempts the sink called permanent (still retried)
        self.errors = 0                     # unexpected exceptions: a sink bug, an unwritable outbox
        self.consecutive_failures = 0
        self.last_success_ns: Optional[int] = None
        self.last_error = ""
        self.last_error_ns: Optional[int] = None

    def record_delivered(self, now_ns: int) -> None:
        """Count one accepted event."""
        with self._lock:
            self.delivered += 1
            self.consecutive_failures = 0
            self.last_success_ns = now_ns
        if self.on_delivered is not None:
            self.on_delivered(1)

    def record_failure(self, reason: str, message: str, retryable: bool, now_ns: int) -> None:
        """Count one failed attempt of the sink."""
        with self._lock:
            self.failures[reason] = self.failures.get(reason, 0) + 1
            if not retryable:
                self.non_retryable += 1
            self.consecutive_failures += 1
            self.last_error = message
            self.last_error_ns = now_ns
        if self.on_failed is not None:
            self.on_failed(reason)

    def record_error(self, reason: str, message: str, now_ns: int) -> None:
        """Count one unexpected exception of the delivery loop (`reason`: outbox or exception)."""
        with self._lock:
            self.errors += 1
            self.last_error = message
            self.last_error_ns = now_ns
        if self.on_failed is not None:
            self.on_failed(reason)

    def snapshot(self) -> dict:
        """A consistent copy of the counters."""
        with self._lock:
            return {"delivered": self.delivered, "failures": dict(self.failures),
                    "non_retryable": self.non_retryable, "errors": self.errors,
                    "consecutive_failures": self.consecutive_failures, "last_success_ns": self.last_success_ns,
                    "last_error": self.last_error, "last_error_ns": self.last_error_ns}


class DeliveryThread(threading.Thread):
    """Delivers one sink's pending outbox events in order; `wake()` after an enqueue, `stop()` to end.

    `outbox_config` (OutboxConfig, `alerts.outbox`) gives the retry delays. `stats` is a DeliveryStats, or a
    dict of hooks {"delivered": f(count), "failed": f(reason)} to build one with.
    """

    def __init__(self, sink, outbox, outbox_config: Optional[OutboxConfig] = None,
                 stats: Union[DeliveryStats, Dict[str, Callable], None] = None, idle_poll_s: float = 5.0,
                 rng: Optional[random.Random] = None) -> None:
        super().__init__(name="deliver-%s" % sink.name)
        # a request hung in the sink must not keep the process alive at exit; stop() is the clean way out
        self.daemon = True
        self.sink = sink
        self.outbox = outbox
        outbox_config = outbox_config or OutboxConfig()
        self.retry_initial_s = outbox_config.retry_initial_s
        self.retry_max_s = max(outbox_config.retry_max_s, outbox_config.retry_initial_s)
        if isinstance(stats, dict):
            stats = DeliveryStats(on_delivered=stats.get("delivered"), on_failed=stats.get("failed"))
        self.stats = stats if stats is not None else DeliveryStats()
        self.idle_poll_s = idle_poll_s  # a safety net: enqueuers call wake(), so this is rarely what wakes us
        self._rng = rng or random.Random()
        self._stop_event = threading.Event()
        self._wake_event = threading.Event()
        self._logged_error = None
        self._loop_failures = 0
        # events the sink accepted whose "delivered" mark could not be written yet (a full disk): marked again,
        # never sent again (a receiver would otherwise get the same event every retry until the disk has room)
        self._accepted_unmarked = set()

    def wake(self) -> None:
        """Look at the outbox now (call after enqueueing)."""
        self._wake_event.set()

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Ask the thread to end, even mid-backoff, and wait up to `timeout`; True when it has ended.

        A request already in flight is not interrupted: it ends within the sink's own timeout.
        """
        self._stop_event.set()
        self._wake_event.set()
        if self.ident is not None:
            self.join(timeout)
        return not self.is_alive()

    def run(self) -> None:
        """The delivery loop (Thread.run): look, deliver or wait, until stopped."""
        log.debug("delivery to %s started", self.sink.name)
        while not self._stop_event.is_set():
            # cleared before looking, so a wake() during the look is not lost
            self._wake_event.clear()
            try:
                wait_s = self.deliver_next()
                self._loop_failures = 0
            except Exception as e:  # the thread must outlive any failure; it is counted and logged
                wait_s = self._after_unexpected_error(e)
            if wait_s > 0:
                self._wake_event.wait(wait_s)
        log.debug("delivery to %s stopped", self.sink.name)

    def deliver_next(self) -> float:
        """Try the sink's oldest pending event once if it is due; return seconds to wait before looking again."""
        now = wall_ns()
        event = self.outbox.next_pending(self.sink.name, now)
        if event is None:
            due = self.outbox.head_due_ns(self.sink.name)
            if due is None:
                return self.idle_poll_s
            wait_s = (due - now) / 1e9
            if wait_s <= self.retry_max_s + 1:
                return max(wait_s, 0.001)
            # a retry time further away than any backoff: the wall clock stepped back (NTP after a cold boot)
            event = self.outbox.next_pending(self.sink.name, due)
            if event is None:
                return self.idle_poll_s
        self._attempt(event)
        return 0.0

    def backoff_s(self, attempts: int, retryable: bool = True, retry_after_s: Optional[float] = None) -> float:
        """Delay before the next try of an event that failed `attempts` times before this failure."""
        if retryable:
            ceiling = min(self.retry_max_s, self.retry_initial_s * 2 ** min(attempts, _MAX_DOUBLINGS))
            # full jitter, floored at the first delay so a failing receiver is never hammered
            delay = self._rng.uniform(self.retry_initial_s, ceiling)
        else:
            delay = self._rng.uniform(self.retry_max_s / 2.0, self.retry_max_s)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.retry_max_s))
        return delay

    def _attempt(self, event):
        row_id = event["row_id"]
        if row_id not in self._accepted_unmarked:
            try:
                self.sink.deliver(event)
            except Exception as e:  # a sink bug must not lose the event: it is retried like a failure
                self._record_failure(event, e)
                return
            self._accepted_unmarked.add(row_id)
        self.outbox.mark_delivered(self.sink.name, row_id)   # an OutboxError here: the loop retries the mark
        self._accepted_unmarked.discard(row_id)
        now = wall_ns()
        self.stats.record_delivered(now)
        if self._logged_error is not None:
            log.info("delivery to %s works again (%s delivered after %d attempts)", self.sink.name,
                     event["event_key"], event["attempts"] + 1)
            self._logged_error = None

    def _record_failure(self, event, error):
        is_sink_error = isinstance(error, SinkError)
        if is_sink_error:
            retryable, reason, retry_after_s = error.retryable, error.reason or "sink_error", error.retry_after_s
        else:   # a bug in the sink: retried like a passing failure, and logged with its traceback below
            retryable, reason, retry_after_s = True, "exception", None
        delay = self.backoff_s(event["attempts"], retryable, retry_after_s)
        now = wall_ns()
        self.stats.record_failure(reason, str(error), retryable, now)
        key = (reason, str(error))
        if key != self._logged_error:
            self._logged_error = key
            kind = "" if retryable else " (permanent until the receiver is fixed; still retried every few minutes)"
            log.warning("delivery of %s to %s failed%s: %s; retrying in %.1f s", event["event_key"], self.sink.name,
                        kind, error, delay, exc_info=not is_sink_error)
        self.outbox.mark_failed(self.sink.name, event["row_id"], str(error), now + int(delay * 1e9))

    def _after_unexpected_error(self, error):
        self._loop_failures += 1
        self.stats.record_error("outbox" if isinstance(error, OutboxError) else "exception", str(error), wall_ns())
        key = ("loop", type(error).__name__, str(error))
        if key != self._logged_error:
            self._logged_error = key
            log.error("delivery to %s: %s; retrying", self.sink.name, error,
                      exc_info=not isinstance(error, OutboxError))
        return self.backoff_s(self._loop_failures - 1)
