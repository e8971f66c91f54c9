"""Heads for features: a linear layer (``linear``, depth 1) or a one-hidden-layer MLP (``mlp``, depth 2).

Probe mode (``--backbone NAME --mode probe``) trains one of these on a pretrained backbone's
features, held as "images" of ``feature_dim`` channels and side 1; on pixels they are a logistic
regression (or a small MLP) on the flattened image. An adaptive average pool to the side the head
was built for comes first, so, as every network here, it accepts larger inputs too.
"""
from __future__ import annotations

from torch import nn

__all__ = ["HEAD_DEPTHS", "MLP_HIDDEN", "FeatureHead"]

HEAD_DEPTHS = {"linear": (1,), "mlp": (2,)}   # depth = the number of linear layers
MLP_HIDDEN = 512  # wide enough to bend an ImageNet feature space, small beside it (1,280 -> 512)


class FeatureHead(nn.Sequential):
    """Pool to ``image_size``, flatten, then one linear layer (depth 1) or two with a ReLU between (depth 2)."""

    def __init__(self, depth: int, num_classes: int, in_channels: int, image_size: int) -> None:
        inputs = in_channels * image_size * image_size
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(image_size), nn.Flatten()]
        if depth == 2:
            layers += [nn.Linear(inputs, MLP_HIDDEN), nn.ReLU(inplace=True)]
            inputs = MLP_HIDDEN
        layers.append(nn.Linear(inputs, num_classes))
        super().__init__(*layers)
