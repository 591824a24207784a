"""The sample networks (torch modules) that models/build.py trains and exports."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEAD_EVERY = 8  # one MobileNetV2 expand channel in 8 starts (and stays) dead
SEED = 0


def conv_bn(cin: int, cout: int, kernel: int, *, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    )


def classifier_head(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


CONVBN_WIDTHS = (16, 32, 32, 48)
CONVBN_BLOCKS = (0, 1, 3, 5)  # positions of the conv blocks in convbn_classifier's Sequential


def convbn_classifier(widths: tuple[int, ...] = CONVBN_WIDTHS) -> nn.Module:
    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(conv_bn(cin, cout, 3), nn.ReLU())

    a, b, c, d = widths
    return nn.Sequential(block(1, a), block(a, b), nn.MaxPool2d(2), block(b, c), nn.MaxPool2d(2),
                         block(c, d), classifier_head(d))


def slimmed_convbn_classifier(trained: nn.Module, keep: float) -> tuple[nn.Module, list[list[int]]]:
    """Network slimming (Liu et al. 2017) of a trained convbn_classifier: each conv block keeps the
    `keep` share of its channels with the largest |BN gamma| (a channel the BN scales towards zero
    contributes little), and the kept weights are copied into a narrower network of the same
    layout. Returns the pruned network and the kept channel indices per block (for the manifest)."""
    blocks = [trained[i][0] for i in CONVBN_BLOCKS]  # (conv, bn) Sequentials
    kept = [sorted(torch.argsort(-blk[1].weight.detach().abs())[: max(1, round(keep * blk[1].num_features))].tolist())
            for blk in blocks]
    pruned = convbn_classifier(tuple(len(k) for k in kept))
    previous = [0]
    for position, channels in zip(CONVBN_BLOCKS, kept):
        _copy_block(trained[position][0], pruned[position][0], channels, previous)
        previous = channels
    head, new_head = trained[-1][2], pruned[-1][2]
    with torch.no_grad():
        new_head.weight.copy_(head.weight[:, previous])
        new_head.bias.copy_(head.bias)
    return pruned, kept


def _copy_block(old: nn.Sequential, new: nn.Sequential, channels: list[int], inputs: list[int]) -> None:
    """Conv weights of the kept output channels over the kept input channels, and their BN state."""
    with torch.no_grad():
        new[0].weight.copy_(old[0].weight[channels][:, inputs])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(new[1], name).copy_(getattr(old[1], name)[channels])


class RepVGGBlock(nn.Module):
    """Train-time RepVGG: 3x3 conv+BN + 1x1 conv+BN (+ identity BN when shapes allow), then ReLU."""

    def __init__(self, cin: int, cout: int, *, stride: int = 1):
        super().__init__()
        self.dense = conv_bn(cin, cout, 3, stride=stride)
        self.pointwise = conv_bn(cin, cout, 1, stride=stride)
        self.identity = nn.BatchNorm2d(cin) if cin == cout and stride == 1 else None
        # Summed branches get identical gradients for their BN betas: from equal initial values they
        # stay equal, and the exporter then shares one initializer through Identity nodes.
        for bn in self.modules():
            if isinstance(bn, nn.BatchNorm2d):
                nn.init.normal_(bn.bias, std=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dense(x) + self.pointwise(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return F.relu(y)


def repvgg_classifier() -> nn.Module:
    return nn.Sequential(RepVGGBlock(1, 16), RepVGGBlock(16, 16), RepVGGBlock(16, 32, stride=2),
                         RepVGGBlock(32, 32), RepVGGBlock(32, 48, stride=2), classifier_head(48))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand+BN+ReLU6, 3x3 depthwise+BN+ReLU6, 1x1 project+BN, residual Add."""

    def __init__(self, cin: int, cout: int, *, stride: int, expand: int = 4):
        super().__init__()
        hidden = cin * expand
        self.expand = nn.Sequential(conv_bn(cin, hidden, 1), nn.ReLU6())
        self.depthwise = nn.Sequential(conv_bn(hidden, hidden, 3, stride=stride, groups=hidden), nn.ReLU6())
        self.project = conv_bn(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def kill_expand_channels(model: nn.Module, generator: torch.Generator) -> None:
    """Reproduce, honestly, why ImageNet MobileNetV2's depthwise layers have folded per-channel
    weight ranges spanning decades (the case that breaks per-tensor int8): dead channels. A few
    expand channels start dead (BN gamma 1e-3, beta -1, so ReLU6 gives 0 and passes no gradient:
    they stay dead). The depthwise conv then sees all zeros on them, its BN running variance decays to
    ~0, and folding divides those channels' weights by sqrt(eps): huge ranges that set a per-tensor
    scale which crushes the live channels."""
    for block in model.modules():
        if isinstance(block, InvertedResidual):
            bn = block.expand[0][1]
            dead = torch.randperm(bn.num_features, generator=generator)[: bn.num_features // DEAD_EVERY]
            bn.weight.data[dead] = 1e-3
            bn.bias.data[dead] = -1.0


def mobilenetv2_classifier() -> nn.Module:
    stem = nn.Sequential(conv_bn(1, 16, 3), nn.ReLU6())
    blocks = [InvertedResidual(16, 16, stride=1), InvertedResidual(16, 24, stride=2),
              InvertedResidual(24, 24, stride=1), InvertedResidual(24, 32, stride=2),
              InvertedResidual(32, 32, stride=1)]
    last = nn.Sequential(conv_bn(32, 64, 1), nn.ReLU6())
    model = nn.Sequential(stem, *blocks, last, classifier_head(64))
    kill_expand_channels(model, torch.Generator().manual_seed(SEED))
    return model


def bn_before_conv() -> nn.Module:
    """BN feeding a padded 3x3 conv and BN feeding an unpadded one: folding a BN forward into a
    padded conv is only exact away from the border, since padding zeros are not shifted by BN."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(16),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(32),
        nn.Conv2d(32, 32, 3, padding=0), nn.ReLU(), classifier_head(32),
    )


def bn_gemm_classifier() -> nn.Module:
    """The BN placements the Conv folds cannot reach: a BN after a MaxPool that follows a Conv (it
    folds once moved across the pool, when every BN scale is positive), a BN before Flatten -> Linear
    (the classifier input) and a BatchNorm1d after the Linear."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.MaxPool2d(2), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(32),
        nn.Flatten(), nn.Linear(32, 10), nn.BatchNorm1d(10),
    )


class HeatmapNet(nn.Module):
    """(x - mean) / std on the raw 0..16 input, Conv-BN-ReLU layers, a 1-channel Sigmoid heatmap."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.from_numpy(std).reshape(1, -1, 1, 1))
        self.body = nn.Sequential(conv_bn(3, 16, 3), nn.ReLU(), conv_bn(16, 16, 3), nn.ReLU(),
                                  nn.Conv2d(16, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body((x - self.mean) / self.std))


# ----------------------------------------------------------------------------------------------
# Training
