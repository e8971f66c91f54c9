"""Wide ResNet-d-k of Zagoruyko & Komodakis (2016), "Wide Residual Networks".

Depth 6n+4 gives three groups of n pre-activation basic blocks at 16k/32k/64k channels, where k
is the widen factor. Width rather than depth is what these networks trade on, so the widen factor
is a real argument here and nowhere else. Dropout between the convolutions is left out: the
paper reports it as an optional extra, and no caller asks for it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mislabel.models.stages import init_conv_weights, residual_stages

__all__ = ["WRN_DEPTHS", "WideResNet"]

WRN_DEPTHS: tuple[int, ...] = (16, 28, 40)


class _WideBlock(nn.Module):
    """BN-ReLU-conv3x3 twice; a 1x1 projection of the activated input when the shape changes.

    Projecting the activated input (rather than the raw sum from the previous block) lets the
    first BN-ReLU serve both paths, as in the pre-activation design of He et al. (2016b).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        changes_shape = stride != 1 or in_channels != out_channels
        self.projection = (
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False) if changes_shape else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        shortcut = x if self.projection is None else self.projection(activated)
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class WideResNet(nn.Module):
    """WRN-depth-widen_factor; strided 3x3 convolutions keep at least a 1x1 map for any input side.

    :param depth: one of ``WRN_DEPTHS``; n = (depth - 4) / 6 blocks per group.
    :param widen_factor: k, the multiplier on the 16/32/64 channel widths.
    :param num_classes: width of the logits.
    :param in_channels: channels of the input images.
    """

    def __init__(self, depth: int, widen_factor: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        blocks_per_group = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.stem = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        groups, channels = residual_stages(_WideBlock, 16, widths, (1, 2, 2), (blocks_per_group,) * 3)
        self.groups = nn.Sequential(*groups)
        # Pre-activation blocks end on a raw sum, so the head needs its own BN-ReLU.
        self.bn = nn.BatchNorm2d(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_conv_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.groups(self.stem(x))))
        return self.fc(torch.flatten(self.pool(out), 1))
