"""LeNet-5 (LeCun et al. 1998) in its common modern form: ReLU activations and max-pooling.

Two 5x5 convolutions (6 then 16 channels), each followed by ReLU and a 2x2 max-pool, then fully
connected layers 400-120-84-classes. Two variants:
  * ``lenet``: unpadded convolutions, the original geometry for 32x32 images (32-28-14-10-5);
  * ``lenet_mnist``: the first convolution padded by 2, so a 28x28 digit gets the same geometry
    (28-28-14-10-5), the standard way LeNet is run on MNIST.
An adaptive average pool to 5x5 sits before the first linear layer. At the native size it does
nothing; at any other size it keeps the 400-wide layer, so weights move between image sizes.
To accept images down to 8x8, a convolution that would not fit the map is padded to keep its
side, and a max-pool that would act on a 1x1 map is left out.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["LENET_DEPTHS", "LeNet"]

LENET_DEPTHS: tuple[int, ...] = (5,)
_KERNEL = 5
_POOLED_SIDE = 5  # side of the last feature map at the native size; the 400 = 16 * 5 * 5 inputs


def _conv_block(in_channels: int, out_channels: int, side: int, pad: bool) -> tuple[list[nn.Module], int]:
    """A 5x5 conv, ReLU and (unless the map is 1x1) a 2x2 max-pool; returns the layers and new side.

    ``pad`` asks for "same" padding; it is forced when the map is smaller than the kernel.
    """
    padding = _KERNEL // 2 if pad or side < _KERNEL else 0
    side = side + 2 * padding - _KERNEL + 1
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, _KERNEL, padding=padding), nn.ReLU()]
    if side > 1:
        layers.append(nn.MaxPool2d(2))
        side //= 2
    return layers, side


class LeNet(nn.Module):
    """LeNet-5 for any input side.

    :param num_classes: width of the logits.
    :param in_channels: channels of the input images.
    :param image_size: side of the smallest image the model will see; decides padding and pools.
    :param pad_first: pad the first convolution (the MNIST variant).
    """

    def __init__(self, num_classes: int, in_channels: int, image_size: int, pad_first: bool) -> None:
        super().__init__()
        first, side = _conv_block(in_channels, 6, image_size, pad_first)
        second, _ = _conv_block(6, 16, side, pad=False)
        self.features = nn.Sequential(*first, *second, nn.AdaptiveAvgPool2d(_POOLED_SIDE))
        self.classifier = nn.Sequential(
            nn.Linear(16 * _POOLED_SIDE * _POOLED_SIDE, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
