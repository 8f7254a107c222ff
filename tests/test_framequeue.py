"""firedetd/framequeue.py: latest-wins drops counted, blocking policy for files, fair batching."""

import threading

import numpy as np

from firedetd.framequeue import BLOCK, LATEST, FrameQueues
from firedetd.types import Frame


def frame(camera, seq):
    return Frame(camera=camera, seq=seq, pts_ns=seq, captured_ns=seq, image=np.zeros((2, 2, 3), np.uint8))


def test_latest_policy_keeps_newest_and_counts_drops():
    queues = FrameQueues()
    q = queues.add("a", maxsize=2, policy=LATEST)
    for i in range(10):
        assert q.put(frame("a", i))
    assert len(q) == 2 and q.dropped == 8 and q.accepted == 10
    assert [f.seq for f in queues.take_batch(4, wait_s=0)] == [8]
    assert [f.seq for f in queues.take_batch(4, wait_s=0)] == [9]


def test_latest_put_never_waits_even_when_nobody_reads():
    queues = FrameQueues()
    q = queues.add("a", maxsize=1, policy=LATEST)
    done = threading.Event()

    def produce():
        for i in range(1000):
            q.put(frame("a", i))
        done.set()

    threading.Thread(target=produce, daemon=True).start()
    assert done.wait(10), "a latest-policy put blocked"
    assert len(q) == 1 and q.dropped == 999


def test_block_policy_waits_for_room_and_drops_nothing():
    queues = FrameQueues()
    q = queues.add("file", maxsize=1, policy=BLOCK)
    got = []

    def produce():
        for i in range(20):
            q.put(frame("file", i))

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    while len(got) < 20:
        batch = queues.take_batch(1, wait_s=5)
        assert batch, "producer stalled"
        got.extend(f.seq for f in batch)
        queues.release(len(batch))
    producer.join(5)
    assert got == list(range(20)) and q.dropped == 0


def test_block_policy_put_returns_when_stopped():
    queues = FrameQueues()
    q = queues.add("file", maxsize=1, policy=BLOCK)
    q.put(frame("file", 0))
    stop = threading.Event()
    result = []
    t = threading.Thread(target=lambda: result.append(q.put(frame("file", 1), stop)), daemon=True)
    t.start()
    stop.set()
    t.join(5)
    assert result == [False]


def test_batch_takes_one_frame_per_camera_and_rotates_the_first():
    queues = FrameQueues()
    for name in ("a", "b", "c"):
        queues.add(name, maxsize=1)
    firsts = []
    for round_ in range(3):
        for name in ("a", "b", "c"):
            queues.get(name).put(frame(name, round_))
        batch = queues.take_batch(2, wait_s=0)
        assert len(batch) == 2 and len({f.camera for f in batch}) == 2
        firsts.append(batch[0].camera)
        queues.release(2)
        queues.take_batch(3, wait_s=0)  # empty the leftover
    assert len(set(firsts)) == 3


def test_take_batch_times_out_empty_and_tracks_in_flight():
    queues = FrameQueues()
    queues.add("a")
    assert queues.take_batch(1, wait_s=0.01) == []
    queues.get("a").put(frame("a", 0))
    batch = queues.take_batch(1, wait_s=0)
    assert not queues.empty()  # taken but not yet released
    queues.release(len(batch))
    assert queues.empty()


def test_fill_waits_for_the_other_camera():
    queues = FrameQueues()
    queues.add("a")
    queues.add("b")
    queues.get("a").put(frame("a", 0))
    threading.Timer(0.05, lambda: queues.get("b").put(frame("b", 0))).start()
    batch = queues.take_batch(2, wait_s=1, fill_s=2)
    assert sorted(f.camera for f in batch) == ["a", "b"]
