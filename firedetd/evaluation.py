"""`firedetd eval --video FILE --truth CSV|XML`: time-to-alert and false alerts on a labelled video.

Runs the daemon's real pipeline (file source, engine, postprocessor with the configured smoothing and
thresholds, outbox) over every frame of the video, then scores the alerts it raised against the
ground truth:

- an *event* is a run of frames labelled `fire` or `smoke`; its time-to-alert is the media time from
  the event's first frame to the frame that raised the first alert (of any kind: a fire first called
  smoke has still alerted the user), reported beside the time to an alert of the event's own kind;
  missed if none was raised before the event ended;
- a *false alert* is an alert raised on a frame labelled `none`; false alerts per hour are counted
  over the video's duration.

Truth formats: CSV with `first_frame,last_frame,label` columns (the shared synthetic video's
`*.frames.csv`), FURG-style OpenCV XML (frames with flame boxes are `fire`, others `none`), or
`--label fire|smoke|none` for a video with one label throughout.
"""

import csv
import json
import logging
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import replace

from .errors import ConfigError
from .types import RAISED

log = logging.getLogger(__name__)


def add_arguments(parser):
    from .cli import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--video", required=True, help="video file to evaluate")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--truth", help="ground truth: CSV (first_frame,last_frame,label) or FURG XML")
    group.add_argument("--label", choices=("fire", "smoke", "none"), help="one label for the whole video")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--max-tta", type=float, default=2.0, help="time-to-alert goal in seconds (default 2)")


# ------------------------------------------------------------------------------------------- truth

def read_truth_csv(path):
    """[(first_frame, last_frame, label)] from a CSV with those columns."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"first_frame", "last_frame", "label"} - set(rows[0] if rows else {})
    if missing:
        raise ConfigError("%s: truth CSV lacks column(s) %s" % (path, ", ".join(sorted(missing))))
    return [(int(r["first_frame"]), int(r["last_frame"]), r["label"].strip()) for r in rows]


def read_truth_furg_xml(path):
    """FURG fire dataset XML: frames with at least one flame box are fire, the rest none."""
    root = ET.parse(path).getroot()
    labels = {}
    for item in root.iter("_"):
        number = item.find("frameNumber")
        if number is None:
            continue
        boxes = item.find("annotations")
        has_box = boxes is not None and any((box.text or "").strip() for box in boxes)
        labels[int(number.text)] = "fire" if has_box else "none"
    return frames_to_segments(labels)


def frames_to_segments(labels):
    segments = []
    for frame in sorted(labels):
        label = labels[frame]
        if segments and segments[-1][2] == label and segments[-1][1] == frame - 1:
            segments[-1] = (segments[-1][0], frame, label)
        else:
            segments.append((frame, frame, label))
    return segments


def read_truth(path, label, frame_count):
    if label:
        return [(0, max(0, frame_count - 1), label)]
    if path.lower().endswith(".xml"):
        return read_truth_furg_xml(path)
    return read_truth_csv(path)


def merge_segments(segments):
    """Adjacent segments of one label become one event (the CSV lists one row per second)."""
    merged = []
    for first, last, label in sorted(segments):
        if merged and merged[-1][2] == label and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]), label)
        else:
            merged.append((first, last, label))
    return merged


# ------------------------------------------------------------------------------------------- scoring

def label_of_frame(segments, frame):
    for first, last, label in segments:
        if first <= frame <= last:
            return label
    return None


def score(segments, raised, fps, frames_seen):
    """raised: [(frame_index, kind)] of RAISED alerts. Returns the report dict."""
    segments = merge_segments(segments)
    events = []
    for first, last, label in segments:
        if label not in ("fire", "smoke"):
            continue
        hits = [f for f, kind in raised if kind == label and first <= f <= last]
        any_kind = [f for f, kind in raised if first <= f <= last]
        events.append({
            "label": label, "first_frame": first, "last_frame": last,
            "start_s": round(first / fps, 3),
            "time_to_alert_s": round((min(hits) - first) / fps, 3) if hits else None,
            "time_to_any_alert_s": round((min(any_kind) - first) / fps, 3) if any_kind else None,
        })
    false_alerts = [{"frame": f, "kind": kind, "time_s": round(f / fps, 3)} for f, kind in raised
                    if label_of_frame(segments, f) == "none"]
    hours = frames_seen / fps / 3600.0 if fps else 0.0
    return {"events": events, "false_alerts": false_alerts,
            "false_alerts_per_hour": round(len(false_alerts) / hours, 2) if hours else 0.0,
            "duration_s": round(frames_seen / fps, 2) if fps else 0.0, "frames": frames_seen, "fps": fps}


# ------------------------------------------------------------------------------------------- running

class _FrameRecorder(object):
    """Counts the frames the postprocessor saw (the live_view hook)."""

    def __init__(self):
        self.frames = 0

    def update(self, prediction, tracker):
        self.frames += 1


def video_fps_and_frames(path):
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise ConfigError("--video: cannot open %s" % path)
        return float(cap.get(cv2.CAP_PROP_FPS) or 25.0), int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()


def evaluate_video(config, video, segments_or_none, label=None, progress=True):
    """Run the pipeline over every frame of `video`; return the scored report."""
    from .modelspec import load_spec
    from .pipeline import Pipeline

    fps, frame_count = video_fps_and_frames(video)
    segments = segments_or_none if segments_or_none is not None else read_truth(None, label, frame_count)
    camera = replace(config.cameras[0], name="eval", queue_size=2,
                     source=replace(config.cameras[0].source, uri="file://" + os.path.abspath(video), loop=False,
                                    realtime=False))
    state_dir = tempfile.mkdtemp(prefix="firedetd-eval-")
    run_config = replace(config, cameras=(camera,), state_dir=state_dir,
                         alerts=replace(config.alerts, webhooks=(), mqtt=None, log=False))
    raised = []
    recorder = _FrameRecorder()
    pipeline = Pipeline(run_config, load_spec(run_config.model.spec), sink_factory=lambda cfg: [],
                        live_view=recorder,
                        on_alert=lambda alert, frame: raised.append((frame.seq, alert.kind))
                        if alert.state == RAISED else None)
    pipeline.start()
    try:
        _wait_until_done(pipeline, frame_count, progress)
    finally:
        pipeline.stop(10.0)
    if pipeline.fatal_error is not None:
        raise pipeline.fatal_error
    report = score(segments, raised, fps, recorder.frames)
    report.update({"video": os.path.abspath(video), "raised": [{"frame": f, "kind": k} for f, k in raised],
                   "engine": pipeline.runner.engine.name if pipeline.runner.engine else None,
                   "dropped": sum(q.dropped for q in [pipeline.frame_queues.get("eval")] if q is not None)})
    return report


def _wait_until_done(pipeline, frame_count, progress):
    import time

    last_print = 0.0
    while not (pipeline.finished_sources() and pipeline.drained()) and pipeline.fatal_error is None:
        time.sleep(0.1)
        if progress and time.time() - last_print > 2.0 and frame_count:
            last_print = time.time()
            sys.stderr.write("\reval: %d/%d frames" % (pipeline.postprocessor.decided, frame_count))
            sys.stderr.flush()
    if progress:
        sys.stderr.write("\reval: %d frames decided\n" % pipeline.postprocessor.decided)


def format_report(report, max_tta):
    lines = ["video: %s (%.1f s, %d frames at %.2f fps, engine %s, %d dropped)" % (
        report["video"], report["duration_s"], report["frames"], report["fps"], report["engine"], report["dropped"])]
    for e in report["events"]:
        tta, any_tta = e["time_to_alert_s"], e["time_to_any_alert_s"]
        lines.append("event %-5s %7.2f s: first alert after %s, %s alert after %s  [%s]" % (
            e["label"], e["start_s"], _seconds(any_tta), e["label"], _seconds(tta), verdict_of(e, max_tta)))
    lines.append("false alerts: %d (%.2f per hour)%s" % (
        len(report["false_alerts"]), report["false_alerts_per_hour"],
        "".join("\n  %s at %.2f s (frame %d)" % (f["kind"], f["time_s"], f["frame"]) for f in report["false_alerts"])))
    return "\n".join(lines)


def _seconds(value):
    return "-" if value is None else "%.2f s" % value


def verdict_of(event, max_tta):
    """An incident counts as detected by its first alert of any kind (a fire seen first as smoke still
    alerts the user); the time to the alert of its own kind is reported beside it."""
    any_tta = event["time_to_any_alert_s"]
    if any_tta is None:
        return "MISSED"
    return "ok" if any_tta <= max_tta else "SLOW"


def run(args):
    from .cli import config_from_args, setup_logging

    config = config_from_args(args)
    setup_logging("warning" if not args.debug else "debug", args.debug)
    if not os.path.isfile(args.video):
        raise ConfigError("--video: %s not found" % args.video)
    segments = read_truth(args.truth, args.label, 0) if args.truth else None
    report = evaluate_video(config, args.video, segments, args.label)
    print(json.dumps(report, indent=2) if args.json else format_report(report, args.max_tta))
    missed = [e for e in report["events"] if verdict_of(e, args.max_tta) != "ok"]
    return 1 if missed or report["false_alerts"] else 0
