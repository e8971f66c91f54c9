"""Mini-batches streamed from image files: the file-based twin of :class:`mislabel.data.TensorBatches`.

Datasets too large to hold decoded in memory (CUB, Caltech-256, WebVision50, Clothing100K, class
folders, CSV lists) are decoded by DataLoader workers that stay alive across epochs, with the
seed's transforms for its torchvision ResNets:

* training: RandomResizedCrop(size) (scale 0.08-1, aspect 3/4-4/3) and a horizontal flip;
* evaluation: Resize(size * 256/224) of the short side, then CenterCrop(size).

Workers hand back uint8 crops (a quarter of the bytes of floats); normalisation happens on the
training device. Every random draw comes from ``(seed, epoch, row)``, never from a worker's own
RNG, so the batches are identical whatever the number of workers. An image that cannot be decoded
ends the run with the one-line error naming the file, not a worker traceback.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import functional as TF

from mislabel.data import FILE_IMAGE_SIZE, batch_rows, epoch_generator
from mislabel.image_files import ImageFileDataset
from util import UserError

__all__ = ["FileBatches", "auto_workers", "random_resized_box", "MAX_WORKERS"]

MAX_WORKERS = 8                    # JPEG decoding saturates well before this on one GPU
EVAL_RESIZE_RATIO = 256 / 224      # the seed's Resize(256) + CenterCrop(224), kept for any size
CROP_SCALE = (0.08, 1.0)           # RandomResizedCrop's defaults: share of the image area kept
CROP_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))  # and the range of log aspect ratios
CROP_ATTEMPTS = 10


def auto_workers(count: int, batch_size: int) -> int:
    """Decoding workers for `count` images: none for a couple of batches (starting processes costs
    more than it saves), otherwise one per core left over by the training process."""
    if count <= 2 * batch_size:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(MAX_WORKERS, max(1, cores - 1))


def random_resized_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box ``(top, left, height, width)`` for an image of `width` x `height`.

    Up to ten draws of an area share and a log-uniform aspect ratio; when none fits inside the
    image, the largest centred box whose aspect lies within the range.
    """
    area = width * height
    for _ in range(CROP_ATTEMPTS):
        target = area * rng.uniform(*CROP_SCALE)
        aspect = math.exp(rng.uniform(*CROP_LOG_RATIO))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    low, high = math.exp(CROP_LOG_RATIO[0]), math.exp(CROP_LOG_RATIO[1])
    aspect = width / height
    if aspect < low:
        w, h = width, round(width / low)
    elif aspect > high:
        w, h = round(height * high), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@dataclass(frozen=True)
class _Unreadable:
    """A worker's report of an image it could not decode (raised as UserError in the main process)."""

    message: str


class _Crops(Dataset):
    """Samples keyed by ``(row, epoch)``: the crop of row `row` for that epoch, as uint8 [3, S, S]."""

    def __init__(self, files: ImageFileDataset, size: int, train: bool, seed: int) -> None:
        self.files, self.size, self.train, self.seed = files, size, train, seed
        self.resize = round(size * EVAL_RESIZE_RATIO)

    def __len__(self) -> int:
        return len(self.files)

    def _crop(self, image: Image.Image, row: int, epoch: int) -> Image.Image:
        if not self.train:
            return TF.center_crop(TF.resize(image, self.resize), [self.size, self.size])
        rng = np.random.default_rng([self.seed % 2**63, epoch, row])
        top, left, h, w = random_resized_box(image.width, image.height, rng)
        image = TF.resized_crop(image, top, left, h, w, [self.size, self.size])
        return TF.hflip(image) if rng.random() < 0.5 else image

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int] | _Unreadable:
        row, epoch = key
        try:
            image = self.files.load_image(row)
        except UserError as err:
            return _Unreadable(str(err))
        return TF.pil_to_tensor(self._crop(image, row, epoch)), row


def _collate(items: list[tuple[torch.Tensor, int] | _Unreadable]) -> tuple[torch.Tensor, torch.Tensor] | _Unreadable:
    for item in items:
        if isinstance(item, _Unreadable):
            return item
    images, rows = zip(*items)
    return torch.stack(images), torch.tensor(rows, dtype=torch.int64)


class _EpochBatchSampler(Sampler):
    """Batches of ``(row, epoch)`` keys in the same order :class:`TensorBatches` would use.

    It runs in the main process, so ``epoch`` set here reaches persistent workers with each key.
    """

    def __init__(self, count: int, batch_size: int, shuffle: bool, seed: int) -> None:
        self.count, self.batch_size, self.shuffle, self.seed = count, batch_size, shuffle, seed
        self.epoch = 0
        self.num_batches = len(batch_rows(count, batch_size, None))

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = epoch_generator(self.seed, self.epoch) if self.shuffle else None
        for chunk in batch_rows(self.count, self.batch_size, generator):
            yield [(row, self.epoch) for row in chunk.tolist()]


class FileBatches:
    """Mini-batches decoded from image files, with the iteration contract of TensorBatches.

    Yields ``(images, labels, rows)`` on `device`: normalised float images [B, 3, S, S], labels,
    and each sample's row in this subset. ``train`` shuffles and augments; otherwise the order is
    fixed and crops are central.

    :param workers: decoding processes, kept alive across epochs; ``None`` picks ``auto_workers``.
    """

    def __init__(self, files: Sequence[str], labels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                 batch_size: int, device: torch.device, image_size: int = FILE_IMAGE_SIZE, train: bool = False,
                 seed: int = 0, workers: int | None = None) -> None:
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(device)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255.0
        self.device = device
        self.workers = auto_workers(len(files), batch_size) if workers is None else workers
        self.sampler = _EpochBatchSampler(len(files), batch_size, shuffle=train, seed=seed)
        crops = _Crops(ImageFileDataset(files, self.labels.cpu()), image_size, train, seed)
        self.loader = DataLoader(crops, batch_sampler=self.sampler, collate_fn=_collate, num_workers=self.workers,
                                 persistent_workers=self.workers > 0, pin_memory=device.type == "cuda",
                                 generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            if isinstance(batch, _Unreadable):
                raise UserError(batch.message)
            images, rows = batch
            rows = rows.to(self.device, non_blocking=True)
            images = images.to(self.device, non_blocking=True).float()
            yield images.sub_(self.mean).div_(self.std), self.labels[rows], rows
