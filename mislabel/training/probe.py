"""A dataset through a pretrained backbone, for the two backbone modes (``--backbone NAME --mode``).

    backbone_side(name, image_side, chosen)    the side images go through the backbone at
    probe_data(data, backbone, ...)            probe: the ImageData of the backbone's features
    probe_features_cached(data, backbone, ...) whether probe_data would read them from its cache
    finetune_data(data, side)                  finetune: the ImageData the whole network trains on

Probe mode trains a head (``--net_type linear``, or ``mlp``) on features extracted once
(``mislabel.training.backbone_features``, cached beside the run), so a phase-1 run over them is the
usual one (``fit``, the Recorder, the same run folder) at a fraction of a second per epoch. The
features travel as "images" of ``feature_dim`` channels and side 1, standardised per feature by
their mean and std over the training rows (a linear head's SGD then needs no tuning per backbone),
without augmentation. Finetune mode trains ``BackboneClassifier`` on the pixels, which does its own
normalisation, so the batches only scale pixels to [0, 1].
"""
from __future__ import annotations

import os
from dataclasses import replace

import torch

from mislabel.data.datasets import ImageData
from mislabel.data.sizing import training_side
from mislabel.models.backbones import preprocessing_of
from mislabel.training.backbone_features import feature_side, features_cached, file_features, image_features

__all__ = ["MIN_BACKBONE_SIDE", "backbone_side", "probe_data", "probe_features_cached", "finetune_data"]

# Below 64 px the stride-32 ImageNet networks end on a 1x1 map and their features fall apart; at
# 64 px a 28 px digit costs ~1/12 of the native 224 px pass.
MIN_BACKBONE_SIDE = 64


def backbone_side(name: str, image_side: int, chosen: int | None = None) -> int:
    """``chosen`` (--image_size) when given, else the images' training side (``training_side``) but
    at least ``MIN_BACKBONE_SIDE`` and at most the backbone's native side (ViT: only its native side)."""
    preprocessing = preprocessing_of(name)
    if chosen is None and not preprocessing.fixed_side:
        chosen = min(preprocessing.native_side, max(MIN_BACKBONE_SIDE, training_side(image_side)))
    return feature_side(name, preprocessing, chosen)


def probe_data(data: ImageData, backbone: str, side: int, weights: str | os.PathLike | None,
               cache_dir: str | os.PathLike, device: torch.device) -> ImageData:
    """``data`` with its images replaced by their backbone features ([N, D, 1, 1], float16 values),
    extracted once for train and test together (image files: each distinct file once) and cached
    in ``cache_dir``."""
    options = {"weights": weights, "side": side, "cache_dir": cache_dir, "device": device}
    source = _feature_source(data)
    if isinstance(source, torch.Tensor):
        features = image_features(source, backbone, **options)
        train, test = features[:data.num_train], features[data.num_train:]
    else:
        row = {path: i for i, path in enumerate(source)}
        features = file_features(source, backbone, **options)
        train = features[[row[f] for f in data.train_files]]
        test = features[[row[f] for f in data.test_files]]
    mean, std = train.mean(dim=0), train.std(dim=0).clamp_min(1e-3)
    # TensorBatches normalises in pixel units (x - 255 mean) / (255 std), hence the / 255
    return replace(data, train_images=train.half()[:, :, None, None], test_images=test.half()[:, :, None, None],
                   train_files=None, test_files=None, mean=tuple((mean / 255).tolist()),
                   std=tuple((std / 255).tolist()), augment=replace(data.augment, crop_padding=0, hflip=False))


def _feature_source(data: ImageData) -> torch.Tensor | list[str]:
    """What probe mode extracts: the train and test images together, or each distinct file once."""
    if data.train_images is not None:
        return torch.cat([data.train_images, data.test_images])
    return list(dict.fromkeys(data.train_files + data.test_files))


def probe_features_cached(data: ImageData, backbone: str, side: int, weights: str | os.PathLike | None,
                          cache_dir: str | os.PathLike) -> bool:
    """Whether ``probe_data`` with these arguments reads its features from the cache (the budget
    then prices no extraction)."""
    return features_cached(_feature_source(data), backbone, weights=weights, side=side, cache_dir=cache_dir)


def finetune_data(data: ImageData, side: int) -> ImageData:
    """``data`` for ``BackboneClassifier``: pixels in [0, 1] (mean 0, std 1 per channel), image files
    cropped at ``side``; its own augmentation kept."""
    channels = data.in_channels
    file_side = side if data.train_images is None else data.file_image_size
    return replace(data, mean=(0.0,) * channels, std=(1.0,) * channels, file_image_size=file_side)

