"""`firedetd eval`: the truth readers, the scoring, and a real run of the daemon's pipeline (GStreamer or OpenCV
capture, the shipped ONNX model, the shipped thresholds) over the shared labelled video."""

import io
import json
import os
import subprocess
import sys

import pytest
from support.daemon import REPO

from firedetd import cli
from firedetd.errors import ConfigError
from firedetd.evaluation import (
    ProgressLine,
    find_videos,
    image_metrics,
    merge_segments,
    read_truth,
    score,
    totals,
    verdict_of,
)

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


def test_an_event_inside_an_open_incident_counts_as_alerted_at_once():
    segments = [(0, 24, "fire"), (25, 49, "none"), (50, 74, "smoke"), (75, 99, "none")]
    report = score(segments, [(5, "fire")], fps=25.0, frames_seen=100, incidents=[(5, None)])
    fire, smoke = report["events"]
    assert fire["time_to_any_alert_s"] == 0.2 and not fire["already_open"]
    assert smoke["time_to_any_alert_s"] == 0.0 and smoke["already_open"] and smoke["time_to_alert_s"] is None
    cleared = score(segments, [(5, "fire")], fps=25.0, frames_seen=100, incidents=[(5, 30)])
    assert cleared["events"][1]["time_to_any_alert_s"] is None   # the incident had cleared: smoke was missed


def test_an_escalation_is_not_a_false_alert_but_a_new_incident_on_none_is():
    segments = [(0, 49, "smoke"), (50, 99, "none")]
    raised = [(10, "smoke"), (60, "fire"), (90, "fire")]
    report = score(segments, raised, fps=10.0, frames_seen=100, incidents=[(10, 70), (90, None)])
    assert [f["frame"] for f in report["false_alerts"]] == [90]


def test_frame_rates_and_totals_add_up_over_videos():
    segments = [(0, 3, "none"), (4, 7, "fire")]
    rows = [(0, "none"), (1, "fire"), (2, None), (3, "none"), (4, "fire"), (5, "smoke"), (6, "none"), (7, None)]
    report = score(segments, [], fps=4.0, frames_seen=8, frame_rows=rows)
    assert report["frame_rates"]["none"] == {"decided": 3, "alarm": 1, "unusable": 1, "alarm_rate": 0.3333}
    assert report["frame_rates"]["fire"]["alarm_rate"] == 0.6667
    total = totals([report, report], 2.0)
    assert total["videos"] == 2 and total["missed"] == 2 and total["frame_rates"]["none"]["decided"] == 6


def test_a_videos_folder_reads_truth_files_or_class_folders_and_names_what_it_cannot(tmp_path):
    (tmp_path / "fire").mkdir()
    (tmp_path / "fire" / "a.mp4").write_bytes(b"")
    (tmp_path / "b.mp4").write_bytes(b"")
    (tmp_path / "b.frames.csv").write_text("first_frame,last_frame,label\n0,9,none\n")
    found = find_videos(str(tmp_path))
    assert [(os.path.basename(v), t is not None, label) for v, t, label in found] == [
        ("b.mp4", True, None), ("a.mp4", False, "fire")]
    (tmp_path / "c.mp4").write_bytes(b"")
    with pytest.raises(ConfigError, match="c.mp4: no truth file beside it"):
        find_videos(str(tmp_path))


def test_image_metrics_count_none_alarms_at_argmax_and_at_the_thresholds():
    import numpy as np

    rows = [("none", np.array([0.55, 0.1, 0.35])), ("none", np.array([0.1, 0.1, 0.8])),
            ("fire", np.array([0.9, 0.05, 0.05])), ("smoke", np.array([0.5, 0.4, 0.1]))]
    m = image_metrics(rows, ("fire", "smoke", "none"), {"fire": 0.6, "smoke": 0.6})
    assert m["accuracy"] == 0.5 and m["none_called_alarm"] == 0.5 and m["none_called_alarm_at_thresholds"] == 0.0
    assert m["per_class"]["smoke"]["recall"] == 0.0


def test_the_shipped_model_alerts_within_two_seconds_on_the_labelled_video_and_never_falsely(capsys):
    if not os.path.isfile(SYNTHETIC):
        pytest.skip("../shared/data/video is not beside this checkout")
    code = cli.main(["eval", "--video", SYNTHETIC, "--truth", SYNTHETIC.replace(".mp4", ".frames.csv"), "--json",
                     "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(e["label"], e["start_s"]) for e in report["events"]] == [("fire", 8.0), ("smoke", 24.0)]
    assert all(e["time_to_any_alert_s"] is not None and e["time_to_any_alert_s"] <= 2.0 for e in report["events"])
    assert report["events"][0]["time_to_alert_s"] <= 2.0   # the fire as fire
    assert report["false_alerts"] == [] and report["frames"] >= 990 and report["dropped"] == 0
    assert report["frame_rates"]["none"]["alarm_rate"] < 0.05


def test_eval_scores_a_folder_of_images_by_class_with_the_shipped_model(tmp_path, shared_dir, capsys):
    import glob
    import shutil

    for label in ("fire", "none"):
        (tmp_path / label).mkdir()
        for path in sorted(glob.glob(os.path.join(shared_dir, "data", "fire-smoke", "test", label, "*.jpg")))[::40]:
            shutil.copy(path, str(tmp_path / label))
    code = cli.main(["eval", "--images", str(tmp_path), "--json", "--no-progress", "--state-dir",
                     str(tmp_path / "state")])
    result = json.loads(capsys.readouterr().out)["images"]
    counts = {k: len(os.listdir(str(tmp_path / k))) for k in ("fire", "none")}
    assert code == 0 and result["images"] == sum(counts.values())
    assert {k: v["count"] for k, v in result["per_class"].items()} == counts
    assert result["accuracy"] > 0.8 and result["none_called_alarm"] is not None


class TerminalStream(io.StringIO):
    def isatty(self):
        return True


def test_progress_redraws_in_place_on_a_terminal_and_writes_a_line_per_tenth_elsewhere():
    terminal, log = TerminalStream(), io.StringIO()
    for stream in (terminal, log):
        shown = ProgressLine("house.mp4", 900, "frames", stream)
        for done in range(0, 900, 30):
            shown.update(done)
        shown.finish(899)
    assert terminal.getvalue().count("\r") == 31 and terminal.getvalue().endswith("899/899 frames\n")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 11
    assert lines[0] == "eval house.mp4: 0/900 frames (0%)" and lines[-1] == "eval house.mp4: 899/899 frames (100%)"


def test_eval_piped_to_a_file_writes_no_carriage_return_or_escape_code(tmp_path):
    import cv2
    import numpy as np

    video = str(tmp_path / "dusk.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(40):
        writer.write(np.full((120, 160, 3), i * 5, np.uint8))
    writer.release()
    rng = np.random.RandomState(0)
    for label in ("fire", "none"):
        (tmp_path / "pictures" / label).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / "pictures" / label / ("%d.jpg" % i)), rng.randint(0, 256, (120, 160, 3),
                                                                                         dtype=np.uint8))
    result = subprocess.run([sys.executable, "-m", "firedetd", "eval", "--video", video, "--label", "none",
                             "--images", str(tmp_path / "pictures"), "--state-dir", str(tmp_path / "state")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "eval [1/1] dusk.mp4: 40/40 frames (100%)\n" in err and "eval pictures: 6/6 images (100%)\n" in err
    assert "\r" not in err and "\x1b" not in err and b"\r" not in result.stdout
