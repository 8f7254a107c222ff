"""Backbones for the fire/smoke/none classifier, written for the ImageNet weights in ../shared/weights.

Each network keeps the parameter names of the shared state_dicts (so `load_state_dict(strict=True)`
works) and exposes `forward_feature_map(x) -> (N, C, h, w)` (the last convolutional features),
`forward_features(x) -> (N, C)` (their global average), `classifier` and `num_features`. The head is
global average pooling + one Linear layer, so the class activation map (export.py) is the Linear
layer applied to each cell of the feature map.

The shared weights come from TFLite graphs that pad stride-2 convolutions like TF "SAME"
(0 px before, 1 px after for 3x3). `SamePadConv2d` reproduces that with a constant pad so the ONNX
graph holds a plain Pad node with constant pads, which TensorRT 8.2's parser accepts. The pads are
exact for even input sizes, which every stride-2 layer sees at 224x224 (224, 112, 56, 28, 14).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class SamePadConv2d(nn.Conv2d):
    """Conv2d padded like TF 'SAME' for even inputs: asymmetric for stride 2, symmetric for stride 1."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, k, stride, padding=0 if stride == 2 else k // 2, groups=groups, bias=False)
        before = (k - 2) // 2
        self.pads = (before, k - 2 - before, before, k - 2 - before) if stride == 2 and k > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pads is not None:
            x = F.pad(x, self.pads)
        return super().forward(x)


def global_average(feature_map: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, C): the pooling every backbone's head starts with."""
    return torch.flatten(F.adaptive_avg_pool2d(feature_map, 1), 1)


# ---------------------------------------------------------------- MobileNetV2 (keys: features.N..., conv, classifier)

def _v2_conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1, act: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [SamePadConv2d(cin, cout, k, stride, groups), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class InvertedResidualV2(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += _v2_conv_bn(cin, hidden, 1, 1)
        layers += _v2_conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _v2_conv_bn(hidden, cout, 1, 1, act=False)
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


# expansion, output channels, repeats, first stride (MobileNetV2 paper, table 2)
_V2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        blocks: list[nn.Module] = [nn.Sequential(*_v2_conv_bn(3, 32, 3, 2))]
        cin = 32
        for expand, cout, repeats, stride in _V2_STAGES:
            for i in range(repeats):
                blocks.append(InvertedResidualV2(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        self.features = nn.Sequential(*blocks)
        self.conv = nn.Sequential(*_v2_conv_bn(cin, 1280, 1, 1))
        self.num_features = 1280
        self.classifier = nn.Linear(1280, num_classes)

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return global_average(self.forward_feature_map(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


# ------------------------------------------- MobileNetV1 and MobileNet-EdgeTPU (keys: .conv / .bn per layer)

class ConvBN(nn.Module):
    """Conv + BatchNorm (eps 1e-3, TF's) + optional activation, named like the shared V1/EdgeTPU weights."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU6):
        super().__init__()
        self.conv = SamePadConv2d(cin, cout, k, stride, groups)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.act = act(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SeparableV1(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.dw = ConvBN(cin, cin, 3, stride, groups=cin)
        self.pw = ConvBN(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


_V1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [ConvBN(3, 32, 3, 2)]
        cin = 32
        for cout, stride in _V1_BLOCKS:
            layers.append(SeparableV1(cin, cout, stride))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.num_features = cin
        self.classifier = nn.Linear(cin, num_classes)

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return global_average(self.forward_feature_map(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


class EdgeTPUBlock(nn.Module):
    """'proj': 1x1 projection; 'fused': kxk expansion conv + 1x1 projection; 'ibn': 1x1 expand, kxk depthwise, 1x1."""

    def __init__(self, kind: str, cin: int, k: int, stride: int, expanded: int, cout: int, residual: bool):
        super().__init__()
        layers: list[nn.Module] = []
        if kind == "fused":
            layers.append(ConvBN(cin, expanded, k, stride, act=nn.ReLU))
        elif kind == "ibn":
            layers.append(ConvBN(cin, expanded, 1, act=nn.ReLU))
            layers.append(ConvBN(expanded, expanded, k, stride, groups=expanded, act=nn.ReLU))
        else:
            expanded = cin
        layers.append(ConvBN(expanded, cout, 1, act=None))
        self.layers = nn.Sequential(*layers)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + y if self.residual else y


# kind, kernel, stride, expanded channels, output channels, residual, repeats (dm 0.75, read off the TFLite graph)
_EDGETPU_075 = [
    ("proj", 1, 1, 0, 16, False, 1),
    ("fused", 3, 2, 128, 24, False, 1), ("fused", 3, 1, 96, 24, True, 3),
    ("fused", 3, 2, 192, 40, False, 1), ("fused", 3, 1, 160, 40, True, 3),
    ("ibn", 3, 2, 320, 72, False, 1), ("ibn", 3, 1, 288, 72, True, 3),
    ("ibn", 3, 1, 576, 72, False, 1), ("ibn", 3, 1, 288, 72, True, 3),
    ("ibn", 5, 2, 576, 120, False, 1), ("ibn", 5, 1, 480, 120, True, 3),
    ("ibn", 3, 1, 960, 144, False, 1),
]


class MobileNetEdgeTPU(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.stem = ConvBN(3, 24, 3, 2, act=nn.ReLU)
        blocks: list[nn.Module] = []
        cin = 24
        for kind, k, stride, expanded, cout, residual, repeats in _EDGETPU_075:
            for _ in range(repeats):
                blocks.append(EdgeTPUBlock(kind, cin, k, stride, expanded, cout, residual))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(cin, 1280, 1, act=nn.ReLU)
        self.num_features = 1280
        self.classifier = nn.Linear(1280, num_classes)

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return global_average(self.forward_feature_map(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


# ---------------------------------------------------------------- registry

@dataclass(frozen=True)
class BackboneInfo:
    name: str
    build: Callable[[int], nn.Module]
    weights_file: str
    title: str


BACKBONES: dict[str, BackboneInfo] = {
    "mobilenetv2": BackboneInfo("mobilenetv2", MobileNetV2, "mobilenetv2_1.0_224_imagenet_from_tflite.pth",
                                "MobileNetV2 1.0"),
    "mobilenetv1": BackboneInfo("mobilenetv1", MobileNetV1, "mobilenetv1_1.0_224_imagenet.pth", "MobileNetV1 1.0"),
    "edgetpu": BackboneInfo("edgetpu", MobileNetEdgeTPU, "mobilenet_edgetpu_0.75_224_imagenet.pth",
                            "MobileNet-EdgeTPU 0.75"),
}


def build_classifier(backbone: str, num_classes: int, weights_dir: Path | None) -> nn.Module:
    """Build a backbone with a fresh `num_classes` head; load ImageNet weights from `weights_dir` unless None."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    info = BACKBONES[backbone]
    model = info.build(1000)
    if weights_dir is not None:
        path = Path(weights_dir) / info.weights_file
        if not path.is_file():
            raise FileNotFoundError(f"{path}: pretrained weights for {backbone} not found (see WEIGHTS.md)")
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    model.classifier = nn.Linear(model.num_features, num_classes)
    nn.init.normal_(model.classifier.weight, std=0.01)
    nn.init.zeros_(model.classifier.bias)
    return model


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm in eval mode (frozen statistics); call after each `model.train()`.

    The shared weights have BatchNorm folded into the convolutions (mean 0, var 1 - eps); batch
    statistics in train mode would replace them and destroy the pretrained features. The affine
    weight and bias stay trainable: in eval mode they are a per-channel scale and the folded bias.
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
