"""The primitives every dataset held in memory shares: one resize policy (``cover_and_crop``), one
normalisation (``channel_stats``), and find_issues' scan cache, which a damaged file only costs a rescan."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mislabel.data import datasets
from mislabel.data.datasets import channel_stats
from mislabel.data.decode import cover_and_crop, decode_images
from mislabel.data.user_data import Listing, check_images, image_data, save_scan


def write_png(path: Path, pixels: np.ndarray) -> str:
    Image.fromarray(pixels).save(path)
    return str(path)


def framed(width: int, height: int) -> np.ndarray:
    """A white central square (side = the short side) between black margins on the long side."""
    pixels = np.zeros((height, width, 3), np.uint8)
    side = min(width, height)
    top, left = (height - side) // 2, (width - side) // 2
    pixels[top:top + side, left:left + side] = 255
    return pixels


@pytest.mark.parametrize("width, height", [(40, 20), (20, 40)])
def test_cover_and_crop_keeps_the_aspect_ratio_and_cuts_the_centre(width: int, height: int) -> None:
    """A stretch to 10x10 would squeeze the black margins in; scaling to cover and cropping the
    centre leaves only the white square (its edge pixels blend a little under antialiasing)."""
    out = np.asarray(cover_and_crop(Image.fromarray(framed(width, height)), (10, 10)))
    assert out.shape == (10, 10, 3)
    assert out[1:-1, 1:-1].min() == 255
    tall = np.asarray(cover_and_crop(Image.fromarray(framed(width, height)), (12, 6)))
    assert tall.shape == (12, 6, 3)


def test_cover_and_crop_leaves_an_image_of_the_size_alone() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(cover_and_crop(Image.fromarray(pixels), (9, 7))), pixels)


def test_decode_images_fills_the_callers_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    files = [write_png(tmp_path / f"{i}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for i in range(3)]
    target = torch.zeros((3, 3, 8, 8), dtype=torch.uint8)
    returned = decode_images(files, (8, 8), out=target.numpy())
    assert np.shares_memory(returned, target.numpy())
    assert np.array_equal(target[1].numpy(), np.asarray(Image.open(files[1])).transpose(2, 0, 1))


def test_channel_stats_is_exact_whatever_the_chunking(monkeypatch) -> None:
    """The per-channel histogram gives float64 two-pass numerics (sample std) in chunks of any size;
    a constant channel gets the 1e-3 floor instead of a division by zero."""
    images = torch.randint(0, 256, (50, 3, 6, 5), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    images[:, 2] = 7
    flat = images.transpose(0, 1).reshape(3, -1).double().numpy() / 255.0
    whole = channel_stats(images)
    monkeypatch.setattr(datasets, "STATS_CHUNK_VALUES", 97)  # a chunk of one image, and a remainder
    chunked = channel_stats(images)
    assert whole == chunked
    np.testing.assert_allclose(whole[0], flat.mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(whole[1][:2], flat[:2].std(axis=1, ddof=1), rtol=1e-12)
    assert whole[1][2] == 1e-3


def test_digits_and_user_images_are_normalised_alike(tmp_path: Path) -> None:
    """find_issues' in-memory images and the named datasets go through the same channel_stats."""
    rng = np.random.default_rng(2)
    files = [write_png(tmp_path / f"{i}.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)) for i in range(6)]
    listing = Listing("mine", tmp_path, "class folders", ["a", "b"], files, np.array([0, 1] * 3), files[:2],
                      np.array([0, 1]), held_out=False)
    data = image_data(listing, np.ones(6, bool), np.ones(2, bool), side=8, in_memory=True, hflip=False)
    assert tuple(data.train_images.shape) == (6, 3, 8, 8) and data.real_noise
    assert (data.mean, data.std) == channel_stats(data.train_images)


def test_a_damaged_scan_cache_costs_only_a_rescan(tmp_path: Path) -> None:
    files = [write_png(tmp_path / f"{i}.png", np.full((5, 4, 3), i, np.uint8)) for i in range(3)]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    files.append(str(tmp_path / "bad.png"))
    cache = tmp_path / "scan.json"
    first = check_images(files, cache)
    assert first.short_side.tolist() == [4, 4, 4, 0] and list(first.failures) == [3]
    assert not cache.exists()  # check_images only reads the cache; save_scan stores it
    for damage in ("{not json", '["a list"]', '{"fingerprint": "other"}'):
        cache.write_text(damage)
        again = check_images(files, cache)
        assert again.short_side.tolist() == first.short_side.tolist() and again.failures == first.failures
    save_scan(cache, first)
    record = json.loads(cache.read_text())
    cache.write_text(json.dumps(dict(record, short_side=[9, 9, 9, 0])))  # an intact cache of these files is used
    assert check_images(files, cache).short_side.tolist() == [9, 9, 9, 0]
    cache.write_text(json.dumps({"fingerprint": record["fingerprint"], "renamed": []}))  # these files, wrong fields
    assert check_images(files, cache).short_side.tolist() == [4, 4, 4, 0]
    Path(files[0]).unlink()  # kept cache, changed files: scanned afresh
    assert check_images(files, cache).short_side.tolist() == [0, 4, 4, 0]
