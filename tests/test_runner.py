"""firedetd/runner.py: frames the signal gate rejected skip the engine; tiles go through it beside their frame.

The engine here is a stand-in that reads the image it is given (its mean brightness becomes the fire logit), so
which image reached it, and in what batch, can be told from the answer; no model is needed for that."""

import queue

import numpy as np

from firedetd.config import ModelConfig
from firedetd.framequeue import FrameQueues
from firedetd.metrics import Metrics
from firedetd.runner import EngineRunner, combine_views
from firedetd.signal_quality import DARK, SignalReading
from firedetd.types import Frame


class BrightnessEngine(object):
    """Fire logit = the image's mean (normalised), smoke and none fixed; records every batch size."""

    name, provider = "stand-in", "test"

    def __init__(self, max_batch):
        self.max_batch = max_batch
        self.batches = []

    def infer(self, batch):
        assert len(batch) <= self.max_batch
        self.batches.append(len(batch))
        fire = batch.mean(axis=(1, 2, 3)) * 4.0
        return np.stack([fire, np.zeros(len(batch)), np.zeros(len(batch))], axis=1).astype(np.float32)

    def close(self):
        pass


def frame(seq, level, tiles=None, reason=None):
    image = np.full((224, 224, 3), level, np.uint8)
    signal = SignalReading(reason, float(level), 0.0, None)
    return Frame("cam", seq, seq, 0, image, signal=signal, tiles=tiles)


def runner_with(spec, engine):
    predictions = queue.Queue()
    runner = EngineRunner(lambda: engine, spec, ModelConfig(), FrameQueues(), predictions, Metrics())
    runner.engine = engine
    return runner, predictions


def drain(predictions):
    out = []
    while not predictions.empty():
        out.append(predictions.get_nowait())
    return out


def test_an_unusable_frame_never_reaches_the_engine_but_is_handed_on(spec):
    engine = BrightnessEngine(max_batch=4)
    runner, predictions = runner_with(spec, engine)
    runner.decide([frame(0, 10, reason=DARK), frame(1, 200)])
    out = drain(predictions)
    assert engine.batches == [1]
    assert [p.probs is None for p in out] == [True, False] and out[0].frame.seq == 0


def test_tiles_are_decided_with_their_frame_and_a_fire_in_one_tile_is_the_frames(spec):
    engine = BrightnessEngine(max_batch=2)
    runner, predictions = runner_with(spec, engine)
    tiles = np.zeros((4, 224, 224, 3), np.uint8)
    tiles[2] = 255                       # the bright tile: the fire seen small in a wide view
    runner.decide([frame(0, 30, tiles=tiles), frame(1, 30)])
    tiled, plain = [p.probs for p in drain(predictions)]
    assert sum(engine.batches) == 6 and max(engine.batches) <= 2     # 5 views + 1 frame, in batches of 2
    assert tiled[0] > plain[0] and tiled[2] < plain[2]               # the tile's fire, not the whole view's


def test_combining_views_takes_the_highest_alarm_and_the_lowest_none():
    rows = np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1], [0.05, 0.6, 0.35]])
    assert combine_views(rows, 2) == (0.8, 0.6, 0.1)


class MapEngine(BrightnessEngine):
    """BrightnessEngine with a class activation map: each image's brightness in the fire map's cell (row, col)
    = (its level // 40, 0), so which view's map came back with which frame can be told from the map."""

    def infer_with_map(self, batch):
        logits = self.infer(batch)
        cams = np.zeros((len(batch), 3, 7, 7), np.float32)
        levels = np.rint(batch[:, 0, 0, 0] * 128.0 + 128.0).astype(int)   # undo the shipped spec's (x - 128) / 128
        for i, level in enumerate(levels):
            cams[i, 0, min(6, level // 40), 0] = 1.0
        return logits, cams


def test_the_map_of_each_frames_whole_view_travels_with_its_prediction(spec):
    import dataclasses

    from firedetd.modelspec import MapSpec

    engine = MapEngine(max_batch=2)
    runner, predictions = runner_with(dataclasses.replace(spec, cam=MapSpec("cam", 7, 7)), engine)
    tiles = np.full((4, 224, 224, 3), 250, np.uint8)   # tiles bright, the whole view dark: the map is the view's
    runner.decide([frame(0, 45, tiles=tiles), frame(1, 130), frame(2, 200, reason=DARK)])
    out = drain(predictions)
    assert [int(np.argmax(p.cam[0, :, 0])) for p in out[:2]] == [1, 3]
    assert out[2].cam is None and out[2].probs is None


def test_a_spec_without_a_map_never_asks_the_engine_for_one(spec):
    import dataclasses

    engine = MapEngine(max_batch=2)
    engine.infer_with_map = None   # would fail if called
    runner, predictions = runner_with(dataclasses.replace(spec, cam=None), engine)
    runner.decide([frame(0, 45)])
    assert drain(predictions)[0].cam is None
