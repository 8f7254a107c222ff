"""Bounded per-camera frame queues between capture threads and the engine runner.

Live sources use the `latest` policy: `put` never blocks the capture thread; when the queue is full
the oldest frame is dropped and counted, so latency cannot grow however slow the engine is. Files
read faster than real time use the `block` policy instead (back-pressure on the decoder), so every
frame of a recording is decided and nothing is decoded in vain.

All queues share one condition variable so the runner can wait for "any camera has a frame" and
batch the newest frame of each camera into one engine call.
"""

import collections
import threading

from .clock import monotonic_ns

LATEST = "latest"
BLOCK = "block"


class FrameQueue(object):
    """One camera's queue; create through FrameQueues.add()."""

    def __init__(self, camera, maxsize, policy, condition):
        self.camera = camera
        self.maxsize = maxsize
        self.policy = policy
        self._frames = collections.deque()
        self._cond = condition
        self.dropped = 0
        self.accepted = 0

    def put(self, frame, stop_event=None):
        """Queue a frame. `latest`: drop the oldest if full (never waits). `block`: wait for room or stop."""
        with self._cond:
            if self.policy == BLOCK:
                while len(self._frames) >= self.maxsize:
                    if stop_event is not None and stop_event.is_set():
                        return False
                    self._cond.wait(0.1)
            elif len(self._frames) >= self.maxsize:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self.accepted += 1
            self._cond.notify_all()
            return True

    def count_dropped(self, count):
        """Frames the source itself skipped to deliver the newest: dropped for the same reason as ours."""
        with self._cond:
            self.dropped += count

    def _pop(self):
        return self._frames.popleft() if self._frames else None

    def __len__(self):
        return len(self._frames)


class FrameQueues(object):
    """The set of camera queues the runner reads from, with fair batching across cameras."""

    def __init__(self):
        self._cond = threading.Condition()
        self._queues = collections.OrderedDict()
        self._next_start = 0
        self.in_flight = 0  # frames taken by the runner whose predictions are not yet queued

    def add(self, camera, maxsize=1, policy=LATEST):
        with self._cond:
            queue = FrameQueue(camera, maxsize, policy, self._cond)
            self._queues[camera] = queue
            return queue

    def remove(self, camera):
        with self._cond:
            self._queues.pop(camera, None)
            self._cond.notify_all()

    def get(self, camera):
        return self._queues.get(camera)

    def depths(self):
        with self._cond:
            return {name: len(q) for name, q in self._queues.items()}

    def wake(self):
        """Wake a runner waiting in take_batch (used when stopping)."""
        with self._cond:
            self._cond.notify_all()

    def take_batch(self, max_batch, wait_s, fill_s=0.0):
        """Up to `max_batch` frames, at most one per camera, starting with a rotating camera for fairness.

        Waits up to `wait_s` for any frame; then, with several cameras, up to `fill_s` more for the
        others so one engine call serves them all. Returns [] on timeout.
        """
        deadline = monotonic_ns() + int(wait_s * 1e9)
        with self._cond:
            while not self._any_ready():
                remaining = (deadline - monotonic_ns()) / 1e9
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            if fill_s > 0 and len(self._queues) > 1:
                fill_deadline = monotonic_ns() + int(fill_s * 1e9)
                while self._ready_count() < min(max_batch, len(self._queues)):
                    remaining = (fill_deadline - monotonic_ns()) / 1e9
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            batch = self._pop_round_robin(max_batch)
            self.in_flight += len(batch)
            self._cond.notify_all()  # room for blocked (file) producers
            return batch

    def release(self, count):
        """The runner has passed on `count` frames taken by take_batch."""
        with self._cond:
            self.in_flight -= count

    def empty(self):
        """No frame queued or being decided."""
        with self._cond:
            return self.in_flight == 0 and not self._any_ready()

    def _any_ready(self):
        return any(len(q) for q in self._queues.values())

    def _ready_count(self):
        return sum(1 for q in self._queues.values() if len(q))

    def _pop_round_robin(self, max_batch):
        queues = list(self._queues.values())
        if not queues:
            return []
        start = self._next_start % len(queues)
        self._next_start = start + 1
        batch = []
        for queue in queues[start:] + queues[:start]:
            if len(batch) >= max_batch:
                break
            frame = queue._pop()
            if frame is not None:
                batch.append(frame)
        return batch
