"""Pieces the residual networks share: stacking stages of blocks, and He initialisation."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

__all__ = ["residual_stages", "init_conv_weights"]


def residual_stages(make_block: Callable[[int, int, int], nn.Module], in_channels: int, widths: Sequence[int],
                    strides: Sequence[int], counts: Sequence[int]) -> tuple[list[nn.Sequential], int]:
    """One ``nn.Sequential`` of ``make_block(in, out, stride)`` per stage; a stage's first block takes
    its stride and any width change. Returns the stages and the channels coming out of the last."""
    stages = []
    for width, stride, count in zip(widths, strides, counts):
        blocks = []
        for index in range(count):
            blocks.append(make_block(in_channels, width, stride if index == 0 else 1))
            in_channels = width
        stages.append(nn.Sequential(*blocks))
    return stages, in_channels


def init_conv_weights(model: nn.Module, mode: str = "fan_in") -> None:
    """He et al. (2015) normal initialisation of every convolution, the ReLU networks' standard."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu")
