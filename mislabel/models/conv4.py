"""Conv-4: the four-block backbone of few-shot learning (Vinyals et al. 2016; Snell et al. 2017).

Each block is a 3x3 conv (64 channels), batch norm, ReLU and a 2x2 max-pool. The features are
globally average-pooled before the linear layer, so one model accepts any image side instead of
the flattened 5x5 map of the 84x84 original. A max-pool that would act on a 1x1 map is left out.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["CONV4_DEPTHS", "Conv4"]

CONV4_DEPTHS: tuple[int, ...] = (4,)
_WIDTH = 64


class Conv4(nn.Module):
    """Four conv-BN-ReLU-maxpool blocks, global average pooling, one linear layer.

    :param num_classes: width of the logits.
    :param in_channels: channels of the input images.
    :param image_size: side of the smallest image the model will see; decides which pools to keep.
    """

    def __init__(self, num_classes: int, in_channels: int, image_size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, side = in_channels, image_size
        for _ in range(CONV4_DEPTHS[0]):
            layers += [nn.Conv2d(channels, _WIDTH, 3, padding=1), nn.BatchNorm2d(_WIDTH), nn.ReLU()]
            channels = _WIDTH
            if side > 1:
                layers.append(nn.MaxPool2d(2))
                side //= 2
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(_WIDTH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))
