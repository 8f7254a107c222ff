"""The model report's "Federated fine-tuning" section (`firedetd report`), from `firedetd federate simulate` results.

Pure rendering of docs/model-report/results/federated*.json (group "federated"): a table per federation against
centralised training on the same features, one row per round for the main run, the traffic, and a figure.
Kept apart from report.py so the federated experiment owns its text; report.py calls `federated_section`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import LABELS
from .models import BACKBONES
from .report import pct, plt


def kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def best_by_val(rounds: list[dict]) -> dict:
    """The round a user would keep: best validation accuracy, earliest on ties (validation is federated too)."""
    return max(rounds, key=lambda r: (r["val_accuracy"], -r["round"]))


def federation_name(run: dict) -> str:
    strategy = run.get("strategy", "FedAvg")
    mu = f" μ={run['proximal_mu']:g}" if strategy == "FedProx" else ""
    return f"{strategy}{mu}, {run['clients']} clients, α={run['alpha']:g}"


def fire_recall(confusion: list[list[int]]) -> float:
    fire = LABELS.index("fire")
    return confusion[fire][fire] / max(sum(confusion[fire]), 1)


def plot_federated(runs: list[dict], path: Path) -> None:
    """Test accuracy per round of each federation and of centralised training; cumulative bytes sent."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for run in runs:
        fed = run["federated"]["rounds"]
        axes[0].plot([r["round"] for r in fed], [r["test_accuracy"] for r in fed], marker=".",
                     label=federation_name(run))
    central = runs[0]["centralised"]["rounds"]
    axes[0].plot([r["round"] for r in central], [r["test_accuracy"] for r in central], color="black", ls="--",
                 label=f"centralised, same epochs (α={runs[0]['alpha']:g} features)")
    axes[0].set_xlabel(f"round ({runs[0]['local_epochs']} local epochs each)")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_ylim(0.3, 1.0)
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    run = runs[0]
    fed = run["federated"]["rounds"]
    rounds = [r["round"] for r in fed]
    sent = np.cumsum([r["bytes_to_clients"] + r["bytes_from_clients"] for r in fed]) / 2**20
    axes[1].plot(rounds, sent, marker=".", label="FedAvg: head parameters, both ways")
    axes[1].axhline(run["train_image_bytes"] / 2**20, color="red", ls="--", label="shipping the training images once")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("round")
    axes[1].set_ylabel("MiB sent, cumulative")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def federated_section(runs: dict[str, dict], figures: Path) -> list[str]:
    """'Federated fine-tuning' of the report, from `firedetd federate simulate` results (group "federated")."""
    ordered = sorted(runs.values(), key=lambda r: (-r["alpha"], r.get("proximal_mu", 0.0)))
    plot_federated(ordered, figures / "federated.png")
    main = ordered[0]
    fed, central = main["federated"]["rounds"], main["centralised"]["rounds"]
    lines = ["## Federated fine-tuning (Flower, FedAvg)", "",
             FEDERATED_TEXT.format(clients=main["clients"], alpha=main["alpha"], rounds=main["rounds"],
                                   epochs=main["local_epochs"], lr=main["lr"], views=main["head_views"],
                                   backbone=BACKBONES[main["backbone"]].title), ""]
    shown = set()
    for run in ordered:
        if run["alpha"] not in shown:
            shown.add(run["alpha"])
            mix = "; ".join(f"client {m['client']}: {m['images']} ({', '.join(f'{m[k]} {k}' for k in LABELS)})"
                            for m in run["client_mix"])
            lines += [f"Training images per client (α = {run['alpha']:g}): {mix}.", ""]
    lines += ["| federation | selected round (best val) | test accuracy | fire recall | none → fire/smoke | "
              "final round test accuracy | centralised, selected the same way | centralised fire recall |",
              "|---|---|---|---|---|---|---|---|"]
    for run in ordered:
        f, c = run["federated"]["rounds"], run["centralised"]["rounds"][1:]
        fb, cb = best_by_val(f), best_by_val(c)
        epoch = cb["round"] * run["local_epochs"]
        lines.append(f"| {federation_name(run)} | {fb['round']} | {pct(fb['test_accuracy'])} | "
                     f"{pct(fire_recall(fb['test_confusion']))} | {pct(fb['test_none_false_alarm_rate'])} | "
                     f"{pct(f[-1]['test_accuracy'])} | {pct(cb['test_accuracy'])} (epoch {epoch}) "
                     f"| {pct(fire_recall(cb['test_confusion']))} |")
    lines += ["", f"The starting head (round 0) scores {pct(central[0]['test_accuracy'])}. Per round "
              f"({federation_name(main)}):", "",
              "| round | FedAvg val | FedAvg test | centralised val | centralised test | sent to clients | "
              "sent by clients |", "|---|---|---|---|---|---|---|"]
    for r, c in zip(fed, central[1:]):
        lines.append(f"| {r['round']} | {pct(r['val_accuracy'])} | {pct(r['test_accuracy'])} | "
                     f"{pct(c['val_accuracy'])} | {pct(c['test_accuracy'])} | {kib(r['bytes_to_clients'])} | "
                     f"{kib(r['bytes_from_clients'])} |")
    per_round = fed[0]["bytes_to_clients"] + fed[0]["bytes_from_clients"]
    total = sum(r["bytes_to_clients"] + r["bytes_from_clients"] for r in fed)
    lines += ["", f"Traffic: {kib(per_round)} per round for {main['clients']} clients (the head's two arrays, "
              f"{kib(fed[0]['bytes_from_clients'] / main['clients'])} per message: down for training and for "
              f"evaluation, up after training; evaluation answers are confusion matrices of a few bytes), "
              f"{total / 2**20:.2f} MiB for all {len(fed)} rounds, against {main['train_image_bytes'] / 2**20:.1f} "
              "MiB of training images that centralised training would have to collect.", "",
              "![federated fine-tuning](model-report/federated.png)", "", federated_findings(ordered), ""]
    if any(run["alpha"] <= 0.1 for run in ordered):
        lines += [FEDERATED_SKEW, ""]
    lines += [FEDERATED_CAVEATS, ""]
    return lines


def federated_findings(ordered: list[dict]) -> str:
    """What the numbers say, computed from them: the gap to centralised training, and where each run peaks."""
    gaps = []
    for run in ordered:
        fb = best_by_val(run["federated"]["rounds"])
        cb = best_by_val(run["centralised"]["rounds"][1:])
        gaps.append(f"{100 * (fb['test_accuracy'] - cb['test_accuracy']):+.1f} points ({federation_name(run)})")
    main = ordered[0]
    fed, central = main["federated"]["rounds"], main["centralised"]["rounds"][1:]
    fb, cb = best_by_val(fed), best_by_val(central)
    test_n = sum(map(sum, fed[-1]["test_confusion"]))
    return (f"Test accuracy of the federation minus that of centralised training, each at its best validation "
            f"round: {'; '.join(gaps)}. There are {test_n} test images, so one image is {100 / test_n:.2f} "
            f"points. With α = {main['alpha']:g}, validation accuracy peaks at round {fb['round']} for FedAvg and "
            f"round {cb['round']} for the centralised head (then {pct(fed[-1]['val_accuracy'])} and "
            f"{pct(central[-1]['val_accuracy'])} at round {fed[-1]['round']}) while the training loss keeps "
            "falling: the head overfits the training features either way, so the round to keep is chosen on "
            "validation, which a federation can do as well as a central trainer.")


FEDERATED_TEXT = """`firedetd federate simulate`: one Flower server and {clients} client processes on 127.0.0.1 talking
gRPC, as devices would. The training split is divided across the clients by a Dirichlet draw over classes
(α = {alpha:g}, seeded: small α, few classes per client); validation and test are divided evenly, so the
federated evaluation (each client scores its share, the server sums the confusion matrices) covers exactly
the images the centralised head is scored on. Each client runs the frozen ImageNet {backbone} over its own
images ({views} views each: one clean, the rest augmented) and keeps the features; FedAvg (Flower's, weighted by
images per client) averages the classifier head only; {rounds} rounds of {epochs} local epochs (AdamW, lr
{lr:g}, class-balanced sampling, label smoothing 0.1). The server holds no data path and opens no image (an
audit hook checks it), and refuses any array that is not one of the head's. The centralised baseline trains
the same head from the same start on the union of the clients' features, {epochs} epochs per "round", one
optimizer throughout: the same number of passes over the same data. Head only, because features are cached
once and a round then costs each client milliseconds and 15 KiB each way; federating the last 1x1 conv
block (0.4 M parameters) would cost 1.6 MiB per message and need the 7×7×320 maps cached per view."""

FEDERATED_SKEW = """With α = 0.1 the clients hold almost disjoint classes (one client only fire, one no fire at all):
each client's local epochs pull its head towards its own classes, and the average of such heads no longer
separates fire from smoke, so fire images are called smoke: the fire recall column. The centralised head,
trained on the same features, does not have the problem, so it is the federation, not the data. FedProx
(Flower's; the clients add μ/2·|w − w_global|² to their loss) recovers part of it. Not measured here: less
local work per round (more rounds, so more bytes), or a small shared labelled set on every client so each
holds all three classes. A fleet whose devices each see one kind of scene needs one of them before its
federated head can be trusted with fire."""

FEDERATED_CAVEATS = """What this does not show: a linear head on frozen features is the easy case for FedAvg (a convex
objective, one shared feature extractor); federating deeper layers would meet more client drift. On real
devices the labels are the hard part: a device's training set would be its alert snapshots confirmed or
rejected by an operator plus sampled quiet frames (docs/fleet.md). The parameters of a linear head on pooled
features still say something about a client's class mix; secure aggregation or differential privacy (both in
Flower) are the next step if that matters."""
