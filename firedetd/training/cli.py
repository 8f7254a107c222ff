"""Training subcommands: `firedetd train | export | study | compress | report`.

Registered only where the training package imports (Python 3.8+); torch is imported when a
command runs, so `firedetd --help` stays light.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fire-smoke"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2].parent / "shared" / "weights"
DEFAULT_ENGINES = Path(__file__).resolve().parents[2] / "engines"
REPORT_DIR = Path(__file__).resolve().parents[2] / "docs" / "model-report"


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="fire-smoke dataset root ({train,val,test}/{fire,smoke,none})")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS,
                   help="folder with the pretrained backbones (WEIGHTS.md)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-progress", dest="progress", action="store_false")


def add_subcommands(sub) -> None:
    train = sub.add_parser("train", help="train the classifier (needs the train extra)")
    add_data_arguments(train)
    train.add_argument("--backbone", default="mobilenetv2", choices=("mobilenetv2", "mobilenetv1", "edgetpu"))
    train.add_argument("--mode", default="full", choices=("head", "full", "scratch"))
    train.add_argument("--epochs", type=int, default=16)
    train.add_argument("--lr", type=float, default=2e-4)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--size", type=int, default=224)
    train.add_argument("--patience", type=int, default=5)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-per-class", type=int, default=0, help="use only N images per class (quick runs)")
    train.add_argument("--out", type=Path, default=Path("runs/train"))
    train.set_defaults(func=run_train)

    export = sub.add_parser("export", help="export a checkpoint to engines/ (ONNX FP32 + INT8 + spec)")
    add_data_arguments(export)
    export.add_argument("checkpoint", type=Path, help="best.pt of a training run")
    export.add_argument("--backbone", default="mobilenetv2")
    export.add_argument("--engines", type=Path, default=DEFAULT_ENGINES)
    export.add_argument("--version", default="1")
    export.add_argument("--calibration-images", type=int, default=300, help="training images used to calibrate INT8")
    export.set_defaults(func=run_export)

    study = sub.add_parser("study", help="run the training/compression experiments behind docs/model-report.md")
    add_data_arguments(study)
    study.add_argument("--results", type=Path, default=REPORT_DIR / "results")
    study.add_argument("--work", type=Path, default=Path("runs/study"))
    study.add_argument("--shipped-run", type=Path, default=Path("runs/ship-v2-full"),
                       help="the training run whose best.pt was exported to engines/")
    study.add_argument("--parts", default="shipped,backbones,lr,compression")
    study.set_defaults(func=run_study)

    report = sub.add_parser("report", help="write docs/model-report.md and its figures from the study results")
    report.add_argument("--results", type=Path, default=REPORT_DIR / "results")
    report.add_argument("--output", type=Path, default=REPORT_DIR.parent / "model-report.md")
    report.add_argument("--engines", type=Path, default=DEFAULT_ENGINES)
    report.set_defaults(func=run_report)


def run_train(args) -> int:
    from .train import TrainConfig, train

    train(TrainConfig(data=args.data, out=args.out, weights=args.weights, backbone=args.backbone, mode=args.mode,
                      epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, size=args.size,
                      patience=args.patience, seed=args.seed, threads=args.threads,
                      max_per_class=args.max_per_class, progress=args.progress))
    return 0


def run_export(args) -> int:
    from .ship import ship_model

    ship_model(args.checkpoint, args.backbone, args.engines, args.data, args.version, args.calibration_images,
               progress=args.progress)
    return 0


def run_study(args) -> int:
    from .study import run_study as study

    study(args.data, args.weights, args.results, args.work, args.shipped_run, args.parts.split(","), args.threads,
          args.progress)
    return 0


def run_report(args) -> int:
    from .report import write_report

    print(write_report(args.results, args.output, args.engines))
    return 0
