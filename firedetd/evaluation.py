"""`firedetd eval`: how the alarm does on your own labelled videos and images, with your own config.

    firedetd eval --video clip.mp4 --truth clip.frames.csv
    firedetd eval --videos DIR [--images DIR] [--json]

Every video runs through the daemon's real pipeline (file source, signal gate, engine, postprocessor with the
configured smoothing, thresholds, quiet time and motion rule), as fast as it decodes, then is scored against
its ground truth:

- an *event* is a run of frames labelled `fire` or `smoke`. Its time to alert is the media time from its first
  frame to the first frame that raised (or escalated to) an incident of any kind, 0 when an incident was
  already open (the site has been alerted); beside it, the time to an alert of the event's own kind. Missed
  when nothing was raised before the event ended;
- a *false alert* is an incident raised on a frame labelled `none`; false alerts per hour over the video;
- *per-frame rates*: of the decided frames, the share the model called fire or smoke (argmax) by true label,
  and the frames the signal gate found unusable.

Truth, per video: `--truth` (CSV with `first_frame,last_frame,label`, FURG XML with flame boxes, or `--label`);
in a `--videos` folder, for `NAME.EXT`: `NAME.frames.csv`, `NAME.csv` or `NAME.xml` beside it, else the name of
its folder (`DIR/fire/x.mp4`, `DIR/none/y.mp4`). `--images DIR` (`DIR/{fire,smoke,none}/*`) scores the engine on
single pictures: accuracy, recall by class, and `none` called fire or smoke at argmax and at the `on` thresholds.

Exit status: 0 when every event was alerted within --max-tta and nothing was raised falsely, else 1.
"""

import csv
import json
import logging
import os
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import replace

from .errors import ConfigError
from .types import ESCALATED, RAISED

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
PROGRESS_LINE_STEP = 0.1   # output not a terminal: one progress line per 10 % of a video or folder
LABELS = ("fire", "smoke", "none")


def add_arguments(parser):
    from .cli import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--video", action="append", default=[], help="a video file to evaluate (repeatable)")
    parser.add_argument("--videos", help="a folder of labelled videos (truth files beside them, or class folders)")
    parser.add_argument("--images", help="a folder of images in class folders: DIR/{fire,smoke,none}/*")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--truth", action="append", default=[],
                       help="ground truth of each --video, in the same order: CSV (first_frame,last_frame,label) or "
                            "FURG XML (default: a truth file beside the video)")
    group.add_argument("--label", choices=LABELS, help="one label for the whole of every --video")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--max-tta", type=float, default=2.0, help="time-to-alert goal in seconds (default 2)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress line on stderr")


# ------------------------------------------------------------------------------------------- truth

def read_truth_csv(path):
    """[(first_frame, last_frame, label)] from a CSV with those columns."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = {"first_frame", "last_frame", "label"} - set(rows[0] if rows else {})
    if missing:
        raise ConfigError("%s: truth CSV lacks column(s) %s" % (path, ", ".join(sorted(missing))))
    segments = []
    for line, r in enumerate(rows, start=2):
        label = (r["label"] or "").strip()
        if label not in LABELS:
            raise ConfigError("%s:%d: label %r is not one of %s" % (path, line, label, ", ".join(LABELS)))
        try:
            segments.append((int(r["first_frame"]), int(r["last_frame"]), label))
        except ValueError:
            raise ConfigError("%s:%d: first_frame and last_frame must be whole numbers" % (path, line))
    return segments


def read_truth_furg_xml(path):
    """FURG fire dataset XML: frames with at least one flame box are fire, the rest none."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ConfigError("%s: not a readable truth XML (%s)" % (path, e))
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


def truth_beside(video):
    """The truth file next to a video (NAME.frames.csv, NAME.csv, NAME.xml), or None."""
    stem = os.path.splitext(video)[0]
    for candidate in (stem + ".frames.csv", stem + ".csv", stem + ".xml"):
        if os.path.isfile(candidate):
            return candidate
    return None


def find_videos(folder):
    """[(video, truth_path or None, label or None)] of every video under `folder`, sorted."""
    if not os.path.isdir(folder):
        raise ConfigError("--videos: %s is not a folder" % folder)
    found = []
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if not name.lower().endswith(VIDEO_SUFFIXES):
                continue
            video = os.path.join(root, name)
            truth = truth_beside(video)
            label = os.path.basename(root) if truth is None else None
            if truth is None and label not in LABELS:
                raise ConfigError("%s: no truth file beside it (%s.frames.csv, .csv or .xml) and its folder is not "
                                  "named fire, smoke or none" % (video, os.path.splitext(name)[0]))
            found.append((video, truth, label))
    if not found:
        raise ConfigError("--videos: no video (%s) under %s" % (", ".join(VIDEO_SUFFIXES), folder))
    return sorted(found)


# ------------------------------------------------------------------------------------------- scoring

def label_of_frame(segments, frame):
    for first, last, label in segments:
        if first <= frame <= last:
            return label
    return None


def open_at(incidents, frame):
    """True when an incident raised before `frame` was still open at it."""
    return any(start < frame and (end is None or end >= frame) for start, end in incidents)


def score(segments, raised, fps, frames_seen, incidents=None, frame_rows=None):
    """Score one video. raised: [(frame, kind)] of frames that raised or escalated an incident; incidents:
    [(first_frame, cleared_frame or None)]; frame_rows: [(frame, argmax label or None if unusable)]."""
    segments = merge_segments(segments)
    incidents = incidents or []
    events = []
    for first, last, label in segments:
        if label not in ("fire", "smoke"):
            continue
        hits = [f for f, kind in raised if kind == label and first <= f <= last]
        already = open_at(incidents, first)
        any_kind = [f for f, kind in raised if first <= f <= last]
        any_tta = 0.0 if already else (round((min(any_kind) - first) / fps, 3) if any_kind else None)
        events.append({
            "label": label, "first_frame": first, "last_frame": last, "start_s": round(first / fps, 3),
            "time_to_alert_s": round((min(hits) - first) / fps, 3) if hits else None,
            "time_to_any_alert_s": any_tta, "already_open": already,
        })
    opened = {f for f, _ in incidents} if incidents else {f for f, _ in raised}
    false_alerts = [{"frame": f, "kind": kind, "time_s": round(f / fps, 3)} for f, kind in raised
                    if f in opened and label_of_frame(segments, f) == "none"]
    hours = frames_seen / fps / 3600.0 if fps else 0.0
    return {"events": events, "false_alerts": false_alerts, "incidents": len(incidents),
            "false_alerts_per_hour": round(len(false_alerts) / hours, 2) if hours else 0.0,
            "duration_s": round(frames_seen / fps, 2) if fps else 0.0, "frames": frames_seen, "fps": fps,
            "frame_rates": frame_rates(segments, frame_rows or [])}


def frame_rates(segments, frame_rows):
    """Per true label: decided frames, the share called fire or smoke at argmax, and unusable frames."""
    out = {}
    for frame, predicted in frame_rows:
        label = label_of_frame(segments, frame)
        if label is None:
            continue
        row = out.setdefault(label, {"decided": 0, "alarm": 0, "unusable": 0})
        if predicted is None:
            row["unusable"] += 1
            continue
        row["decided"] += 1
        row["alarm"] += int(predicted in ("fire", "smoke"))
    for row in out.values():
        row["alarm_rate"] = round(row["alarm"] / row["decided"], 4) if row["decided"] else None
    return out


# ------------------------------------------------------------------------------------------- running

class _Recorder(object):
    """Collects, from the pipeline's hooks, every raise/escalation/clear and each decided frame's argmax."""

    def __init__(self, labels):
        self.labels = labels
        self.raised = []       # (frame, kind) of frames that raised or escalated
        self.incidents = {}    # id -> [first_frame, cleared_frame or None]
        self.rows = []         # (frame, argmax label)

    def update(self, prediction, tracker):   # the live_view hook: usable, decided frames
        probs = prediction.probs
        self.rows.append((prediction.frame.seq, self.labels[max(range(len(probs)), key=probs.__getitem__)]))

    def on_alert(self, alert, frame):
        if alert.state in (RAISED, ESCALATED):
            self.raised.append((frame.seq, alert.kind))
        if alert.state == RAISED:
            self.incidents[alert.id] = [frame.seq, None]
        elif alert.state == "cleared" and alert.id in self.incidents:
            self.incidents[alert.id][1] = frame.seq


def video_fps_and_frames(path):
    import cv2

    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise ConfigError("--video: cannot open %s" % path)
        return float(cap.get(cv2.CAP_PROP_FPS) or 25.0), int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()


def evaluate_video(config, video, segments_or_none, label=None, progress=True, title=""):
    """Run the pipeline over every frame of `video`; return the scored report."""
    from .modelspec import load_spec
    from .pipeline import Pipeline

    fps, frame_count = video_fps_and_frames(video)
    segments = segments_or_none if segments_or_none is not None else read_truth(None, label, frame_count)
    base = config.cameras[0]
    camera = replace(base, name="eval", queue_size=2,
                     source=replace(base.source, uri="file://" + os.path.abspath(video), loop=False, realtime=False))
    state_dir = tempfile.mkdtemp(prefix="firedetd-eval-")
    run_config = replace(config, cameras=(camera,), state_dir=state_dir,
                         alerts=replace(config.alerts, webhooks=(), mqtt=None, log=False))
    spec = load_spec(run_config.model.spec)
    recorder = _Recorder(spec.labels)
    pipeline = Pipeline(run_config, spec, sink_factory=lambda cfg: [], live_view=recorder,
                        on_alert=recorder.on_alert)
    pipeline.start()
    try:
        _wait_until_done(pipeline, frame_count, progress, title or os.path.basename(video))
    finally:
        pipeline.stop(10.0)
    if pipeline.fatal_error is not None:
        raise pipeline.fatal_error
    seen = pipeline.postprocessor.seen
    decided = {f for f, _ in recorder.rows}
    rows = recorder.rows + [(f, None) for f in range(seen) if f not in decided]
    report = score(segments, recorder.raised, fps, seen, [tuple(v) for v in recorder.incidents.values()], rows)
    queue = pipeline.frame_queues.get("eval")
    report.update({"video": os.path.abspath(video), "raised": [{"frame": f, "kind": k} for f, k in recorder.raised],
                   "engine": pipeline.runner.engine.name if pipeline.runner.engine else None,
                   "dropped": queue.dropped if queue is not None else 0,
                   "unusable": seen - len(recorder.rows)})
    return report


def _wait_until_done(pipeline, frame_count, progress, title):
    shown = ProgressLine(title, frame_count, "frames") if progress else None
    last_print = 0.0
    while not (pipeline.finished_sources() and pipeline.drained()) and pipeline.fatal_error is None:
        time.sleep(0.1)
        if shown is not None and time.time() - last_print > 1.0:
            last_print = time.time()
            shown.update(pipeline.postprocessor.seen)
    if shown is not None:
        shown.finish(pipeline.postprocessor.seen)


class ProgressLine(object):
    """A video's or folder's progress on stderr: a bar redrawn in place on a terminal; elsewhere (a file, a pipe,
    a CI log) a whole line per PROGRESS_LINE_STEP of the way, with no carriage return to garble the log."""

    def __init__(self, title, total, unit, stream=None):
        self.title, self.total, self.unit = title[:40], total, unit
        self.stream = stream or sys.stderr
        try:
            self.redraw = self.stream.isatty()
        except (AttributeError, ValueError):
            self.redraw = False
        self._steps_written = -1

    def update(self, done):
        share = min(1.0, done / float(self.total)) if self.total else 0.0
        if self.redraw:
            width = 30
            bar = "#" * int(share * width) + "." * (width - int(share * width))
            self.stream.write("\reval %-40s [%s] %d/%s %s" % (self.title, bar, done, self.total or "?", self.unit))
        else:
            steps = int(share / PROGRESS_LINE_STEP)
            if steps <= self._steps_written:
                return
            self._steps_written = steps
            self.stream.write("eval %s: %d/%s %s (%d%%)\n" % (self.title, done, self.total or "?", self.unit,
                                                               round(share * 100)))
        self.stream.flush()

    def finish(self, done):
        """The last line: all `done` of them (the container's frame count is an estimate)."""
        self.total = done
        self.update(done)
        if self.redraw:
            self.stream.write("\n")
            self.stream.flush()


# ------------------------------------------------------------------------------------------- images

def list_images(folder):
    """[(path, label)] of DIR/{fire,smoke,none}/* images."""
    if not os.path.isdir(folder):
        raise ConfigError("--images: %s is not a folder" % folder)
    found = []
    for label in LABELS:
        class_dir = os.path.join(folder, label)
        if os.path.isdir(class_dir):
            found.extend((os.path.join(class_dir, n), label) for n in sorted(os.listdir(class_dir))
                         if n.lower().endswith(IMAGE_SUFFIXES))
    if not found:
        raise ConfigError("--images: no images in %s/{%s}/" % (folder, ",".join(LABELS)))
    return found


def evaluate_images(config, folder, progress=True):
    """Decide every image with the configured engine, preprocessed as the daemon does; return the metrics."""
    import cv2
    import numpy as np

    from .inference import create_engine
    from .inference.preprocess import Preprocessor, to_probabilities
    from .modelspec import load_spec

    spec = load_spec(config.model.spec)
    images = list_images(folder)
    engine = create_engine(spec, config.model, config.state_dir)
    preprocess = Preprocessor(spec.input)
    size = (spec.input.width, spec.input.height)
    rows = []
    shown = ProgressLine(os.path.basename(folder.rstrip("/")), len(images), "images") if progress else None
    try:
        for index, (path, label) in enumerate(images):
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise ConfigError("%s: not a readable image" % path)
            image = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
            if spec.input.color == "RGB":
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            probs = to_probabilities(engine.infer(preprocess([image])), spec.output.kind)[0]
            rows.append((label, np.asarray(probs, dtype=np.float64)))
            if shown is not None and (index % 25 == 0 or index == len(images) - 1):
                shown.update(index + 1)
    finally:
        engine.close()
    if shown is not None:
        shown.finish(len(images))
    return image_metrics(rows, spec.labels, {k: config.detection.thresholds(k).on for k in ("fire", "smoke")})


def image_metrics(rows, labels, thresholds):
    """Accuracy, recall by class, and `none` called fire or smoke at argmax and at the `on` thresholds."""
    per_class = {}
    correct = none_alarm = none_alarm_thr = none_total = 0
    for label, probs in rows:
        predicted = labels[int(probs.argmax())]
        row = per_class.setdefault(label, {"count": 0, "correct": 0})
        row["count"] += 1
        row["correct"] += int(predicted == label)
        correct += int(predicted == label)
        if label == "none":
            none_total += 1
            none_alarm += int(predicted != "none")
            none_alarm_thr += int(any(probs[labels.index(k)] >= on for k, on in thresholds.items()))
    for row in per_class.values():
        row["recall"] = round(row["correct"] / row["count"], 4)
    return {"images": len(rows), "accuracy": round(correct / len(rows), 4) if rows else None,
            "per_class": per_class,
            "none_called_alarm": round(none_alarm / none_total, 4) if none_total else None,
            "none_called_alarm_at_thresholds": round(none_alarm_thr / none_total, 4) if none_total else None}


# ------------------------------------------------------------------------------------------- totals

def totals(reports, max_tta):
    """One line over every video: events alerted in time, median time to alert, false alerts per hour."""
    events = [e for r in reports for e in r["events"]]
    alerted = sorted(e["time_to_any_alert_s"] for e in events if e["time_to_any_alert_s"] is not None)
    hours = sum(r["duration_s"] for r in reports) / 3600.0
    false_alerts = sum(len(r["false_alerts"]) for r in reports)
    decided = {}
    for r in reports:
        for label, row in r["frame_rates"].items():
            acc = decided.setdefault(label, {"decided": 0, "alarm": 0, "unusable": 0})
            for key in acc:
                acc[key] += row[key]
    for row in decided.values():
        row["alarm_rate"] = round(row["alarm"] / row["decided"], 4) if row["decided"] else None
    return {"videos": len(reports), "events": len(events),
            "in_time": sum(1 for e in events if verdict_of(e, max_tta) == "ok"),
            "missed": sum(1 for e in events if e["time_to_any_alert_s"] is None),
            "median_time_to_alert_s": alerted[len(alerted) // 2] if alerted else None,
            "false_alerts": false_alerts, "hours": round(hours, 4),
            "false_alerts_per_hour": round(false_alerts / hours, 2) if hours else 0.0,
            "videos_with_false_alerts": sum(1 for r in reports if r["false_alerts"]),
            "frame_rates": decided}


def format_report(report, max_tta):
    lines = ["video: %s (%.1f s, %d frames at %.2f fps, engine %s, %d dropped, %d unusable)" % (
        report["video"], report["duration_s"], report["frames"], report["fps"], report["engine"], report["dropped"],
        report.get("unusable", 0))]
    for e in report["events"]:
        tta, any_tta = e["time_to_alert_s"], e["time_to_any_alert_s"]
        lines.append("event %-5s %7.2f s: first alert after %s%s, %s alert after %s  [%s]" % (
            e["label"], e["start_s"], _seconds(any_tta), " (incident already open)" if e.get("already_open") else "",
            e["label"], _seconds(tta), verdict_of(e, max_tta)))
    lines.append("incidents: %d; false alerts: %d (%.2f per hour)%s" % (
        report.get("incidents", 0), len(report["false_alerts"]), report["false_alerts_per_hour"],
        "".join("\n  %s at %.2f s (frame %d)" % (f["kind"], f["time_s"], f["frame"]) for f in report["false_alerts"])))
    lines.extend(_rate_lines(report.get("frame_rates", {})))
    return "\n".join(lines)


def _rate_lines(rates):
    return ["frames %-5s: %d decided, %s called fire or smoke, %d unusable" % (
        label, row["decided"], "-" if row["alarm_rate"] is None else "%.1f %%" % (100 * row["alarm_rate"]),
        row["unusable"]) for label, row in sorted(rates.items())]


def format_totals(total, max_tta):
    lines = ["total: %d video(s), %.2f h; events %d: %d alerted within %.1f s, %d missed, median time to alert %s; "
             "false alerts %d (%.2f per hour, in %d video(s))" % (
                 total["videos"], total["hours"], total["events"], total["in_time"], max_tta, total["missed"],
                 _seconds(total["median_time_to_alert_s"]), total["false_alerts"], total["false_alerts_per_hour"],
                 total["videos_with_false_alerts"])]
    return "\n".join(lines + _rate_lines(total["frame_rates"]))


def format_images(metrics):
    per_class = ", ".join("%s %.1f %% of %d" % (k, 100 * v["recall"], v["count"])
                          for k, v in sorted(metrics["per_class"].items()))
    none = metrics["none_called_alarm"]
    return "images: %d, accuracy %.1f %%; recall: %s; none called fire or smoke: %s at argmax, %s at the thresholds" % (
        metrics["images"], 100 * metrics["accuracy"], per_class,
        "-" if none is None else "%.1f %%" % (100 * none),
        "-" if none is None else "%.1f %%" % (100 * metrics["none_called_alarm_at_thresholds"]))


def _seconds(value):
    return "-" if value is None else "%.2f s" % value


def verdict_of(event, max_tta):
    """An incident counts as detected by its first alert of any kind (a fire seen first as smoke still
    alerts the user); the time to the alert of its own kind is reported beside it."""
    any_tta = event["time_to_any_alert_s"]
    if any_tta is None:
        return "MISSED"
    return "ok" if any_tta <= max_tta else "SLOW"


def videos_from_args(args):
    """[(video, truth_path, label)] from --video/--truth/--label and --videos."""
    videos = []
    if args.truth and len(args.truth) != len(args.video):
        raise ConfigError("--truth: given %d time(s) for %d --video; give one per video, in order, or none (truth "
                          "files beside the videos)" % (len(args.truth), len(args.video)))
    for index, video in enumerate(args.video):
        if not os.path.isfile(video):
            raise ConfigError("--video: %s not found" % video)
        truth = args.truth[index] if args.truth else (None if args.label else truth_beside(video))
        if truth is None and not args.label:
            raise ConfigError("--video %s: give --truth FILE or --label fire|smoke|none" % video)
        if truth is not None and not os.path.isfile(truth):
            raise ConfigError("--truth: %s not found" % truth)
        videos.append((video, truth, args.label))
    if args.videos:
        videos.extend(find_videos(args.videos))
    return videos


def run(args):
    from .cli import config_from_args, setup_logging

    config = config_from_args(args)
    setup_logging("warning" if not args.debug else "debug", args.debug)
    videos = videos_from_args(args)
    if not videos and not args.images:
        raise ConfigError("eval: give --video FILE, --videos DIR or --images DIR")
    reports = []
    for index, (video, truth, label) in enumerate(videos):
        segments = read_truth(truth, None, 0) if truth else None
        title = "[%d/%d] %s" % (index + 1, len(videos), os.path.basename(video))
        reports.append(evaluate_video(config, video, segments, label, progress=args.progress, title=title))
    images = evaluate_images(config, args.images, args.progress) if args.images else None
    total = totals(reports, args.max_tta) if reports else None
    print(render(reports, total, images, args.json, args.max_tta))
    late = [e for r in reports for e in r["events"] if verdict_of(e, args.max_tta) != "ok"]
    return 1 if late or any(r["false_alerts"] for r in reports) else 0


def render(reports, total, images, as_json, max_tta):
    if as_json:
        if len(reports) == 1 and images is None:
            return json.dumps(reports[0], indent=2)   # one video: its report, as before
        return json.dumps({"videos": reports, "total": total, "images": images}, indent=2)
    parts = [format_report(r, max_tta) for r in reports]
    if total is not None and len(reports) > 1:
        parts.append(format_totals(total, max_tta))
    if images is not None:
        parts.append(format_images(images))
    return "\n\n".join(parts)
