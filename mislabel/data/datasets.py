"""Datasets as the training loop sees them, and the fast in-memory batch path.

Small datasets (digits, MNIST-like, CIFAR, Tiny ImageNet) are held as one uint8 tensor on the
training device and augmented a whole batch at a time with tensor ops: no per-image PIL work and
no DataLoader workers. The embedded default, ``digits``, is scikit-learn's 8x8 digits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mislabel.core import distributed
from mislabel.core.run_options import EMBEDDED_DATASETS, check_datadir
from mislabel.core.user_input import UserError

__all__ = ["Augment", "ImageData", "load_dataset", "TensorBatches", "EMBEDDED_DATASETS", "FILE_IMAGE_SIZE",
           "IMAGENET_STATS", "PHOTO_DATASETS", "channel_stats", "default_file_side", "epoch_generator", "batch_rows",
           "shard_rows", "split_batches", "epoch_batches", "num_batches", "to_device"]

# digits: a fixed, stratified 80/20 split (1,437 train / 360 test) with scikit-learn's
# train_test_split(random_state=0); independent of --seed so test numbers compare across seeds.
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
# Side of the square crops cut from the named photo datasets unless --image_size says otherwise: the
# seed trains its torchvision ResNets on 224x224 crops (RandomResizedCrop / Resize+CenterCrop).
FILE_IMAGE_SIZE = 224
# The image-file datasets the seed trains at 224; any other folder or CSV is sized from its images
# (mislabel.data.sizing), so 28 px digits in class folders are not cropped at 224 (~60x the compute).
PHOTO_DATASETS = ("cub_200_2011", "caltech256", "webvision50", "clothing100k")
# torchvision's ImageNet (mean, std): for image files, whose statistics are not computed up front
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# channel_stats counts this many pixel values at a time (64 MB of uint8), whatever the dataset's size
STATS_CHUNK_VALUES = 1 << 26


@dataclass(frozen=True)
class Augment:
    """Batch augmentation policy: random crop after zero padding, and horizontal flips.

    Flips are only for natural images (they turn a 2 into a mirrored glyph, so not for digits).
    """

    crop_padding: int = 0
    hflip: bool = False


@dataclass
class ImageData:
    """A labelled image dataset with its clean (as shipped) labels and normalisation."""

    name: str
    class_names: list[str]
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    train_images: torch.Tensor | None = None
    test_images: torch.Tensor | None = None
    train_files: list[str] | None = None
    test_files: list[str] | None = None
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    augment: Augment = field(default_factory=Augment)
    real_noise: bool = False  # labels as collected (WebVision, Clothing): no synthetic noise, no ground truth
    file_image_size: int = FILE_IMAGE_SIZE  # crop side for datasets read from image files

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_train(self) -> int:
        return len(self.train_labels)

    @property
    def in_channels(self) -> int:
        return 3 if self.train_images is None else int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return self.file_image_size if self.train_images is None else int(min(self.train_images.shape[-2:]))


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 ``images`` [N, C, H, W] in [0, 1] units,
    the normalisation of every dataset held in memory (the named ones and find_issues' own).

    Exact and small: a uint8 channel takes 256 values, so a per-channel histogram (counted a chunk
    at a time, memory near the chunk's uint8 size) holds all there is to know, and the mean and the
    squared deviations are summed over 256 bins in float64, with no cancellation between large
    sums. The std is the sample one (n - 1), floored at 1e-3 so a constant channel cannot divide by 0.
    """
    channels = images.shape[1]
    counts = torch.zeros(channels, 256, dtype=torch.float64)
    for chunk in images.split(max(1, STATS_CHUNK_VALUES // max(images.shape[1:].numel(), 1))):
        for channel in range(channels):  # one to three channels; the samples are counted in bulk
            counts[channel] += torch.bincount(chunk[:, channel].reshape(-1), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255.0
    total = counts.sum(dim=1)
    mean = (counts * values).sum(dim=1) / total
    variance = (counts * (values - mean[:, None]).square()).sum(dim=1) / (total - 1).clamp_min(1)
    return tuple(mean.tolist()), tuple(variance.sqrt().clamp_min(1e-3).tolist())


def _load_digits() -> ImageData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=DIGITS_TEST_FRACTION, stratify=labels, random_state=DIGITS_SPLIT_SEED)
    train_images = torch.from_numpy(train_x)
    mean, std = channel_stats(train_images)
    return ImageData(name="digits", class_names=[str(c) for c in range(10)],
                     train_images=train_images, test_images=torch.from_numpy(test_x),
                     train_labels=torch.from_numpy(train_y), test_labels=torch.from_numpy(test_y),
                     mean=mean, std=std, augment=Augment(crop_padding=1, hflip=False))


def _augment_for(name: str, images: torch.Tensor | None) -> Augment:
    """The seed's recipe for 32x32 and 64x64 sets: pad-and-crop plus flips; no flips for glyphs."""
    if images is None:
        return Augment()
    size = images.shape[-1]
    glyphs = name in ("mnist", "fashion_mnist")
    return Augment(crop_padding=max(1, size // 8), hflip=not glyphs)


def load_dataset(name: str, datadir: str | Path | None, seed: int, image_size: int | None = None) -> ImageData:
    """Load ``name`` from ``datadir`` (ignored for the embedded digits).

    :param image_size: crop side for datasets read from image files (default ``default_file_side``).
        In-memory datasets keep their native side, so asking one for another is an error, not ignored.
    """
    data = _load_digits() if name == "digits" else _load_from(name, datadir, seed)
    if image_size is not None and data.train_images is not None:
        raise UserError(f"--image_size applies only to datasets read from image files; {name} is held in memory "
                        f"at {data.image_size}x{data.image_size}: drop the flag")
    if data.train_images is None:
        data.file_image_size = default_file_side(name, data.train_files) if image_size is None else image_size
    return data


def default_file_side(name: str, files: list[str]) -> int:
    """224 for the named photo datasets (the seed's crop); for any other folder or CSV the
    training side sized from its images' median short side, as find_issues sizes it."""
    from mislabel.data.sizing import median_short_side, training_side

    if name in PHOTO_DATASETS:
        return FILE_IMAGE_SIZE
    median = median_short_side(files)
    side = FILE_IMAGE_SIZE if median is None else training_side(median)
    if side != FILE_IMAGE_SIZE and distributed.is_main():  # once, not once per torchrun process
        print(f"note: {name}'s images have a median short side of {median}px, so crops are {side}px "
              "(--image_size overrides)")
    return side


def _load_from(name: str, datadir: str | Path | None, seed: int) -> ImageData:
    from mislabel.data.formats import LARGE_DATASETS, read_dataset

    check_datadir(name, datadir)
    raw = read_dataset(name, datadir, seed)
    mean, std = IMAGENET_STATS
    if raw.train_images is not None:
        mean, std = channel_stats(raw.train_images)
    return ImageData(name=name, class_names=list(raw.class_names), train_labels=raw.train_labels,
                     test_labels=raw.test_labels, train_images=raw.train_images, test_images=raw.test_images,
                     train_files=raw.train_files, test_files=raw.test_files, mean=mean, std=std,
                     augment=_augment_for(name, raw.train_images), real_noise=name in LARGE_DATASETS)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor (batch rows, crop offsets) on ``device`` without making the host wait: on CUDA
    a plain copy from pageable memory waits for every queued kernel, a pinned non-blocking one does
    not. Elsewhere the ordinary ``to``, which on the CPU returns ``tensor`` itself."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator one epoch's shuffling and augmentation draw from, the same on every device."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def batch_rows(count: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Row index chunks, shuffled when a generator is given; a trailing batch of one sample joins
    the previous (BatchNorm needs two). Shared by both batch paths so a seed orders them alike."""
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    return split_batches(order, batch_size)


def shard_rows(order: torch.Tensor, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank ``rank``'s share of one epoch's row ``order``, split as DistributedSampler splits it: the
    order is padded with its own first rows to a multiple of ``world`` and dealt out round-robin,
    so every rank takes as many steps (DDP needs that) and together they cover every row. Returns
    the rows and, for each, whether it is a padding duplicate (trained on, never recorded)."""
    total = -(-len(order) // world) * world
    padded = order.repeat(-(-total // max(len(order), 1)))[:total]
    positions = torch.arange(rank, total, world)
    return padded[positions], positions >= len(order)


def split_batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``order`` in chunks of ``batch_size``; a trailing chunk of one row joins the previous."""
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        last = chunks.pop()
        chunks[-1] = torch.cat([chunks[-1], last])
    return chunks


def epoch_batches(count: int, batch_size: int, generator: torch.Generator | None,
                  shard: tuple[int, int] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """One epoch's (rows to load, rows to record) per batch over ``count`` rows, shuffled when a
    generator is given. With ``shard=(rank, world)`` this rank's share (``shard_rows``), whose
    padding duplicates are loaded but recorded as row -1. Both batch paths (in memory, from files)
    call it, so a seed and a world size give them the same batches."""
    if shard is None:
        chunks = batch_rows(count, batch_size, generator)
        return chunks, chunks
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    rows, padding = shard_rows(order, *shard)
    return split_batches(rows, batch_size), split_batches(rows.masked_fill(padding, -1), batch_size)


def num_batches(count: int, batch_size: int, shard: tuple[int, int] | None = None) -> int:
    """How many batches ``epoch_batches`` yields, without building them."""
    if shard is not None:
        count = -(-count // shard[1])
    batches = -(-count // batch_size)
    return batches - 1 if batches > 1 and count % batch_size == 1 else batches


class TensorBatches:
    """Mini-batches from a uint8 image tensor kept on the training device.

    Yields ``(images, labels, rows)``: normalised float images, labels, and each sample's row in
    this subset (what the dynamics recorder indexes by). Shuffling and augmentation draw from a
    CPU generator seeded by (seed, epoch), so the batches are the same on every device.

    With ``shard=(rank, world)`` (a torchrun process) each epoch's order is the same on every rank
    and ``shard_rows`` hands this rank its share; padding duplicates come with row ``-1`` so the
    recorder skips them, and augmentation draws from a generator of (seed, epoch, rank).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                 batch_size: int, device: torch.device, augment: Augment | None = None, shuffle: bool = False,
                 seed: int = 0, shard: tuple[int, int] | None = None) -> None:
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255.0
        self.batch_size = batch_size
        self.device = device
        self.augment = augment or Augment()
        self.shuffle = shuffle
        self.seed = seed
        self.shard = shard
        self.epoch = 0

    def __len__(self) -> int:
        return num_batches(len(self.labels), self.batch_size, self.shard)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _crop_and_flip(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crops of the zero-padded batch, then flips; on uint8, so a quarter of the bytes move.

        ``unfold`` views every crop position without copying ([N, C, dy, dx, H, W]); one advanced
        index then picks each sample's own (dy, dx): a single gather, many times faster on CPU than
        indexing pixel rows and columns.
        """
        count, _, height, width = batch.shape
        pad = self.augment.crop_padding
        if pad > 0:
            padded = torch.nn.functional.pad(batch, (pad, pad, pad, pad))
            offsets = to_device(torch.randint(0, 2 * pad + 1, (2, count), generator=generator), self.device)
            windows = padded.unfold(2, height, 1).unfold(3, width, 1)
            batch = windows[torch.arange(count, device=self.device), :, offsets[0], offsets[1]]
        if self.augment.hflip:
            flip = to_device(torch.rand(count, generator=generator) < 0.5, self.device)
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
        return batch

    def load_rows(self, rows_on_device: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Normalised float images of ``rows_on_device``, augmented with draws from ``generator``.

        Shared by the epoch iterator and by callers that pick their own rows (DivideMix's views),
        so both augment and normalise identically.
        """
        batch = self.images[rows_on_device]
        if self.augment.crop_padding > 0 or self.augment.hflip:
            batch = self._crop_and_flip(batch, generator)
        return batch.float().sub_(self.mean).div_(self.std)

    def __iter__(self):
        generator = epoch_generator(self.seed, self.epoch)
        loads, records = epoch_batches(len(self.labels), self.batch_size, generator if self.shuffle else None,
                                       self.shard)
        if self.shard is not None:
            generator = torch.Generator().manual_seed(int(np.random.SeedSequence(
                [self.seed % 2**63, self.epoch, self.shard[0]]).generate_state(1)[0]))
        for rows, recorded in zip(loads, records):
            rows_on_device = to_device(rows, self.device)
            yield (self.load_rows(rows_on_device, generator), self.labels[rows_on_device],
                   rows_on_device if recorded is rows else to_device(recorded, self.device))
