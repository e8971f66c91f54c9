"""DenseNets for CIFAR-sized images, after Huang et al. (2017), "Densely Connected Convolutional Networks".

Two of the paper's CIFAR configurations, both with growth rate k = 12:
  * depth 40: the basic DenseNet, three dense blocks of 12 BN-ReLU-conv3x3 layers, 16 stem
    channels, transitions that keep the channel count;
  * depth 100: DenseNet-BC, three blocks of 16 bottleneck layers (BN-ReLU-conv1x1 to 4k, then
    BN-ReLU-conv3x3 to k), 2k stem channels, transitions that halve the channels (theta = 0.5).
Each transition ends in a 2x2 average pool; a pool that would act on a 1x1 map is left out, which
is why the image side is needed at build time.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mislabel.models.stages import init_conv_weights

__all__ = ["DENSENET_DEPTHS", "GROWTH_RATE", "DenseNet"]

GROWTH_RATE = 12


@dataclass(frozen=True)
class _Variant:
    """What separates DenseNet from DenseNet-BC in the paper's CIFAR tables."""

    bottleneck: bool
    compression: float


_VARIANTS = {40: _Variant(bottleneck=False, compression=1.0), 100: _Variant(bottleneck=True, compression=0.5)}
DENSENET_DEPTHS: tuple[int, ...] = tuple(_VARIANTS)


class _DenseLayer(nn.Module):
    """Adds k new feature maps computed from everything before it, and passes the old ones on."""

    def __init__(self, in_channels: int, growth_rate: int, bottleneck: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        if bottleneck:
            layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
            layers.append(nn.Conv2d(channels, 4 * growth_rate, 1, bias=False))
            channels = 4 * growth_rate
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(channels, growth_rate, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


def _transition(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    """BN-ReLU-conv1x1, then a 2x2 average pool unless the map is already 1x1."""
    layers: list[nn.Module] = [
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
    ]
    if pool:
        layers.append(nn.AvgPool2d(2))
    return nn.Sequential(*layers)


class DenseNet(nn.Module):
    """DenseNet-40 (k=12) or DenseNet-BC-100 (k=12).

    :param depth: one of ``DENSENET_DEPTHS``.
    :param num_classes: width of the logits.
    :param in_channels: channels of the input images.
    :param image_size: side of the smallest image the model will see; decides which pools to keep.
    """

    def __init__(self, depth: int, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        variant = _VARIANTS[depth]
        convs_per_layer = 2 if variant.bottleneck else 1
        layers_per_block = (depth - 4) // (3 * convs_per_layer)
        channels = 2 * GROWTH_RATE if variant.bottleneck else 16
        stages: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)]
        side = image_size
        for block in range(3):
            for _ in range(layers_per_block):
                stages.append(_DenseLayer(channels, GROWTH_RATE, variant.bottleneck))
                channels += GROWTH_RATE
            if block < 2:
                reduced = int(channels * variant.compression)
                pool = side > 1
                stages.append(_transition(channels, reduced, pool))
                channels, side = reduced, side // 2 if pool else side
        self.features = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_conv_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.features(x)))
        return self.fc(torch.flatten(self.pool(out), 1))
