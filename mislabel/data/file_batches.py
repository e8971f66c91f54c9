"""Mini-batches streamed from image files: the file-based twin of :class:`mislabel.data.datasets.TensorBatches`.

Datasets too large to hold decoded in memory (CUB, Caltech-256, WebVision50, Clothing100K, class
folders, CSV lists) are decoded by DataLoader workers that stay alive across epochs, with the
seed's transforms for its torchvision ResNets:

* training: RandomResizedCrop(size) (scale 0.08-1, aspect 3/4-4/3) and a horizontal flip;
* evaluation: Resize(size * 256/224) of the short side, then CenterCrop(size).

Workers hand back uint8 crops (a quarter of the bytes of floats); normalisation happens on the
training device. Every random draw comes from ``(seed, epoch, row)``, never from a worker's own
RNG, so the batches are identical whatever the number of workers, and a sample gets the same crop
whatever the number of torchrun processes. Under torchrun each process loads only its share of
every epoch (``shard``, split as :class:`TensorBatches` splits it). An image that cannot be
decoded ends the run with the one-line error naming the file, not a worker traceback.
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

from mislabel.data.datasets import FILE_IMAGE_SIZE, epoch_batches, epoch_generator, num_batches
from mislabel.data.decode import ImageFileDataset
from mislabel.core.user_input import UserError

__all__ = ["FileBatches", "auto_workers", "random_resized_box", "MAX_WORKERS"]

MAX_WORKERS = 8                    # JPEG decoding saturates well before this on one GPU
EVAL_RESIZE_RATIO = 256 / 224      # the seed's Resize(256) + CenterCrop(224), kept for any size
CROP_SCALE = (0.08, 1.0)           # RandomResizedCrop's defaults: share of the image area kept
CROP_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))  # and the range of log aspect ratios
CROP_ATTEMPTS = 10


def auto_workers(count: int, batch_size: int, processes: int = 1) -> int:
    """Decoding workers for `count` images: none for a couple of batches (starting processes costs
    more than it saves), otherwise one per core left over by the training process; with several
    training `processes` on this machine (torchrun), each takes its share of the cores."""
    if count <= 2 * batch_size:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(MAX_WORKERS, max(1, cores // max(1, processes) - 1))


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
    """Samples keyed by ``(row, epoch, recorded)``: the crop of row `row` for that epoch, as uint8
    [3, S, S], with `row` and the row to record it as (`row`, or -1 for a padding duplicate)."""

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

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int, int] | _Unreadable:
        row, epoch, recorded = key
        try:
            image = self.files.load_image(row)
        except UserError as err:
            return _Unreadable(str(err))
        return TF.pil_to_tensor(self._crop(image, row, epoch)), row, recorded


_Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _collate(items: list[tuple[torch.Tensor, int, int] | _Unreadable]) -> _Batch | _Unreadable:
    for item in items:
        if isinstance(item, _Unreadable):
            return item
    images, rows, recorded = zip(*items)
    return torch.stack(images), torch.tensor(rows, dtype=torch.int64), torch.tensor(recorded, dtype=torch.int64)


class _EpochBatchSampler(Sampler):
    """Batches of ``(row, epoch, recorded)`` keys in the order :class:`TensorBatches` would use
    (``epoch_batches``), this rank's share of them under ``shard``.

    It runs in the main process, so ``epoch`` set here reaches persistent workers with each key.
    """

    def __init__(self, count: int, batch_size: int, shuffle: bool, seed: int,
                 shard: tuple[int, int] | None = None) -> None:
        self.count, self.batch_size, self.shuffle, self.seed, self.shard = count, batch_size, shuffle, seed, shard
        self.epoch = 0

    def __len__(self) -> int:
        return num_batches(self.count, self.batch_size, self.shard)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        generator = epoch_generator(self.seed, self.epoch) if self.shuffle else None
        loads, records = epoch_batches(self.count, self.batch_size, generator, self.shard)
        for rows, recorded in zip(loads, records):
            yield [(row, self.epoch, kept) for row, kept in zip(rows.tolist(), recorded.tolist())]


class FileBatches:
    """Mini-batches decoded from image files, with the iteration contract of TensorBatches.

    Yields ``(images, labels, rows)`` on `device`: normalised float images [B, 3, S, S], labels,
    and each sample's row in this subset. ``train`` shuffles and augments; otherwise the order is
    fixed and crops are central.

    :param workers: decoding processes, kept alive across epochs; ``None`` picks ``auto_workers``.
    :param shard: ``(rank, world)`` in a torchrun process: only this rank's share of each epoch is
        decoded, its padding duplicates with row -1 (trained on, not recorded), as TensorBatches does.
    """

    def __init__(self, files: Sequence[str], labels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                 batch_size: int, device: torch.device, image_size: int = FILE_IMAGE_SIZE, train: bool = False,
                 seed: int = 0, workers: int | None = None, shard: tuple[int, int] | None = None) -> None:
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(device)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255.0
        self.device = device
        world = 1 if shard is None else shard[1]
        self.workers = auto_workers(-(-len(files) // world), batch_size, world) if workers is None else workers
        self.sampler = _EpochBatchSampler(len(files), batch_size, shuffle=train, seed=seed, shard=shard)
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
            images, rows, recorded = batch
            labels = self.labels[rows.to(self.device, non_blocking=True)]
            images = images.to(self.device, non_blocking=True).float()
            yield images.sub_(self.mean).div_(self.std), labels, recorded.to(self.device, non_blocking=True)
