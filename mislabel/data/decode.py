"""Pixels from image files, read in exactly two places: :func:`decode_images`, for small datasets
held in memory, and :class:`ImageFileDataset`, for large ones streamed from disk. Both name the
file when it cannot be decoded, because "image file is truncated" without a path is unfixable.
:func:`cover_and_crop` is the one policy that brings an image held in memory to a size it does not have.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF
from torchvision.transforms.functional import pil_to_tensor

from mislabel.core import distributed
from mislabel.core.progress import bar
from mislabel.core.user_input import UserError

__all__ = ["open_rgb", "cover_and_crop", "decode_images", "ImageFileDataset"]


def open_rgb(path: str) -> Image.Image:
    """Open and fully decode one image as RGB (grayscale and palette images are converted)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(f"cannot decode image {path} ({err}); replace or remove the file") from err


def cover_and_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` scaled (bilinear, antialiased) just enough to cover ``size`` = (height, width),
    aspect ratio kept, then its central ``size`` window.

    Why this policy and not a plain resize to ``size``: stretching changes an object's shape, which
    a classifier then learns. For a square ``size`` this is torchvision's ``Resize(side)`` +
    ``CenterCrop(side)``; an image already of ``size`` is returned unchanged.

    Streamed files (``--storage files``, ``mislabel.data.file_batches``) are framed differently, on
    purpose: each framing pairs with its training augmentation. Held in memory, training pads and
    crops the whole decoded image (the CIFAR recipe), so it keeps the whole short side; streamed,
    training takes the seed's ``RandomResizedCrop`` windows (the ImageNet recipe) and evaluation the
    matching ``Resize(side * 256 / 224)`` + ``CenterCrop(side)``. One policy for both would change
    every run's images, and with them the benchmark's numbers.
    """
    height, width = size
    if image.width * height >= image.height * width:  # relatively wider: the height sets the scale
        scaled = [height, int(height * image.width / image.height)]
    else:
        scaled = [int(width * image.height / image.width), width]
    return TF.center_crop(TF.resize(image, scaled), [height, width])


def decode_images(files: Sequence[str], size: tuple[int, int], resize: bool = False, out: np.ndarray | None = None,
                  desc: str = "decoding images") -> np.ndarray:
    """Decode `files` into one uint8 [N, 3, H, W] array, `size` = (height, width).

    Without `resize` every file must already be `size`, so a replaced file is caught; with it each
    image goes through :func:`cover_and_crop`, for datasets of mixed sizes. `out` (the same shape)
    is filled instead of a new array, so a caller's tensor receives the pixels without a copy.
    Decoding is threaded because PIL releases the GIL while it decompresses; under torchrun only
    rank 0 shows the progress bar.
    """
    height, width = size
    if out is None:
        out = np.empty((len(files), 3, height, width), dtype=np.uint8)

    def load(path: str) -> np.ndarray:
        image = open_rgb(path)
        if resize:
            image = cover_and_crop(image, size)
        elif image.size != (width, height):
            raise UserError(f"{path} is {image.width}x{image.height}, expected {width}x{height}; "
                            f"replace it with the original file")
        return np.asarray(image)

    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        pixels = bar(pool.map(load, files), total=len(files), desc=desc, unit="img",
                     disable=not distributed.is_main())
        for i, image in enumerate(pixels):
            out[i] = image.transpose(2, 0, 1)
    finally:
        pool.shutdown(cancel_futures=True)  # a bad file stops the run now, not after all the rest
    return out


class ImageFileDataset(Dataset):
    """Images streamed from disk, returned as ``(image, label, index)``.

    The index lets the training loop record per-sample dynamics however batches are shuffled.
    Paths are kept as one numpy bytes array, not a list of str: DataLoader workers that touch a
    million Python strings bump their refcounts and copy the parent's memory page by page.
    """

    def __init__(self, files: Sequence[str], labels: torch.Tensor | Sequence[int],
                 transform: Callable[[Image.Image], torch.Tensor] | None = None) -> None:
        if len(files) != len(labels):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        self._paths = np.array([os.fsencode(f) for f in files], dtype=np.bytes_)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self._paths)

    def load_image(self, index: int) -> Image.Image:
        """The decoded RGB image of sample `index`, for callers that draw their own crops."""
        return open_rgb(os.fsdecode(self._paths[index]))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image = self.load_image(index)
        tensor = self.transform(image) if self.transform is not None else pil_to_tensor(image)
        return tensor, int(self.labels[index]), index
