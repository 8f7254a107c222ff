"""Subcommands for firedetd-micro: `firedetd train-micro | export-micro | micro-eval | micro-simulate`.

Registered with the training subcommands (Python 3.8+); each imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..micro import MICRO_DIR, SPEC_NAME

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "fire-smoke"
DEFAULT_VIDEOS = REPO.parent / "shared" / "data" / "video"


def add_subcommands(sub) -> None:
    train = sub.add_parser("train-micro", help="distil the 96x96 firedetd-micro student from the shipped model")
    train.add_argument("--data", type=Path, default=DEFAULT_DATA)
    train.add_argument("--teacher", type=Path, default=REPO / "engines" / "firedetd.onnx")
    train.add_argument("--out", type=Path, default=Path("runs/micro"))
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--views", type=int, default=3, help="views per training image in the teacher's bank")
    train.add_argument("--max-per-class", type=int, default=0)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--pretrained", type=Path, default=REPO.parent / "shared" / "weights",
                       help="the shared weights folder: start from MobileNetV1's strongest channels ('' for scratch)")
    train.add_argument("--none-weight", type=float, default=1.5, help="how often `none` is drawn against each of "
                                                                       "fire and smoke")
    train.add_argument("--smoke-weight", type=float, default=1.0, help="how often smoke is drawn against fire")
    train.set_defaults(func=run_train_micro)

    export = sub.add_parser("export-micro", help="convert a firedetd-micro checkpoint to INT8 .tflite + C array "
                                                 "(needs the converter venv, docs/micro.md)")
    export.add_argument("checkpoint", type=Path, nargs="?", help="best.pt of train-micro; omit with --c-only")
    export.add_argument("--data", type=Path, default=DEFAULT_DATA)
    export.add_argument("--out", type=Path, default=Path(MICRO_DIR))
    export.add_argument("--calibration-images", type=int, default=420)
    export.add_argument("--version", default="1")
    export.add_argument("--c-only", action="store_true",
                        help="only (re)write the C array from the spec and .tflite in --out (no converter needed)")
    export.set_defaults(func=run_export_micro)

    evaluate = sub.add_parser("micro-eval", help="measure the .tflite in tflite-micro and ai-edge-litert")
    evaluate.add_argument("--spec", type=Path, default=Path(MICRO_DIR) / SPEC_NAME)
    evaluate.add_argument("--data", type=Path, default=DEFAULT_DATA)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--checkpoint", type=Path, help="the float student, to compare against")
    evaluate.add_argument("--videos", nargs="*", default=None, help="labelled videos (default: ../shared/data/video)")
    evaluate.add_argument("--output", type=Path, help="write the results JSON here")
    evaluate.set_defaults(func=run_micro_eval)

    simulate = sub.add_parser("micro-simulate", help="a simulated board: a video through TFLM, alerts over MQTT")
    simulate.add_argument("video")
    simulate.add_argument("--spec", type=Path, default=Path(MICRO_DIR) / SPEC_NAME)
    simulate.add_argument("--mqtt-host", default="127.0.0.1")
    simulate.add_argument("--mqtt-port", type=int, default=1883)
    simulate.add_argument("--device", default="micro-sim")
    simulate.add_argument("--camera", default="micro")
    simulate.add_argument("--decide-fps", type=float, default=5.0, help="frames decided per second of video")
    simulate.set_defaults(func=run_micro_simulate)


def run_train_micro(args: argparse.Namespace) -> int:
    from .micro import MicroTrainConfig, train_micro

    pretrained = args.pretrained if str(args.pretrained) not in ("", ".") else None
    result = train_micro(MicroTrainConfig(data=args.data, out=args.out, teacher=args.teacher, epochs=args.epochs,
                                          views=args.views, max_per_class=args.max_per_class, seed=args.seed,
                                          lr=args.lr, pretrained=pretrained, none_weight=args.none_weight,
                                          smoke_weight=args.smoke_weight))
    print(json.dumps({k: result[k] for k in ("parameters", "best_epoch", "temperature", "train_seconds")}))
    return 0


def run_export_micro(args: argparse.Namespace) -> int:
    if args.c_only:
        from ..micro import load_micro_spec
        from ..micro.carray import write_c_array

        for path in write_c_array(load_micro_spec(str(args.out / SPEC_NAME)), str(args.out)):
            print(path)
        return 0
    if args.checkpoint is None:
        raise SystemExit("firedetd export-micro: give a checkpoint, or --c-only")
    try:
        from .micro_convert import export_micro
    except ImportError as e:
        raise SystemExit(f"firedetd export-micro needs the converter venv (docs/micro.md): {e}")
    export_micro(args.checkpoint, args.data, args.out, args.calibration_images, args.version)
    return 0


def run_micro_eval(args: argparse.Namespace) -> int:
    from ..micro import load_micro_spec
    from ..micro.estimate import estimate_latency_ms
    from .micro_evaluate import evaluate_split, evaluate_videos, write_results

    spec = load_micro_spec(str(args.spec))
    results = {"model": {"name": spec.name, "version": spec.version, "tflite_bytes": len(spec.model_bytes()),
                         "arena_bytes": spec.arena_bytes},
               "latency_estimate": estimate_latency_ms(spec.model_bytes())}
    results[args.split] = evaluate_split(spec, args.data, args.split, args.checkpoint)
    videos = args.videos
    if videos is None:
        videos = sorted(str(p) for p in DEFAULT_VIDEOS.glob("*.mp4")) if DEFAULT_VIDEOS.is_dir() else []
    results["videos"] = evaluate_videos(spec, videos)
    text = json.dumps(results, indent=2)
    if args.output:
        write_results(args.output, results)
    print(text)
    return 0


def run_micro_simulate(args: argparse.Namespace) -> int:
    from ..alerts.mqtt import MqttSink
    from ..config import MqttConfig, build_config
    from ..micro import load_micro_spec
    from ..micro.runtime import MicroInterpreter
    from ..micro.simulate import BoardSimulator, run_video

    spec = load_micro_spec(str(args.spec))
    sink = MqttSink("mqtt", MqttConfig(host=args.mqtt_host, port=args.mqtt_port), args.device, "", (args.camera,))
    board = BoardSimulator(spec, MicroInterpreter(spec.model_bytes(), spec.arena_bytes),
                           build_config({}, {}).detection, camera=args.camera, sinks=[sink])
    try:
        report = run_video(board, args.video, args.decide_fps)
    finally:
        board.close()
        sink.close()
    for event in report["events"]:
        print(f"{event['t_s']:7.2f} s  {event['kind']:5s} {event['state']:9s} score {event['score']:.3f}")
    print(f"{report['decided']} of {report['frames']} frames decided in {report['seconds']} s; "
          f"{len(report['raised'])} alert(s) raised")
    return 0
