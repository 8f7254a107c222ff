"""Federated fine-tuning of the classifier head with Flower (FedAvg): `firedetd federate server|client|simulate`,
and `apply` to put the federated head on the backbone as a checkpoint that `firedetd export` ships.

Each client (a device, or a process standing in for one) keeps its images: it runs the frozen backbone over
them once, caches the features on its own disk, and trains only the classifier head (a linear layer on the
pooled 1280 features of MobileNetV2) on them. What crosses the network is the head's parameters, down from
the server and up from each client, plus per-split confusion matrices for evaluation; the server runs FedAvg
(Flower's, weighted by each client's number of training images) and never sees an image or a feature.

Why the head only: the backbone's features are computed once and cached (1280 floats per view), so a round
costs a client milliseconds, and a round sends 15 KB per client each way. The last 1x1 conv block (320 -> 1280
channels, 0.4 M parameters) would cost 1.6 MB per client each way and, as it sits before the global pooling
and a ReLU6, would need the 7x7x320 feature maps cached per view: 50x the memory on a Jetson.

Transport: Flower's gRPC server and clients (`flwr.server.start_server`, `start_client`), one process each, on
any address; `simulate` runs them all on 127.0.0.1 as separate processes, as real devices would be, and
trains the same head centrally on the union of the clients' features with the same budget for comparison.
Flower marks that API deprecated in favour of its SuperLink/SuperNode deployment (docs/fleet.md says how to
move); it needs no Ray and no app bundle, which keeps the devices' side a single command.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import FiredetdError
from .data import IMAGE_SUFFIXES, LABELS, Sample, list_split, load_images
from .evaluate import classification_metrics, confusion_matrix
from .train import (
    TrainConfig,
    clean_batch,
    compute_head_features,
    extract_features,
    limit_per_class,
    seed_everything,
)

log = logging.getLogger(__name__)

CLIENT_WAIT_S = 3600  # how long a client keeps trying to reach a server that is not up yet


def import_flwr():
    """The `flwr` package, or a FiredetdError saying which extra installs it."""
    try:
        import flwr
    except ImportError as e:
        raise FiredetdError(f"federated training needs Flower: pip install -e '.[federated]' ({e})") from e
    return flwr


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FederatedConfig:
    data: Path
    work: Path
    weights: Path | None = None
    backbone: str = "mobilenetv2"
    checkpoint: Path | None = None   # start from a trained model (backbone and head) instead of ImageNet + new head
    clients: int = 4
    alpha: float = 0.5               # Dirichlet concentration of the class mix per client: small = skewed
    seed: int = 0
    rounds: int = 15
    local_epochs: int = 2
    lr: float = 1e-3
    proximal_mu: float = 0.0         # > 0: FedProx, each client's loss pulls its head towards the global one
    batch_size: int = 32
    head_views: int = 2
    size: int = 224
    max_per_class: int = 0
    threads: int = 2
    progress: bool = False
    train: TrainConfig = field(init=False)

    def __post_init__(self):
        # the feature and sampling settings of head-only training (train.py), so the two stay comparable
        self.train = TrainConfig(data=self.data, out=self.work, weights=self.weights, backbone=self.backbone,
                                 mode="head", lr=self.lr, batch_size=self.batch_size, seed=self.seed, size=self.size,
                                 threads=self.threads, head_views=self.head_views, progress=self.progress)


# ---------------------------------------------------------------- partitioning (every client computes the same)

def dirichlet_partition(labels: np.ndarray, clients: int, alpha: float, seed: int,
                        min_size: int = 1) -> list[np.ndarray]:
    """Split sample indices across `clients` with a class mix per client drawn from Dirichlet(alpha): each index
    in exactly one client, at least `min_size` per client, the same result for the same inputs."""
    if clients < 1:
        raise ValueError(f"clients must be >= 1, not {clients}")
    if len(labels) < clients * min_size:
        raise ValueError(f"{len(labels)} samples cannot give {clients} clients {min_size} each")
    rng = np.random.default_rng(seed)
    for _ in range(1000):  # redraw the rare split that leaves a client (almost) empty
        shares: list[list[int]] = [[] for _ in range(clients)]
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            cuts = (np.cumsum(rng.dirichlet(np.full(clients, alpha))) * len(members)).astype(int)[:-1]
            for client, part in enumerate(np.split(members, cuts)):
                shares[client].extend(part.tolist())
        if min(len(s) for s in shares) >= min_size:
            return [np.sort(np.array(s, dtype=np.int64)) for s in shares]
    raise ValueError(f"no Dirichlet({alpha}) split gave each of {clients} clients {min_size} samples")


def stratified_partition(labels: np.ndarray, clients: int, seed: int) -> list[np.ndarray]:
    """Deal each class's shuffled indices round-robin: every client gets a near-equal share of every class."""
    rng = np.random.default_rng(seed)
    shares: list[list[int]] = [[] for _ in range(clients)]
    for label in np.unique(labels):
        for position, index in enumerate(rng.permutation(np.flatnonzero(labels == label))):
            shares[position % clients].append(int(index))
    return [np.sort(np.array(s, dtype=np.int64)) for s in shares]


def client_samples(cfg: FederatedConfig, client_id: int) -> dict[str, list[Sample]]:
    """This client's share of each split: train non-IID (Dirichlet), val and test stratified (their union is the
    whole split, so the federated evaluation scores the same images as the centralised one)."""
    if not 0 <= client_id < cfg.clients:
        raise ValueError(f"client id {client_id} is not in 0..{cfg.clients - 1}")
    shares = {}
    for offset, split in enumerate(("train", "val", "test")):
        samples = limit_per_class(list_split(cfg.data, split), cfg.max_per_class)
        labels = np.array([s.label for s in samples])
        if split == "train":
            parts = dirichlet_partition(labels, cfg.clients, cfg.alpha, cfg.seed)
        else:
            parts = stratified_partition(labels, cfg.clients, cfg.seed + offset)
        shares[split] = [samples[i] for i in parts[client_id]]
    return shares


# ---------------------------------------------------------------- local features (never leave the client)

@dataclass
class LocalFeatures:
    """A client's cached backbone features: train rows are `head_views` views of each local training image."""
    train: torch.Tensor
    train_labels: torch.Tensor
    train_rare: torch.Tensor
    images: int
    val: torch.Tensor
    val_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    head: dict  # the starting head's state_dict

    def save(self, path: Path, key: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, **self.__dict__}, path)

    @classmethod
    def load(cls, path: Path, key: str | None = None) -> LocalFeatures | None:
        """The cached features, or None when absent or computed from other inputs (`key`; None: any)."""
        if not path.is_file():
            return None
        state = torch.load(path, weights_only=True)
        if key is not None and state["key"] != key:
            return None
        del state["key"]
        return cls(**state)


def cache_key(cfg: FederatedConfig, shares: dict[str, list[Sample]]) -> str:
    """What the cached features depend on: the images, the backbone and starting point, views and size."""
    digest = hashlib.sha256()
    for split in ("train", "val", "test"):
        digest.update("\n".join(f"{split}/{s.path.parent.name}/{s.path.name}" for s in shares[split]).encode())
    digest.update(json.dumps([cfg.backbone, str(cfg.checkpoint), cfg.head_views, cfg.size, cfg.seed]).encode())
    return digest.hexdigest()


def build_model(cfg: FederatedConfig) -> nn.Module:
    """The backbone and starting head: a trained checkpoint, or ImageNet weights with a new seeded head."""
    from .export import load_checkpoint
    from .models import build_classifier

    seed_everything(cfg.seed)  # every client starts from the same head
    if cfg.checkpoint is not None:
        return load_checkpoint(cfg.checkpoint, cfg.backbone).to(memory_format=torch.channels_last)
    return build_classifier(cfg.backbone, len(LABELS), cfg.weights).to(memory_format=torch.channels_last)


def compute_local_features(cfg: FederatedConfig, shares: dict[str, list[Sample]]) -> LocalFeatures:
    """Decode this client's images and run the frozen backbone over them: train views, val and test."""
    torch.set_num_threads(cfg.threads)
    model = build_model(cfg)
    train_images = load_images(shares["train"], progress=cfg.progress)
    val_images = load_images(shares["val"], progress=cfg.progress)
    train, val = compute_head_features(model, train_images, val_images, cfg.train)
    del train_images, val_images
    test_images = load_images(shares["test"], progress=cfg.progress)
    batches = (clean_batch(test_images[i:i + 64], cfg.size) for i in range(0, len(test_images), 64))
    test = extract_features(model, batches, cfg.progress, "features test", (len(test_images) + 63) // 64)
    views = cfg.head_views
    labels = [s.label for s in shares["train"]]
    rare = [s.origin in cfg.train.rare_origins for s in shares["train"]]
    return LocalFeatures(
        train=train, train_labels=torch.tensor(labels * views), train_rare=torch.tensor(rare * views),
        images=len(labels), val=val, val_labels=torch.tensor([s.label for s in shares["val"]]),
        test=test, test_labels=torch.tensor([s.label for s in shares["test"]]),
        head={k: v.detach().clone() for k, v in model.classifier.state_dict().items()})


def local_features(cfg: FederatedConfig, client_id: int) -> LocalFeatures:
    """This client's features, from its cache in work/client-<id>/ when the inputs are unchanged."""
    shares = client_samples(cfg, client_id)
    key = cache_key(cfg, shares)
    path = feature_cache_path(cfg.work, client_id)
    cached = LocalFeatures.load(path, key)
    if cached is not None:
        return cached
    started = time.time()
    features = compute_local_features(cfg, shares)
    features.save(path, key)
    counts = np.bincount(features.train_labels[:features.images].numpy(), minlength=len(LABELS))
    mix = ", ".join(f"{n} {label}" for label, n in zip(LABELS, counts))
    print(f"client {client_id}: {features.images} training images ({mix}), features in {time.time() - started:.0f} s",
          flush=True)
    return features


def feature_cache_path(work: Path, client_id: int) -> Path:
    """Where client `client_id` keeps its features (its own disk, on a device)."""
    return Path(work) / f"client-{client_id}" / "features.pt"


# ---------------------------------------------------------------- the head: training and scoring

def balanced_weights(labels: torch.Tensor, rare: torch.Tensor, rare_weight: float) -> torch.Tensor:
    """Class-balanced sampling weights over the rows present, rare hard cases drawn `rare_weight` times as often
    (train.sampling_weights, for feature rows)."""
    counts = torch.bincount(labels, minlength=len(LABELS)).double()
    weights = 1.0 / counts[labels]
    return weights * torch.where(rare, rare_weight, 1.0).double()


def make_head(state: dict) -> nn.Linear:
    """A linear head holding `state` (a classifier state_dict)."""
    weight = state["weight"]
    head = nn.Linear(weight.shape[1], weight.shape[0])
    head.load_state_dict(state)
    return head


def head_arrays(head: nn.Linear) -> list[np.ndarray]:
    """The head's parameters as Flower sends them: [weight (classes x features), bias (classes)]."""
    return [head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy()]


def set_head(head: nn.Linear, arrays: list[np.ndarray]) -> None:
    """Load [weight, bias] as received from Flower into `head`."""
    head.load_state_dict({"weight": torch.from_numpy(np.asarray(arrays[0])),
                          "bias": torch.from_numpy(np.asarray(arrays[1]))})


def new_optimizer(head: nn.Linear, lr: float, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the head, with head-only training's weight decay."""
    return torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=cfg.weight_decay)


def train_head(head: nn.Linear, feats: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, epochs: int,
               optimizer: torch.optim.Optimizer, cfg: TrainConfig, generator: torch.Generator,
               proximal_mu: float = 0.0) -> float:
    """`epochs` passes of class-balanced sampling over the feature rows; the mean training loss (without the
    FedProx term `proximal_mu / 2 * |head - head at start|^2`, added to the loss when proximal_mu > 0)."""
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    anchor = [p.detach().clone() for p in head.parameters()]
    total, seen = 0.0, 0
    for _ in range(epochs):
        order = torch.multinomial(weights, len(feats), replacement=True, generator=generator)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            loss = loss_fn(head(feats[idx]), labels[idx])
            total += loss.item() * len(idx)
            seen += len(idx)
            if proximal_mu > 0:
                loss = loss + proximal_mu / 2 * sum(((p - a) ** 2).sum() for p, a in zip(head.parameters(), anchor))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return total / max(seen, 1)


@torch.no_grad()
def head_confusion(head: nn.Linear, feats: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, float]:
    """(confusion matrix, summed cross-entropy) of the head's argmax on one split."""
    if len(feats) == 0:
        return np.zeros((len(LABELS), len(LABELS)), dtype=np.int64), 0.0
    logits = head(feats)
    loss = float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
    return confusion_matrix(labels.numpy(), logits.argmax(1).numpy(), len(LABELS)), loss


def metrics_from_confusion(confusion: np.ndarray) -> dict:
    """Accuracy, per-class precision/recall and the none false-alarm rate of a summed confusion matrix."""
    confusion = np.asarray(confusion)
    labels = np.repeat(np.arange(len(LABELS)), confusion.sum(1))
    predicted = np.concatenate([np.repeat(np.arange(len(LABELS)), row) for row in confusion])
    probs = np.eye(len(LABELS))[predicted] if len(predicted) else np.zeros((0, len(LABELS)))
    return classification_metrics(probs, labels, LABELS)


# ---------------------------------------------------------------- Flower: server strategy and client

def parameter_bytes(parameters) -> int:
    """Bytes of a Flower Parameters message's tensors, as serialised on the wire (numpy .npy per array)."""
    return sum(len(t) for t in parameters.tensors)


def mean_train_loss(metrics: list[tuple[int, dict]]) -> dict:
    """The clients' training losses averaged by their number of images (Flower's fit metrics aggregation)."""
    total = sum(n for n, _ in metrics)
    return {"train_loss": sum(n * m["train_loss"] for n, m in metrics) / total} if total else {}


def metered_fedavg(clients: int, local_epochs: int, lr: float, proximal_mu: float = 0.0):
    """Flower's FedAvg (FedProx when proximal_mu > 0: the same averaging, the clients add the proximal term) over
    all `clients` each round, recording per round the parameter bytes sent both ways, the shapes each client
    sent (anything but the head's shapes is refused), and the federated evaluation."""
    import_flwr()
    from flwr.common import parameters_to_ndarrays
    from flwr.server.strategy import FedAvg, FedProx

    base = FedProx if proximal_mu > 0 else FedAvg
    extra = {"proximal_mu": proximal_mu} if proximal_mu > 0 else {}

    class MeteredFedAvg(base):
        def __init__(self):
            super().__init__(min_fit_clients=clients, min_evaluate_clients=clients, min_available_clients=clients,
                             on_fit_config_fn=lambda r: {"round": r, "local_epochs": local_epochs, "lr": lr},
                             fit_metrics_aggregation_fn=mean_train_loss,
                             evaluate_metrics_aggregation_fn=lambda metrics: {}, **extra)
            self.rounds: dict[int, dict] = {}
            self.heads: dict[int, list[np.ndarray]] = {}  # each round's aggregated head, for save_best_head
            self.head_shapes: list[tuple[int, ...]] | None = None

        def _round(self, server_round: int) -> dict:
            return self.rounds.setdefault(server_round, {
                "round": server_round, "bytes_to_clients": 0, "bytes_from_clients": 0, "client_shapes": [],
                "refused": 0, "examples": 0})

        def configure_fit(self, server_round, parameters, client_manager):
            if self.head_shapes is None:  # the starting head (from one client): its shapes are the contract
                self.head_shapes = [a.shape for a in parameters_to_ndarrays(parameters)]
            pairs = super().configure_fit(server_round, parameters, client_manager)
            self._round(server_round)["bytes_to_clients"] += sum(parameter_bytes(ins.parameters) for _, ins in pairs)
            return pairs

        def configure_evaluate(self, server_round, parameters, client_manager):
            pairs = super().configure_evaluate(server_round, parameters, client_manager)
            self._round(server_round)["bytes_to_clients"] += sum(parameter_bytes(ins.parameters) for _, ins in pairs)
            return pairs

        def aggregate_fit(self, server_round, results, failures):
            row = self._round(server_round)
            accepted = []
            for proxy, res in results:
                row["bytes_from_clients"] += parameter_bytes(res.parameters)
                shapes = [a.shape for a in parameters_to_ndarrays(res.parameters)]
                row["client_shapes"].append([list(s) for s in shapes])
                if self.head_shapes is not None and shapes != self.head_shapes:
                    log.error("round %d: a client sent arrays of shapes %s, not the head's %s: refused",
                              server_round, shapes, self.head_shapes)
                    row["refused"] += 1
                    failures = list(failures) + [(proxy, res)]
                    continue
                accepted.append((proxy, res))
                row["examples"] += res.num_examples
            parameters, metrics = super().aggregate_fit(server_round, accepted, failures)
            row["train_loss"] = metrics.get("train_loss")
            if parameters is not None:
                self.heads[server_round] = parameters_to_ndarrays(parameters)
            return parameters, metrics

        def aggregate_evaluate(self, server_round, results, failures):
            loss, _ = super().aggregate_evaluate(server_round, results, failures)
            row = self._round(server_round)
            for split in ("val", "test"):
                confusion = sum(np.array(json.loads(res.metrics[f"{split}_confusion"])) for _, res in results)
                metrics = metrics_from_confusion(confusion)
                row[f"{split}_accuracy"] = metrics["accuracy"]
                row[f"{split}_none_false_alarm_rate"] = metrics["none_false_alarm_rate"]
                row[f"{split}_confusion"] = metrics["confusion"]
            row["val_loss"] = loss
            return loss, {"val_accuracy": row["val_accuracy"], "test_accuracy": row["test_accuracy"]}

    return MeteredFedAvg()


def head_client(features: LocalFeatures, cfg: FederatedConfig, client_id: int):
    """A Flower NumPyClient that trains the head on this client's cached features and scores it on its shares."""
    import_flwr()
    from flwr.client import NumPyClient

    weights = balanced_weights(features.train_labels, features.train_rare, cfg.train.rare_weight)

    class HeadClient(NumPyClient):
        def __init__(self):
            self.head = make_head(features.head)

        def get_parameters(self, config):
            return head_arrays(self.head)

        def fit(self, parameters, config):
            set_head(self.head, parameters)
            server_round = int(config.get("round", 0))
            generator = torch.Generator().manual_seed(cfg.seed * 100003 + client_id * 1009 + server_round)
            optimizer = new_optimizer(self.head, float(config.get("lr", cfg.lr)), cfg.train)
            loss = train_head(self.head, features.train, features.train_labels, weights,
                              int(config.get("local_epochs", cfg.local_epochs)), optimizer, cfg.train, generator,
                              float(config.get("proximal_mu", 0.0)))
            return head_arrays(self.head), features.images, {"train_loss": loss}

        def evaluate(self, parameters, config):
            set_head(self.head, parameters)
            val_confusion, val_loss = head_confusion(self.head, features.val, features.val_labels)
            test_confusion, _ = head_confusion(self.head, features.test, features.test_labels)
            return (val_loss / max(len(features.val), 1), len(features.val),
                    {"val_confusion": json.dumps(val_confusion.tolist()),
                     "test_confusion": json.dumps(test_confusion.tolist())})

    return HeadClient()


def watch_image_opens() -> list[str]:
    """Record every image file this process opens from now on (an audit hook): the server must open none."""
    opened: list[str] = []

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, Path)):
            path = Path(args[0].decode() if isinstance(args[0], bytes) else args[0])
            if path.suffix.lower() in IMAGE_SUFFIXES:
                opened.append(str(path))

    sys.addaudithook(hook)
    return opened


def run_server(address: str, rounds: int, clients: int, local_epochs: int, lr: float, out: Path | None,
               proximal_mu: float = 0.0, save_head: Path | None = None) -> dict:
    """Run the Flower server until `rounds` FedAvg rounds with all `clients` are done; write and return the
    per-round record (bytes both ways, federated accuracy, client shapes, image files opened: none); with
    `save_head`, write the aggregated head of the round with the best federated validation accuracy there."""
    flwr = import_flwr()
    opened = watch_image_opens()
    strategy = metered_fedavg(clients, local_epochs, lr, proximal_mu)
    started = time.time()
    flwr.server.start_server(server_address=address, config=flwr.server.ServerConfig(num_rounds=rounds),
                             strategy=strategy)
    result = {"address": address, "clients": clients, "rounds": [strategy.rounds[r] for r in sorted(strategy.rounds)],
              "head_shapes": [list(s) for s in strategy.head_shapes or []], "local_epochs": local_epochs, "lr": lr,
              "strategy": "FedProx" if proximal_mu > 0 else "FedAvg", "proximal_mu": proximal_mu,
              "seconds": round(time.time() - started, 1), "image_files_opened": list(opened)}
    if save_head is not None:
        result["saved_head"] = save_best_head(strategy.rounds, strategy.heads, save_head)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


def save_best_head(rounds: dict[int, dict], heads: dict[int, list[np.ndarray]], path: Path) -> dict:
    """Write the head of the round with the best federated validation accuracy (the earliest on a tie: the
    head overfits the training features as rounds go on) as an .npz; return what was saved."""
    scored = [r for r in sorted(rounds) if r in heads and rounds[r].get("val_accuracy") is not None]
    if not scored:
        raise FiredetdError("federation: no round was both aggregated and evaluated; no head to save")
    best = max(scored, key=lambda r: (rounds[r]["val_accuracy"], -r))
    weight, bias = heads[best]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # np.savez on a path would append .npz to a name without it
        np.savez(f, weight=weight, bias=bias, round=best, val_accuracy=rounds[best]["val_accuracy"],
                 test_accuracy=rounds[best]["test_accuracy"])
    return {"path": str(path), "round": best, "val_accuracy": rounds[best]["val_accuracy"],
            "test_accuracy": rounds[best]["test_accuracy"]}


def apply_head(head_path: Path, backbone: str, weights: Path, checkpoint: Path | None, out: Path) -> dict:
    """A deployable checkpoint: the clients' backbone (`checkpoint`, or ImageNet `weights`) with the federated head;
    `firedetd export OUT` turns it into engines/ (ONNX, INT8, spec). Returns what went in."""
    from .export import load_checkpoint
    from .models import build_classifier

    saved = np.load(head_path)
    model = load_checkpoint(checkpoint, backbone) if checkpoint else build_classifier(backbone, len(LABELS), weights)
    expected = tuple(model.classifier.weight.shape)
    if tuple(saved["weight"].shape) != expected or saved["bias"].shape != (expected[0],):
        raise FiredetdError(f"{head_path}: a head of shapes {saved['weight'].shape}, {saved['bias'].shape} does not "
                            f"fit {backbone}'s classifier {expected}: federated with another backbone?")
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(saved["weight"]))
        model.classifier.bias.copy_(torch.from_numpy(saved["bias"]))
    info = {"head": str(head_path), "round": int(saved["round"]), "val_accuracy": float(saved["val_accuracy"]),
            "backbone": backbone, "start": str(checkpoint) if checkpoint else "ImageNet"}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "federated": info}, out)
    return info


def start_flower_client(address: str, client) -> None:
    """Connect `client` (a NumPyClient) to the server at `address` and serve its rounds until told to stop."""
    try:  # Flower 1.13+: the gRPC client lives in flwr.compat
        from flwr.compat.client.app import start_client
    except ImportError:
        from flwr.client import start_client
    start_client(server_address=address, client=client.to_client(), max_wait_time=CLIENT_WAIT_S)


def run_client(cfg: FederatedConfig, client_id: int, address: str) -> None:
    """Compute (or load) this client's features, then take part in the server's rounds until it says stop."""
    features = local_features(cfg, client_id)
    torch.set_num_threads(cfg.threads)
    start_flower_client(address, head_client(features, cfg, client_id))


# ---------------------------------------------------------------- centralised baseline and the simulation

def centralised_baseline(cfg: FederatedConfig) -> dict:
    """The same head trained on the union of all clients' features, `local_epochs` epochs per 'round' with one
    optimizer throughout: what FedAvg is compared with. Also scores the starting head (round 0)."""
    parts = [LocalFeatures.load(feature_cache_path(cfg.work, i)) for i in range(cfg.clients)]
    if any(p is None for p in parts):
        raise FileNotFoundError(f"{cfg.work}: a client's feature cache is missing; run the clients first")
    cat = {name: torch.cat([getattr(p, name) for p in parts]) for name in
           ("train", "train_labels", "train_rare", "val", "val_labels", "test", "test_labels")}
    head = make_head(parts[0].head)
    weights = balanced_weights(cat["train_labels"], cat["train_rare"], cfg.train.rare_weight)
    optimizer = new_optimizer(head, cfg.lr, cfg.train)
    generator = torch.Generator().manual_seed(cfg.seed)
    rows = [score_row(head, cat, 0, None)]
    for server_round in range(1, cfg.rounds + 1):
        loss = train_head(head, cat["train"], cat["train_labels"], weights, cfg.local_epochs, optimizer, cfg.train,
                          generator)
        rows.append(score_row(head, cat, server_round, loss))
    return {"rounds": rows, "train_rows": len(cat["train"]), "images": sum(p.images for p in parts)}


def score_row(head: nn.Linear, cat: dict, server_round: int, train_loss: float | None) -> dict:
    """One round's row of the centralised baseline, in the server's per-round format."""
    row = {"round": server_round, "train_loss": train_loss}
    for split in ("val", "test"):
        confusion, loss = head_confusion(head, cat[split], cat[f"{split}_labels"])
        metrics = metrics_from_confusion(confusion)
        row[f"{split}_accuracy"] = metrics["accuracy"]
        row[f"{split}_none_false_alarm_rate"] = metrics["none_false_alarm_rate"]
        row[f"{split}_confusion"] = metrics["confusion"]
        if split == "val":
            row["val_loss"] = loss / max(len(cat[split]), 1)
    return row


def client_mix(cfg: FederatedConfig) -> list[dict]:
    """Per client: its training images per class (the non-IID skew), from the partition alone."""
    mix = []
    for client_id in range(cfg.clients):
        share = client_samples(cfg, client_id)["train"]
        counts = np.bincount([s.label for s in share], minlength=len(LABELS))
        mix.append({"client": client_id, "images": len(share), **{label: int(n) for label, n in zip(LABELS, counts)}})
    return mix


def federate_command(*args: str) -> list[str]:
    """`firedetd federate ARGS` with this interpreter."""
    return [sys.executable, "-m", "firedetd", "federate", *args]


def client_arguments(cfg: FederatedConfig, client_id: int, address: str, threads: int) -> list[str]:
    """The `federate client` arguments that reproduce `cfg` for one client."""
    args = ["client", "--client-id", str(client_id), "--clients", str(cfg.clients), "--address", address,
            "--data", str(cfg.data), "--work", str(cfg.work), "--backbone", cfg.backbone, "--alpha", str(cfg.alpha),
            "--seed", str(cfg.seed), "--head-views", str(cfg.head_views), "--size", str(cfg.size),
            "--max-per-class", str(cfg.max_per_class), "--threads", str(threads), "--no-progress"]
    if cfg.weights is not None:
        args += ["--weights", str(cfg.weights)]
    if cfg.checkpoint is not None:
        args += ["--checkpoint", str(cfg.checkpoint)]
    return args


def simulate(cfg: FederatedConfig, address: str, timeout_s: float = 3 * 3600) -> dict:
    """Run one server and `clients` client processes on this machine, then the centralised baseline; return
    (and write to work/federated.json) the comparison."""
    cfg.work.mkdir(parents=True, exist_ok=True)
    server_out = cfg.work / "server.json"
    server_out.unlink(missing_ok=True)
    # the server gets no data path at all: it could not open an image if it tried
    server_args = ["server", "--address", address, "--clients", str(cfg.clients), "--rounds", str(cfg.rounds),
                   "--local-epochs", str(cfg.local_epochs), "--lr", str(cfg.lr), "--out", str(server_out),
                   "--proximal-mu", str(cfg.proximal_mu), "--save-head", str(cfg.work / "head.npz")]
    threads = max(1, cfg.threads // cfg.clients)
    procs: dict[str, subprocess.Popen] = {}
    started = time.time()
    try:
        procs["server"] = spawn(federate_command(*server_args), cfg.work / "server.log")
        for client_id in range(cfg.clients):
            procs[f"client-{client_id}"] = spawn(federate_command(
                *client_arguments(cfg, client_id, address, threads)), cfg.work / f"client-{client_id}.log")
        wait_all(procs, cfg.work, started + timeout_s)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    server = json.loads(server_out.read_text())
    baseline = centralised_baseline(cfg)
    result = {
        "group": "federated", "backbone": cfg.backbone, "clients": cfg.clients, "alpha": cfg.alpha, "seed": cfg.seed,
        "rounds": cfg.rounds, "local_epochs": cfg.local_epochs, "lr": cfg.lr, "batch_size": cfg.batch_size,
        "strategy": server["strategy"], "proximal_mu": cfg.proximal_mu,
        "head_views": cfg.head_views, "size": cfg.size, "max_per_class": cfg.max_per_class,
        "checkpoint": str(cfg.checkpoint) if cfg.checkpoint else None, "client_mix": client_mix(cfg),
        "train_image_bytes": sum(s.path.stat().st_size for i in range(cfg.clients)
                                 for s in client_samples(cfg, i)["train"]),
        "federated": server, "centralised": baseline, "seconds": round(time.time() - started, 1),
    }
    (cfg.work / "federated.json").write_text(json.dumps(result, indent=2))
    return result


def wait_all(procs: dict[str, subprocess.Popen], logs: Path, deadline: float) -> None:
    """Wait until every process has exited 0; raise as soon as one fails (the others would wait for it forever)."""
    while True:
        codes = {name: proc.poll() for name, proc in procs.items()}
        failed = [name for name, code in codes.items() if code not in (None, 0)]
        if failed:
            raise FiredetdError(f"federate {failed[0]} exited with {codes[failed[0]]}; see {logs / failed[0]}.log")
        if all(code == 0 for code in codes.values()):
            return
        if time.time() > deadline:
            raise FiredetdError(f"federated simulation still running after its time limit; logs in {logs}")
        time.sleep(0.5)


def spawn(command: list[str], log_path: Path) -> subprocess.Popen:
    """Start `command` with its output in `log_path`."""
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
