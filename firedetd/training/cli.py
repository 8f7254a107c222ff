"""Training subcommands: `firedetd train | export | study | report | federate`.

Compression runs as `firedetd study --parts compression`.

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
    train.add_argument("--source-power", type=float, default=0.5,
                       help="inside a class, draw each source (file prefix) in proportion to its size ** this")
    train.add_argument("--class-weights", default="fire=1,smoke=1,none=1",
                       help="how often each class is drawn, relative to the others")
    train.add_argument("--mining-epochs", default="5,9,12",
                       help="before these epochs (1-based, comma-separated; '' for none) re-weight the training "
                            "images by how wrong the model is on them")
    train.add_argument("--mining-boost", type=float, default=4.0, help="hard examples drawn up to 1 + this as often")
    train.add_argument("--out", type=Path, default=Path("runs/train"))
    train.add_argument("--finish", action="store_true",
                       help="a run cut off before its last epoch: score OUT's best.pt (same options as the run) and "
                            "write its result.json, without training")
    train.set_defaults(func=run_train)

    export = sub.add_parser("export", help="export a checkpoint to engines/ (ONNX FP32 + INT8 + spec)")
    add_data_arguments(export)
    export.add_argument("checkpoint", type=Path, help="best.pt of a training run")
    export.add_argument("--backbone", default="mobilenetv2")
    export.add_argument("--engines", type=Path, default=DEFAULT_ENGINES)
    export.add_argument("--version", default="1")
    export.add_argument("--calibration-images", type=int, default=300, help="training images used to calibrate INT8")
    export.add_argument("--cam", action="store_true",
                        help="add the class activation map as a second output `cam` [N, classes, h, w]")
    export.set_defaults(func=run_export)

    cam = sub.add_parser("cam-check", help="how often the class activation map's peak lies on the boxed fire/smoke")
    add_data_arguments(cam)
    cam.add_argument("checkpoint", type=Path, help="best.pt of a training run")
    cam.add_argument("--backbone", default="edgetpu")
    cam.add_argument("--spec", type=Path, default=DEFAULT_ENGINES / "firedetd.json",
                     help="the spec whose input and labels the exported model gets (the shipped one)")
    cam.add_argument("--out", type=Path, default=REPORT_DIR / "results" / "cam.json")
    cam.set_defaults(func=run_cam_check)

    study = sub.add_parser("study", help="run the training/compression experiments behind docs/model-report.md")
    add_data_arguments(study)
    study.add_argument("--results", type=Path, default=REPORT_DIR / "results")
    study.add_argument("--work", type=Path, default=Path("runs/study"))
    study.add_argument("--shipped-run", type=Path, default=Path("runs/v5-edgetpu"),
                       help="the training run whose best.pt was exported to engines/")
    study.add_argument("--parts", default="shipped,recipe,latency,errors,thresholds",
                       help="comma-separated: shipped, recipe (the --recipe-runs), backbones, lr, compression, "
                            "latency, errors, thresholds")
    study.add_argument("--recipe-runs", default="",
                       help="BACKBONE=RUN_DIR,...: finished `firedetd train` runs of the shipped recipe to compare")
    study.add_argument("--engines", type=Path, default=DEFAULT_ENGINES, help="the shipped model, timed with the rest")
    study.set_defaults(func=run_study)

    report = sub.add_parser("report", help="write docs/model-report.md and its figures from the study results")
    report.add_argument("--results", type=Path, default=REPORT_DIR / "results")
    report.add_argument("--output", type=Path, default=REPORT_DIR.parent / "model-report.md")
    report.add_argument("--engines", type=Path, default=DEFAULT_ENGINES)
    report.set_defaults(func=run_report)

    add_federate_subcommands(sub)
    from .micro_cli import add_subcommands as add_micro_subcommands  # firedetd-micro (docs/micro.md)

    add_micro_subcommands(sub)


def add_federate_subcommands(sub) -> None:
    """`firedetd federate server|client|simulate`: FedAvg of the classifier head with Flower (federated extra)."""
    federate = sub.add_parser("federate", help="federated fine-tuning of the head with Flower (federated extra)")
    roles = federate.add_subparsers(dest="role", metavar="ROLE")
    roles.required = True
    server = roles.add_parser("server", help="run the FedAvg server (holds no data)")
    server.add_argument("--address", default="127.0.0.1:8080", help="HOST:PORT to listen on")
    server.add_argument("--clients", type=int, default=4, help="clients that take part in every round")
    server.add_argument("--rounds", type=int, default=15)
    server.add_argument("--local-epochs", type=int, default=2, help="epochs each client trains per round")
    server.add_argument("--lr", type=float, default=1e-3, help="clients' learning rate")
    server.add_argument("--proximal-mu", type=float, default=0.0, help="> 0: FedProx with this proximal factor")
    server.add_argument("--out", type=Path, default=None, help="write the per-round record (JSON) here")
    server.add_argument("--save-head", type=Path, default=None,
                        help="write the head of the best round (federated validation accuracy) here (.npz)")
    server.set_defaults(func=run_federate_server)
    apply = roles.add_parser("apply", help="put a federated head on the backbone: a checkpoint for `firedetd export`")
    apply.add_argument("--head", type=Path, required=True, help="the .npz `server --save-head` wrote")
    apply.add_argument("--out", type=Path, required=True, help="the checkpoint to write (for `firedetd export OUT`)")
    apply.add_argument("--backbone", default="mobilenetv2", choices=("mobilenetv2", "mobilenetv1", "edgetpu"))
    apply.add_argument("--checkpoint", type=Path, default=None,
                       help="the clients' starting checkpoint (default: ImageNet weights, as the clients')")
    apply.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    apply.set_defaults(func=run_federate_apply)
    for name, helptext in (("client", "run one client: features of its own images, then the server's rounds"),
                           ("simulate", "run a server and K clients on 127.0.0.1, then a centralised baseline")):
        p = roles.add_parser(name, help=helptext)
        add_data_arguments(p)
        p.add_argument("--clients", type=int, default=4, help="K: the training split is divided across K clients")
        p.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration of each client's class mix")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--backbone", default="mobilenetv2", choices=("mobilenetv2", "mobilenetv1", "edgetpu"))
        p.add_argument("--checkpoint", type=Path, default=None, help="start from a trained best.pt, not ImageNet")
        p.add_argument("--head-views", type=int, default=2, help="feature views per image (1 clean + augmented)")
        p.add_argument("--size", type=int, default=224)
        p.add_argument("--max-per-class", type=int, default=0, help="use only N images per class (quick runs)")
        p.add_argument("--work", type=Path, default=Path("runs/federated"), help="feature caches and logs")
    client = roles.choices["client"]
    client.add_argument("--client-id", type=int, required=True, help="this client's share: 0..K-1")
    client.add_argument("--address", default="127.0.0.1:8080", help="the server's HOST:PORT")
    client.set_defaults(func=run_federate_client)
    simulate = roles.choices["simulate"]
    simulate.add_argument("--rounds", type=int, default=15)
    simulate.add_argument("--local-epochs", type=int, default=2)
    simulate.add_argument("--lr", type=float, default=1e-3)
    simulate.add_argument("--proximal-mu", type=float, default=0.0, help="> 0: FedProx with this proximal factor")
    simulate.add_argument("--port", type=int, default=0, help="server port on 127.0.0.1 (0: a free one)")
    simulate.add_argument("--results", type=Path, default=None,
                          help="also copy the result here (docs/model-report/results/federated.json)")
    simulate.set_defaults(func=run_federate_simulate)


def run_train(args) -> int:
    from .train import TrainConfig, train

    train(TrainConfig(data=args.data, out=args.out, weights=args.weights, backbone=args.backbone, mode=args.mode,
                      epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, size=args.size,
                      patience=args.patience, seed=args.seed, threads=args.threads,
                      max_per_class=args.max_per_class, progress=args.progress, source_power=args.source_power,
                      mining_epochs=parse_epochs(args.mining_epochs), mining_boost=args.mining_boost,
                      class_weights=parse_class_weights(args.class_weights), finish=args.finish))
    return 0


def parse_epochs(text: str) -> tuple[int, ...]:
    """'5,9,12' -> (5, 9, 12); the empty string -> ()."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SystemExit(f"firedetd: --mining-epochs {text!r}: expected comma-separated epoch numbers")


def parse_class_weights(text: str) -> tuple[float, ...]:
    """'fire=1,smoke=1.5,none=1' -> (1.0, 1.5, 1.0) in label order; unnamed classes weigh 1."""
    from .data import LABELS

    weights = dict.fromkeys(LABELS, 1.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in weights:
            raise SystemExit(f"firedetd: --class-weights: unknown class {name!r}; classes: {', '.join(LABELS)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise SystemExit(f"firedetd: --class-weights: {part!r} is not CLASS=NUMBER")
    return tuple(weights[label] for label in LABELS)


def run_export(args) -> int:
    from .ship import ship_model

    ship_model(args.checkpoint, args.backbone, args.engines, args.data, args.version, args.calibration_images,
               progress=args.progress, cam=args.cam)
    return 0


def run_cam_check(args) -> int:
    from .cam import run_cam_check as check

    summary = check(args.checkpoint, args.backbone, args.data, args.spec, args.out, args.progress)["summary"]
    for label, s in summary.items():
        print(f"{label}: peak in a {label if label != 'all' else 'matching'} box on {s['peak_in_box']:.1%} of "
              f"{s['photos']} photos (image centre {s['baseline_centre_in_box']:.1%}, random point "
              f"{s['baseline_random_point_in_box']:.1%})")
    print(f"wrote {args.out}")
    return 0


def run_study(args) -> int:
    from .study import run_study as study

    pairs = [part.split("=", 1) for part in args.recipe_runs.split(",") if "=" in part]
    recipe = [(backbone, Path(run_dir)) for backbone, run_dir in pairs]
    study(args.data, args.weights, args.results, args.work, args.shipped_run, args.parts.split(","), args.threads,
          args.progress, args.engines, recipe)
    return 0


def federated_config(args):
    from .federated import FederatedConfig

    return FederatedConfig(data=args.data, work=args.work, weights=args.weights, backbone=args.backbone,
                           checkpoint=args.checkpoint, clients=args.clients, alpha=args.alpha, seed=args.seed,
                           rounds=getattr(args, "rounds", 15), local_epochs=getattr(args, "local_epochs", 2),
                           lr=getattr(args, "lr", 1e-3), proximal_mu=getattr(args, "proximal_mu", 0.0),
                           head_views=args.head_views, size=args.size,
                           max_per_class=args.max_per_class, threads=args.threads, progress=args.progress)


def run_federate_server(args) -> int:
    from .federated import run_server

    result = run_server(args.address, args.rounds, args.clients, args.local_epochs, args.lr, args.out,
                        args.proximal_mu, args.save_head)
    last = result["rounds"][-1] if result["rounds"] else {}
    print(f"federated: {len(result['rounds'])} rounds, test accuracy {last.get('test_accuracy', float('nan')):.4f}")
    return 0


def run_federate_apply(args) -> int:
    from .federated import apply_head

    info = apply_head(args.head, args.backbone, args.weights, args.checkpoint, args.out)
    print(f"{args.out}: {info['backbone']} ({info['start']}) with the head of round {info['round']} "
          f"(federated val accuracy {info['val_accuracy']:.4f}); ship it with `firedetd export {args.out}`")
    return 0


def run_federate_client(args) -> int:
    from .federated import run_client

    run_client(federated_config(args), args.client_id, args.address)
    return 0


def run_federate_simulate(args) -> int:
    import json

    from .federated import free_port, simulate

    result = simulate(federated_config(args), f"127.0.0.1:{args.port or free_port()}")
    if args.results is not None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(result, indent=2))
    fed, central = result["federated"]["rounds"][-1], result["centralised"]["rounds"][-1]
    print(f"after {result['rounds']} rounds: federated test accuracy {fed['test_accuracy']:.4f}, "
          f"centralised {central['test_accuracy']:.4f}")
    return 0


def run_report(args) -> int:
    from .report import write_report

    print(write_report(args.results, args.output, args.engines))
    return 0
