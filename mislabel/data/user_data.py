"""A practitioner's own labelled images, as ``find_issues`` reads them.

    list_data(path)      which files, which labels, which of them are scored
    check_images(files)  decode every file once, up front; the ones that fail are skipped
    image_data(...)      the ImageData the Runner trains on (in memory when small, else streamed)

Layouts of ``<data>``:

* a bare class tree ``<data>/<class>/**/<image>``: every image is a training sample, so every
  image is scored. The accuracy the run prints is measured on a seeded, stratified 10% of those
  same images (``stratified_holdout``): it is in-sample, a check that training worked, not an
  estimate of generalisation;
* ``<data>/train/<class>/`` plus ``val/`` or ``test/`` (``read_class_folders``): train is scored,
  val/test gives held-out accuracy;
* a CSV ``path,label[,split]`` (``read_csv_list``): with a split column as above; without one,
  every row is scored, with the in-sample accuracy of the bare tree.

Checking decodability costs one full decode of every file. ``scan.json`` in the output folder keeps
the result with a fingerprint of the files' paths, sizes and modification times, so rerunning an
interrupted command does not decode a large dataset twice.

Under torchrun (``NPROC=n``) both decoding passes are split: each process decodes one contiguous
block of the files, and the blocks are exchanged (the scan's per-file results as Python objects,
the pixels held in memory as tensor broadcasts), so every process ends with what one process would
have decoded, having decoded only its share. Only rank 0 reads and writes ``scan.json``.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mislabel.core import distributed
from mislabel.data.datasets import IMAGENET_STATS, Augment, ImageData, channel_stats
from mislabel.core.progress import bar
from mislabel.data.decode import decode_images, open_rgb
from mislabel.data.image_files import (CSV_TEST_FRACTION, read_class_folders, read_class_tree, read_csv_list,
                                       stratified_holdout)
from mislabel.core.user_input import UserError
from mislabel.core.files import read_record, write_record

__all__ = ["Listing", "Scan", "list_data", "check_images", "save_scan", "image_data", "SCAN_FILE"]

SCAN_FILE = "scan.json"
SANITY_FRACTION = CSV_TEST_FRACTION  # share of an unsplit set whose (in-sample) accuracy is printed


@dataclass
class Listing:
    """Files and labels before any pixel is read. ``held_out`` says whether test is a real
    held-out split (False: an in-sample subset of train, for a sanity check only)."""

    name: str
    root: Path            # report paths are relative to it
    layout: str
    class_names: list[str]
    train_files: list[str]
    train_labels: np.ndarray
    test_files: list[str]
    test_labels: np.ndarray
    held_out: bool

    def relative(self, files: list[str]) -> list[str]:
        return [os.path.relpath(f, self.root) for f in files]


def _unsplit(name: str, root: Path, layout: str, files: list[str], labels: np.ndarray, class_names: list[str],
             seed: int) -> Listing:
    """Everything is trained on and scored; a stratified 10% of it doubles as the accuracy check."""
    check = stratified_holdout(labels, SANITY_FRACTION, seed)
    kept = np.flatnonzero(check)
    return Listing(name, root, layout, class_names, list(files), labels,
                   [files[i] for i in kept], labels[kept], held_out=False)


def list_data(data: str | os.PathLike, seed: int, allow_outside: bool = False) -> Listing:
    """Find the user's files and labels in any of the three layouts (module docstring)."""
    path = Path(os.path.abspath(data))
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise UserError(f"{data} is a file but not a .csv; pass a class folder or a CSV of path,label")
        splits = read_csv_list(path, seed, allow_outside)
        columns = pd.read_csv(path, nrows=0).columns.str.strip().str.lower()
        if "split" in columns:
            return Listing(path.stem, path.parent, "csv with split column", splits.class_names, splits.train_files,
                           splits.train_labels, splits.test_files, splits.test_labels, held_out=True)
        files = splits.train_files + splits.test_files
        labels = np.concatenate([splits.train_labels, splits.test_labels])
        return _unsplit(path.stem, path.parent, "csv", files, labels, splits.class_names, seed)
    if not path.is_dir():
        raise UserError(f"{data} does not exist; pass a folder of <class>/<image> or a CSV of path,label")
    if (path / "train").is_dir():
        splits = read_class_folders(path)
        return Listing(path.name, path, "train/ + val|test/ class folders", splits.class_names, splits.train_files,
                       splits.train_labels, splits.test_files, splits.test_labels, held_out=True)
    files, labels, class_names = read_class_tree(path)
    return _unsplit(path.name, path, "class folders", files, labels, class_names, seed)


# ---------------------------------------------------------------------------------------------
# Decodability, checked once up front
# ---------------------------------------------------------------------------------------------

@dataclass
class Scan:
    """Per file: its short side in pixels (0 when it failed) and, for failures, why; and the
    fingerprint of the files it was made of (what ``save_scan`` stores it under)."""

    short_side: np.ndarray
    failures: dict[int, str]
    fingerprint: str = ""

    @property
    def ok(self) -> np.ndarray:
        return self.short_side > 0


def _fingerprint(files: list[str]) -> str:
    digest = hashlib.sha256()
    for path in files:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            digest.update(f"{path}\0missing\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _inspect(path: str) -> tuple[int, str]:
    """Decode exactly as training will (``open_rgb``), so a file passing here cannot fail there."""
    try:
        image = open_rgb(path)
    except UserError as err:
        return 0, str(err)
    if min(image.size) < 1:
        return 0, f"{path} has no pixels ({image.width}x{image.height})"
    return min(image.size), ""


def _threads() -> int:
    return min(8, os.cpu_count() or 1)  # PIL releases the GIL while decoding


def _cached(cache: Path | None, fingerprint: str) -> Scan | None:
    """The scan stored in ``cache`` if it was made of files with this fingerprint. A cache
    (``read_record`` without a fix): a damaged or foreign file only costs the scan again."""
    stored = None if cache is None else read_record(cache)
    if stored is None or stored.get("fingerprint") != fingerprint:
        return None
    try:
        return Scan(np.asarray(stored["short_side"], dtype=np.int64),
                    {int(k): str(v) for k, v in stored["failures"].items()}, fingerprint)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # valid JSON with the wrong fields: as damaged


def check_images(files: list[str], cache: Path | None = None) -> Scan:
    """Decode every file in a thread pool; reuse ``cache`` when the files have not changed (it is only
    read here: ``save_scan`` stores it once the caller has decided to go on). Under torchrun each
    rank decodes its block of the files and every rank gets the whole scan."""
    fingerprint = distributed.on_main(lambda: _fingerprint(files))  # the files' sizes and times, read once
    stored = distributed.on_main(lambda: _cached(cache, fingerprint))
    if stored is not None:
        return stored
    start, stop = distributed.block_bounds(len(files))
    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        results = distributed.gather_lists(list(bar(pool.map(_inspect, files[start:stop]), total=stop - start,
                                                    desc="checking images", unit="img",
                                                    disable=not distributed.is_main())))
    short_side = np.array([side for side, _ in results], dtype=np.int64)
    failures = {i: reason for i, (_, reason) in enumerate(results) if reason}
    return Scan(short_side, failures, fingerprint)


def save_scan(cache: Path, scan: Scan) -> None:
    """Store ``scan`` for ``check_images`` to reuse while its files are unchanged (rank 0)."""
    if distributed.is_main():
        write_record(cache, {"fingerprint": scan.fingerprint, "short_side": scan.short_side.tolist(),
                             "failures": {str(k): v for k, v in scan.failures.items()}})


# ---------------------------------------------------------------------------------------------
# The Runner's dataset
# ---------------------------------------------------------------------------------------------

def _load_pixels(files: list[str], side: int, desc: str) -> torch.Tensor:
    """Every file through ``decode_images``' resize policy into one uint8 tensor; under torchrun
    each rank decodes its block and the blocks are shared, so each rank holds the whole tensor
    (its batches index any row)."""
    out = torch.empty((len(files), 3, side, side), dtype=torch.uint8)
    start, stop = distributed.block_bounds(len(files))
    decode_images(files[start:stop], (side, side), resize=True, out=out[start:stop].numpy(), desc=desc)
    distributed.share_blocks(out)
    return out


def image_data(listing: Listing, train_keep: np.ndarray, test_keep: np.ndarray, side: int, in_memory: bool,
               hflip: bool) -> ImageData:
    """The Runner's dataset from the decodable files (``*_keep`` masks): decoded once into one
    uint8 tensor at ``side`` when ``in_memory`` (batches are then cropped and flipped as tensors),
    else streamed from disk by ``FileBatches`` at crops of ``side``."""
    train_files = [f for f, keep in zip(listing.train_files, train_keep) if keep]
    test_files = [f for f, keep in zip(listing.test_files, test_keep) if keep]
    data = ImageData(name=listing.name, class_names=listing.class_names,
                     train_labels=torch.from_numpy(listing.train_labels[train_keep].astype(np.int64)),
                     test_labels=torch.from_numpy(listing.test_labels[test_keep].astype(np.int64)),
                     real_noise=True, file_image_size=side)
    if not in_memory:
        data.train_files, data.test_files = train_files, test_files
        data.mean, data.std = IMAGENET_STATS
        return data
    data.train_images = _load_pixels(train_files, side, "loading images")
    data.test_images = _load_pixels(test_files, side, "loading test images")
    data.mean, data.std = channel_stats(data.train_images)
    data.augment = Augment(crop_padding=max(1, side // 8), hflip=hflip)
    return data
