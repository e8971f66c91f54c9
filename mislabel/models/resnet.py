"""ResNets for ``--net_type resnet``: the CIFAR family of He et al. (2016) and torchvision's ImageNet family.

The depth picks the family. CIFAR depths (6n+2) build section 4.2 of "Deep Residual Learning for
Image Recognition": a 3x3 stem, then three stages of n basic blocks at 16/32/64 channels, so a
larger depth really adds blocks. ImageNet depths (18/34/50) build torchvision's networks with
only the first convolution swapped when the input is not RGB, so a torchvision state_dict saved
to disk keeps its keys and loads through ``--pretrained_path``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mislabel.models.stages import init_conv_weights, residual_stages

__all__ = ["CIFAR_DEPTHS", "IMAGENET_DEPTHS", "CifarResNet", "build_resnet"]

CIFAR_DEPTHS: tuple[int, ...] = (20, 32, 44, 56, 110)
IMAGENET_DEPTHS: tuple[int, ...] = (18, 34, 50)

_STAGE_WIDTHS = (16, 32, 64)


class _PadShortcut(nn.Module):
    """Shortcut "option A" of He et al.: halve the map and zero-fill the new channels.

    It has no parameters, which is what keeps ResNet-20 at the paper's 0.27M weights. Slicing
    with step 2 gives ceil(side / 2), the same side the strided 3x3 convolution produces.
    """

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra_channels))


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus the shortcut, ReLU after the sum (the original, post-activation form).

    In this network the channel count grows exactly when the stride is 2, so the padding
    shortcut covers every block that changes shape.

    The ReLUs and the sum write into the batch-norm outputs, which nothing else reads (batch
    norm's backward needs its input, not its output): the same arithmetic with two fewer
    activation-sized tensors per block, which is less memory held for the backward pass and less
    memory traffic.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        changes_shape = stride != 1 or in_channels != out_channels
        self.shortcut = _PadShortcut(out_channels - in_channels) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu_(out.add_(self.shortcut(x)))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: strides only in two stage transitions, so 8x8 inputs still fit.

    :param depth: one of ``CIFAR_DEPTHS``; n = (depth - 2) / 6 blocks per stage.
    :param num_classes: width of the logits.
    :param in_channels: channels of the input images.
    """

    def __init__(self, depth: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        blocks_per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, _STAGE_WIDTHS[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(_STAGE_WIDTHS[0]),
            nn.ReLU(inplace=True),
        )
        stages, channels = residual_stages(_BasicBlock, _STAGE_WIDTHS[0], _STAGE_WIDTHS, (1, 2, 2),
                                           (blocks_per_stage,) * 3)
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_conv_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(self.stem(x)))
        return self.fc(torch.flatten(features, 1))


def _imagenet_resnet(depth: int, num_classes: int, in_channels: int) -> nn.Module:
    """torchvision's ResNet, untrained; a non-RGB input gets a fresh stem conv of the same geometry."""
    from torchvision import models as tv_models  # here: importing torchvision costs a second and ~160 MB

    constructors = {18: tv_models.resnet18, 34: tv_models.resnet34, 50: tv_models.resnet50}
    model = constructors[depth](weights=None, num_classes=num_classes)
    if in_channels != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(
            in_channels, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding, bias=False
        )
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def build_resnet(depth: int, num_classes: int, in_channels: int) -> nn.Module:
    """Build the CIFAR ResNet for depths 6n+2 and torchvision's for 18/34/50.

    Every stride and pool in both families pads, so no image side down to 1 pixel makes a map
    vanish; the image size is therefore not needed here.
    """
    if depth in IMAGENET_DEPTHS:
        return _imagenet_resnet(depth, num_classes, in_channels)
    return CifarResNet(depth, num_classes, in_channels)
