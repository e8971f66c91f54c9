"""VGG-11/13/16/19 with batch norm, in the CIFAR form.

The convolutional stacks are configurations A, B, D and E of Simonyan & Zisserman (2015): five
stages of 3x3 conv-BN-ReLU at 64/128/256/512/512 channels, each closed by a 2x2 max-pool. The
depth names the paper's configuration. As is usual for 32x32 inputs, the three 4096-wide
fully-connected layers are replaced by global average pooling and one linear layer, which keeps
the classifier small and independent of the image side. A max-pool that would act on a 1x1 map is
left out, so a model built for 8x8 images keeps only three of the five.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["VGG_DEPTHS", "VGG"]

# Convolutions per stage for each configuration (A, B, D, E in the paper).
_CONVS_PER_STAGE = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
VGG_DEPTHS: tuple[int, ...] = tuple(_CONVS_PER_STAGE)

_STAGE_WIDTHS = (64, 128, 256, 512, 512)


class VGG(nn.Module):
    """VGG-depth with batch norm and a global-average-pool classifier.

    :param depth: one of ``VGG_DEPTHS``.
    :param num_classes: width of the logits.
    :param in_channels: channels of the input images.
    :param image_size: side of the smallest image the model will see; decides which pools to keep.
    """

    def __init__(self, depth: int, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, side = in_channels, image_size
        for width, count in zip(_STAGE_WIDTHS, _CONVS_PER_STAGE[depth]):
            for _ in range(count):
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
            if side > 1:
                layers.append(nn.MaxPool2d(2))
                side //= 2
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))
