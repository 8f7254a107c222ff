"""Can a site trust the alarm? The daemon's own pipeline (the shipped model, the default config) over:

1. **poor signal**: clips of what cameras send when they have no picture (black, dark noise, uniform grey, white,
   colour bars, snow), an ordinary scene at 20 % brightness, and a frozen frame: `--minutes` each (10 for the
   report), 0 alerts wanted;
2. **the house fire looped** for `--minutes` (`samples/furg_house6.mp4`, `loop: true`): exactly one incident,
   first alert within 1 s;
3. **motion as evidence** (`detection.motion` on and off): time to alert on the labelled videos, and false alerts
   on still scenes that the model finds hardest (the `none` test images it scores highest for fire or smoke,
   each its own clip, still for `--still-s` seconds with sensor noise, as a camera would see a poster, a lamp or
   a neon sign).

Needs `../shared` (the test split and the labelled videos) beside the checkout. Writes
`docs/model-report/results/alarm.json` (or `--out`). Run: `.venv/bin/python benchmarks/alarm_trust.py`.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from firedetd.config import build_config  # noqa: E402
from firedetd.evaluation import evaluate_video, read_truth  # noqa: E402

SHARED = os.path.join(os.path.dirname(REPO), "shared")
VIDEOS = os.path.join(SHARED, "data", "video")
TEST = os.path.join(SHARED, "data", "fire-smoke", "test")
SIZE = (640, 480)
FPS = 10


def write_clip(path, frames, seconds, fps=FPS):
    """Write `frames(i)` for i in range(seconds * fps) as an MJPG AVI (every frame a key frame: what is written is
    what the decoder hands back, so a frozen frame stays identical)."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, SIZE)
    for i in range(int(seconds * fps)):
        writer.write(frames(i))
    writer.release()
    return path


def smpte_bars():
    w, h = SIZE
    colours = np.array([[192, 192, 192], [0, 192, 192], [192, 192, 0], [0, 192, 0], [192, 0, 192], [0, 0, 192],
                        [192, 0, 0]], np.uint8)   # BGR
    top = colours[np.arange(w) * 7 // w][None].repeat(int(h * 0.67), axis=0)
    middle = colours[::-1][np.arange(w) * 7 // w][None].repeat(int(h * 0.08), axis=0)
    bottom = np.zeros((h - top.shape[0] - middle.shape[0], w, 3), np.uint8)
    bottom[:, : w // 4], bottom[:, w // 4: w // 2] = (76, 33, 0), (255, 255, 255)
    return np.concatenate([top, middle, bottom])


def scene_images(count=20):
    names = sorted(n for n in os.listdir(os.path.join(TEST, "none")) if n.startswith(("amos_day", "intel_street",
                                                                                      "inet_")))
    step = max(1, len(names) // count)
    return [cv2.resize(cv2.imread(os.path.join(TEST, "none", n)), SIZE) for n in names[::step][:count]]


def poor_signal_clips(folder, seconds):
    rng = np.random.default_rng(0)
    w, h = SIZE
    scenes = scene_images()
    bars = smpte_bars()
    frozen = scenes[3]

    def noisy(image, sigma):
        return np.clip(image.astype(np.float32) + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)

    def dim_scene(i):
        # an ordinary scene at 20 % brightness, a new view every 30 s, with the sensor noise of a dark picture
        return noisy(scenes[(i // (30 * FPS)) % len(scenes)] * 0.2, 3)

    makers = {
        "black": lambda i: np.zeros((h, w, 3), np.uint8),
        "dark noise": lambda i: noisy(np.full((h, w, 3), 8, np.uint8), 5),
        "grey": lambda i: np.full((h, w, 3), 128, np.uint8),
        "white": lambda i: np.full((h, w, 3), 250, np.uint8),
        "colour bars": lambda i: bars,
        "snow": lambda i: rng.integers(0, 256, (h, w, 1), dtype=np.uint8).repeat(3, axis=2),
        "scene at 20 %": dim_scene,
        "frozen frame": lambda i: frozen,
    }
    return {name: write_clip(os.path.join(folder, name.replace(" ", "_").replace("%", "pc") + ".avi"), make, seconds)
            for name, make in makers.items()}


def hardest_still_scenes(config, count, seconds, folder):
    """The `none` test images the shipped model scores highest for fire or smoke, each a still clip with noise."""
    from firedetd.inference import create_engine
    from firedetd.inference.preprocess import Preprocessor, to_probabilities
    from firedetd.modelspec import load_spec

    spec = load_spec(config.model.spec)
    engine = create_engine(spec, config.model, config.state_dir)
    preprocess = Preprocessor(spec.input)
    scored = []
    for name in sorted(os.listdir(os.path.join(TEST, "none"))):
        bgr = cv2.imread(os.path.join(TEST, "none", name))
        image = cv2.cvtColor(cv2.resize(bgr, (spec.input.width, spec.input.height)), cv2.COLOR_BGR2RGB)
        probs = to_probabilities(engine.infer(preprocess([image])), spec.output.kind)[0]
        scored.append((float(max(probs[0], probs[1])), name, bgr))
    engine.close()
    scored.sort(key=lambda row: -row[0])
    rng = np.random.default_rng(1)
    clips = []
    for score, name, bgr in scored[:count]:
        still = cv2.resize(bgr, SIZE).astype(np.float32)

        def frame(i, still=still):
            return np.clip(still + rng.normal(0, 2, still.shape), 0, 255).astype(np.uint8)

        path = write_clip(os.path.join(folder, "still_" + os.path.splitext(name)[0] + ".avi"), frame, seconds)
        clips.append({"image": name, "score": round(score, 4), "path": path})
    return clips


def still_fire_clips(count, seconds, folder):
    """A seeded sample of fire and smoke test images, each a still clip with noise: the worst case of the motion
    rule's cost (a real fire flickers and a plume drifts; a photo of one does neither)."""
    rng = np.random.default_rng(2)
    clips = []
    for label in ("fire", "smoke"):
        names = sorted(os.listdir(os.path.join(TEST, label)))
        for name in sorted(rng.choice(names, size=count // 2, replace=False)):
            still = cv2.resize(cv2.imread(os.path.join(TEST, label, name)), SIZE).astype(np.float32)

            def frame(i, still=still):
                return np.clip(still + rng.normal(0, 2, still.shape), 0, 255).astype(np.uint8)

            path = write_clip(os.path.join(folder, "fire_" + os.path.splitext(name)[0] + ".avi"), frame, seconds)
            clips.append({"image": "%s/%s" % (label, name), "path": path})
    return clips


def still_scene_alerts(config, clips):
    """How many of the still clips raise an incident (each clip its own run, so one cannot hide another)."""
    raised = []
    for clip in clips:
        report = evaluate_video(config, clip["path"], None, label="none", progress=False)
        if report["incidents"]:
            raised.append(clip["image"])
    return {"clips": len(clips), "raised": len(raised), "images_raised": raised}


def looped_house_fire(config, minutes):
    """Run the bundled house fire in a loop for `minutes` of media time: incidents and the first alert."""
    from firedetd.modelspec import load_spec
    from firedetd.pipeline import Pipeline

    events = []
    video = os.path.join(REPO, "samples", "furg_house6.mp4")
    camera = replace(config.cameras[0], name="house", queue_size=2,
                     source=replace(config.cameras[0].source, uri="file://" + video, loop=True))
    run_config = replace(config, cameras=(camera,), state_dir=tempfile.mkdtemp(prefix="firedetd-loop-"))
    pipeline = Pipeline(run_config, load_spec(run_config.model.spec), sink_factory=lambda cfg: [],
                        on_alert=lambda alert, frame: events.append((alert.state, alert.kind, alert.id, frame.seq)))
    frames_wanted = int(minutes * 60 * 29.97)
    pipeline.start()
    try:
        while pipeline.postprocessor.seen < frames_wanted and pipeline.fatal_error is None:
            time.sleep(0.5)
            sys.stderr.write("\rlooped house fire: %d/%d frames" % (pipeline.postprocessor.seen, frames_wanted))
    finally:
        pipeline.stop(10.0)
    sys.stderr.write("\n")
    raised = [e for e in events if e[0] == "raised"]
    return {"minutes": minutes, "frames": pipeline.postprocessor.seen, "incidents": len(raised),
            "events": [{"state": s, "kind": k, "frame": f} for s, k, _, f in events],
            "first_alert_s": round(raised[0][3] / 29.97, 3) if raised else None}


def summarise(report):
    return {"incidents": report["incidents"], "false_alerts": len(report["false_alerts"]),
            "unusable": report.get("unusable", 0), "frames": report["frames"],
            "events": [{"label": e["label"], "start_s": e["start_s"], "time_to_any_alert_s": e["time_to_any_alert_s"],
                        "time_to_alert_s": e["time_to_alert_s"]} for e in report["events"]],
            "frame_rates": report["frame_rates"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of each poor-signal clip and the loop")
    parser.add_argument("--still-s", type=int, default=10, help="seconds each hard still scene is shown")
    parser.add_argument("--still-count", type=int, default=30, help="how many hardest none images")
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "model-report", "results", "alarm.json"))
    parser.add_argument("--parts", default="poor_signal,loop,motion", help="comma-separated; others are kept "
                                                                            "from --out when it exists")
    args = parser.parse_args()
    parts = args.parts.split(",")
    config = build_config({"http": {"enabled": False}, "alerts": {"log": False}})
    no_motion = replace(config, detection=replace(config.detection, motion=replace(config.detection.motion,
                                                                                     enabled=False)))
    folder = tempfile.mkdtemp(prefix="firedetd-alarm-")
    result = {"command": "benchmarks/alarm_trust.py --minutes %g" % args.minutes, "minutes": args.minutes}
    if os.path.isfile(args.out):
        with open(args.out) as f:
            result = dict(json.load(f), command=result["command"])
    if "poor_signal" in parts:
        result["poor_signal"] = {}
        for name, path in poor_signal_clips(folder, args.minutes * 60).items():
            report = evaluate_video(config, path, None, label="none", title=name)
            result["poor_signal"][name] = summarise(report)
    if "loop" in parts:
        result["looped_house_fire"] = looped_house_fire(config, args.minutes)
    if "motion" in parts:
        result["motion"] = {}
        measure_motion(config, no_motion, args, folder, result)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({"poor_signal": {k: v["incidents"] for k, v in result["poor_signal"].items()},
                      "looped_house_fire": {k: result["looped_house_fire"][k] for k in ("incidents", "first_alert_s")},
                      "motion": {s: r["raised"] for s, r in result["motion"].items() if ": still" in s}},
                     indent=2))


def measure_motion(config, no_motion, args, folder, result):
    labelled = [(os.path.join(REPO, "samples", "furg_house6.mp4"), os.path.join(VIDEOS, "furg_house6.xml")),
                (os.path.join(VIDEOS, "synthetic_fire_smoke_40s.mp4"),
                 os.path.join(VIDEOS, "synthetic_fire_smoke_40s.frames.csv"))]
    clips = hardest_still_scenes(config, args.still_count, args.still_s, folder)
    fires = still_fire_clips(args.still_count, args.still_s, folder)
    result["motion"]["hardest_still_none"] = [{k: c[k] for k in ("image", "score")} for c in clips]
    for setting, cfg in (("motion on", config), ("motion off", no_motion)):
        rows = {}
        for video, truth in labelled:
            title = "%s %s" % (setting, os.path.basename(video))
            rows[os.path.basename(video)] = summarise(evaluate_video(cfg, video, read_truth(truth, None, 0),
                                                                     title=title))
        result["motion"][setting] = rows
        result["motion"][setting + ": still scenes"] = still_scene_alerts(cfg, clips)
        result["motion"][setting + ": still fires"] = still_scene_alerts(cfg, fires)


if __name__ == "__main__":
    main()
