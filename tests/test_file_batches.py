"""FileBatches keeps TensorBatches' contract: same rows per seed, deterministic crops whatever the
number of workers, the seed's crop geometry, and a decoding error that names the file."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mislabel.data.datasets import Augment, TensorBatches
from mislabel.data.file_batches import CROP_LOG_RATIO, FileBatches, random_resized_box
from conftest import class_colour, write_image
from mislabel.core.user_input import UserError

CPU = torch.device("cpu")
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def write_files(folder: Path, count: int, size: tuple[int, int] = (40, 24)) -> tuple[list[str], torch.Tensor]:
    """`count` solid-colour PNGs (lossless, so pixels can be checked) with labels 0, 1, 2, 0, ..."""
    labels = torch.arange(count) % 3
    files = [folder / f"img_{i:03d}.png" for i in range(count)]
    for path, label in zip(files, labels.tolist()):
        write_image(path, label, size)
    return [str(f) for f in files], labels


def collect(batches, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    batches.set_epoch(epoch)
    return list(batches)


def test_random_resized_box_stays_inside() -> None:
    rng = np.random.default_rng(0)
    for width, height in [(40, 24), (7, 300), (500, 9), (1, 1), (224, 224)]:
        for _ in range(50):
            top, left, h, w = random_resized_box(width, height, rng)
            assert 0 <= top and top + h <= height and 0 <= left and left + w <= width and h > 0 and w > 0


def test_random_resized_box_fallback_is_centred_within_aspect_range() -> None:
    top, left, h, w = random_resized_box(1000, 10, np.random.default_rng(0))  # no draw can fit
    assert (h, top) == (10, 0) and left == (1000 - w) // 2
    assert math.isclose(math.log(w / h), CROP_LOG_RATIO[1], abs_tol=0.05)


def test_rows_match_tensor_batches(tmp_path: Path) -> None:
    files, labels = write_files(tmp_path, 9)
    from_files = FileBatches(files, labels, MEAN, STD, 4, CPU, image_size=8, train=True, seed=3, workers=0)
    in_memory = TensorBatches(torch.zeros(9, 3, 8, 8, dtype=torch.uint8), labels, MEAN, STD, 4, CPU,
                              shuffle=True, seed=3)
    assert len(from_files) == len(in_memory) == 2  # 4 + 5: a trailing batch of one joins the previous
    for epoch in (0, 1):
        ours = [rows for _, _, rows in collect(from_files, epoch)]
        theirs = [rows for _, _, rows in collect(in_memory, epoch)]
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert sorted(torch.cat(ours).tolist()) == list(range(9))


def test_tensor_batches_crop_is_a_padded_window() -> None:
    """The in-memory path's batched crop equals slicing each padded image at its own offset."""
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    batches = TensorBatches(images, torch.zeros(6, dtype=torch.int64), MEAN, STD, 6, CPU,
                            augment=Augment(crop_padding=2), seed=4)
    cropped = batches._crop_and_flip(images, torch.Generator().manual_seed(9))
    offsets = torch.randint(0, 5, (2, 6), generator=torch.Generator().manual_seed(9)).tolist()
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    expected = torch.stack([padded[i, :, dy:dy + 8, dx:dx + 8] for i, (dy, dx) in enumerate(zip(*offsets))])
    assert torch.equal(cropped, expected)


def test_workers_do_not_change_batches(tmp_path: Path) -> None:
    files, labels = write_files(tmp_path, 10)
    runs = {workers: FileBatches(files, labels, MEAN, STD, 4, CPU, image_size=16, train=True, seed=1,
                                 workers=workers) for workers in (0, 2)}
    for epoch in (0, 1):
        first, second = (collect(runs[workers], epoch) for workers in (0, 2))
        for a, b in zip(first, second, strict=True):
            assert all(torch.equal(x, y) for x, y in zip(a, b))
    epochs = [torch.cat([images for images, _, _ in collect(runs[0], epoch)]) for epoch in (0, 1)]
    assert not torch.equal(epochs[0], epochs[1])  # a new epoch draws new crops and order


def test_eval_batches_are_centre_crops_in_order(tmp_path: Path) -> None:
    files, labels = write_files(tmp_path, 5, size=(40, 24))
    batches = FileBatches(files, labels, MEAN, STD, 2, CPU, image_size=16, train=False, workers=0)
    images, got_labels, rows = (torch.cat(part) for part in zip(*collect(batches, 0)))
    assert images.shape == (5, 3, 16, 16) and images.dtype == torch.float32
    assert torch.equal(rows, torch.arange(5)) and torch.equal(got_labels, labels)
    colours = torch.tensor([class_colour(int(label)) for label in labels], dtype=torch.float32)
    expected = (colours / 255.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(images.mean(dim=(2, 3)), expected, atol=1e-3)


@pytest.mark.parametrize("workers", [0, 1])
def test_unreadable_image_is_named(tmp_path: Path, workers: int) -> None:
    files, labels = write_files(tmp_path, 6)
    Path(files[4]).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    batches = FileBatches(files, labels, MEAN, STD, 2, CPU, image_size=8, train=True, workers=workers)
    with pytest.raises(UserError, match=rf"^cannot decode image {files[4]} .*replace or remove the file$"):
        collect(batches, 0)


def test_shards_match_tensor_batches_and_record_every_row_once(tmp_path: Path) -> None:
    """Under torchrun each rank decodes the rows TensorBatches' shard would give it; the ranks together
    record every row once (11 rows over 2 ranks: one padding duplicate, row -1), and each sample gets
    the crop it gets in one process."""
    files, labels = write_files(tmp_path, 11)
    whole = FileBatches(files, labels, MEAN, STD, 3, CPU, image_size=8, train=True, seed=5, workers=0)
    for epoch in (0, 1):
        crops = {int(row): image for images, _, rows in collect(whole, epoch) for image, row in zip(images, rows)}
        recorded = []
        for rank in (0, 1):
            shard = FileBatches(files, labels, MEAN, STD, 3, CPU, image_size=8, train=True, seed=5, workers=0,
                                shard=(rank, 2))
            in_memory = TensorBatches(torch.zeros(11, 3, 8, 8, dtype=torch.uint8), labels, MEAN, STD, 3, CPU,
                                      shuffle=True, seed=5, shard=(rank, 2))
            assert len(shard) == len(in_memory) == 2
            for (images, got, rows), (_, expected, theirs) in zip(collect(shard, epoch), collect(in_memory, epoch),
                                                                  strict=True):
                assert torch.equal(rows, theirs) and torch.equal(got, expected)
                assert all(torch.equal(image, crops[int(row)]) for image, row in zip(images, rows) if row >= 0)
                recorded += rows.tolist()
        assert sorted(recorded) == [-1, *range(11)]
