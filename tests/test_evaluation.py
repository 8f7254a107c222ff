"""`firedetd eval`: the truth readers, the scoring, and a real run of the daemon's pipeline (GStreamer or OpenCV
capture, the shipped ONNX model, the shipped thresholds) over the shared labelled video."""

import json
import os

import pytest
from support.daemon import REPO

from firedetd import cli
from firedetd.errors import ConfigError
from firedetd.evaluation import merge_segments, read_truth, score, verdict_of

VIDEOS = os.path.join(os.path.dirname(REPO), "shared", "data", "video")
SYNTHETIC = os.path.join(VIDEOS, "synthetic_fire_smoke_40s.mp4")


def test_a_truth_csv_without_the_frame_columns_is_named(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("second,label\n0,none\n")
    with pytest.raises(ConfigError, match="truth.csv: truth CSV lacks column\\(s\\) first_frame, last_frame"):
        read_truth(str(path), None, 0)


def test_a_furg_xml_marks_frames_with_boxes_fire_and_the_rest_none(tmp_path):
    path = tmp_path / "clip.xml"
    path.write_text("<?xml version='1.0'?><opencv_storage><frames>"
                    "<_><frameNumber>0</frameNumber><annotations></annotations></_>"
                    "<_><frameNumber>1</frameNumber><annotations><_>1 2 3 4</_></annotations></_>"
                    "<_><frameNumber>2</frameNumber><annotations><_>1 2 3 4</_></annotations></_>"
                    "</frames></opencv_storage>")
    assert read_truth(str(path), None, 0) == [(0, 0, "none"), (1, 2, "fire")]


def test_scoring_times_each_event_from_its_first_frame_and_counts_alerts_in_none_as_false():
    segments = merge_segments([(0, 24, "none"), (25, 49, "fire"), (50, 74, "fire"), (75, 99, "none")])
    report = score(segments, [(30, "smoke"), (40, "fire"), (80, "smoke")], fps=25.0, frames_seen=100)
    (event,) = report["events"]
    assert (event["first_frame"], event["last_frame"]) == (25, 74)
    assert event["time_to_any_alert_s"] == 0.2 and event["time_to_alert_s"] == 0.6
    assert [f["frame"] for f in report["false_alerts"]] == [80]
    assert report["false_alerts_per_hour"] == 900.0  # one in 4 s
    assert verdict_of(event, 0.1) == "SLOW" and verdict_of(event, 2.0) == "ok"
    assert verdict_of(dict(event, time_to_any_alert_s=None), 2.0) == "MISSED"


def test_the_shipped_model_alerts_within_two_seconds_on_the_labelled_video_and_never_falsely(capsys):
    if not os.path.isfile(SYNTHETIC):
        pytest.skip("../shared/data/video is not beside this checkout")
    code = cli.main(["eval", "--video", SYNTHETIC, "--truth", SYNTHETIC.replace(".mp4", ".frames.csv"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(e["label"], e["start_s"]) for e in report["events"]] == [("fire", 8.0), ("smoke", 24.0)]
    assert all(e["time_to_alert_s"] is not None and e["time_to_alert_s"] <= 2.0 for e in report["events"])
    assert report["false_alerts"] == [] and report["frames"] >= 990 and report["dropped"] == 0
