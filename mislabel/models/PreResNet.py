"""Pre-activation ResNet-18/34 as DivideMix (Li et al., 2020) trains it on CIFAR.

The layout follows the network in DivideMix's experiments: a 3x3 stem conv-BN-ReLU at 64
channels with no stride or max-pool (CIFAR images are small), four stages of pre-activation basic
blocks (He et al. 2016b, BN-ReLU-conv3x3 twice) at 64/128/256/512 channels with strides 1/2/2/2,
and the logits taken straight from the pooled output of the last block. Depth 18 uses 2-2-2-2
blocks, depth 34 uses 3-4-6-3. Attribute names (``conv1``, ``bn1``, ``layer1``..``layer4``,
``linear``, and ``shortcut.0`` in a block) match DivideMix's, so its saved state_dicts load through
``--pretrained_path``. The 4x4 average pool there is an adaptive pool here, identical at 32x32
and valid at any other side; weights keep PyTorch's default initialisation, as DivideMix's do.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mislabel.models.stages import residual_stages

__all__ = ["PRERESNET_DEPTHS", "PreActResNet"]

_BLOCKS_PER_STAGE = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
PRERESNET_DEPTHS: tuple[int, ...] = tuple(_BLOCKS_PER_STAGE)

_STAGE_WIDTHS = (64, 128, 256, 512)
_STAGE_STRIDES = (1, 2, 2, 2)


class _PreActBlock(nn.Module):
    """BN-ReLU-conv3x3 twice, added to the input; a 1x1 conv of the activated input when the shape changes.

    The shortcut is a one-element Sequential only so that its key reads ``shortcut.0.weight``,
    the name DivideMix checkpoints use.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + self.shortcut(activated)


class PreActResNet(nn.Module):
    """PreAct ResNet-18 or -34; stride-2 3x3 convolutions keep at least a 1x1 map for any input side.

    :param depth: one of ``PRERESNET_DEPTHS``.
    :param num_classes: width of the logits.
    :param in_channels: channels of the input images.
    """

    def __init__(self, depth: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, _STAGE_WIDTHS[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(_STAGE_WIDTHS[0])
        stages, channels = residual_stages(_PreActBlock, _STAGE_WIDTHS[0], _STAGE_WIDTHS, _STAGE_STRIDES,
                                           _BLOCKS_PER_STAGE[depth])
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(self.pool(out), 1))
