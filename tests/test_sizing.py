"""Image-file datasets other than the named photo sets train at their own size, not at 224."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_class_folders
from mislabel.data.datasets import FILE_IMAGE_SIZE, load_dataset
from mislabel.data.sizing import median_short_side, training_side


def test_training_side_is_the_smallest_side_at_or_above_the_median():
    assert [training_side(s) for s in (1, 16, 17, 28, 64, 65, 200, 500)] == [16, 16, 32, 32, 64, 128, 224, 224]


def test_median_short_side_reads_headers_and_skips_unreadable_files(tmp_path: Path):
    written = write_class_folders(tmp_path, "tiny")
    files = sorted(str(p) for p in (written.root / "train").rglob("*.jpg"))
    (tmp_path / "broken.png").write_bytes(b"no image")
    assert median_short_side(files + [str(tmp_path / "broken.png")]) == 8
    assert median_short_side([str(tmp_path / "broken.png")]) is None and median_short_side([]) is None


@pytest.mark.parametrize("name, side", [("my_digits", 16), ("webvision50", FILE_IMAGE_SIZE)])
def test_class_folders_are_sized_from_their_images_unless_a_named_photo_set(tmp_path: Path, name: str, side: int,
                                                                           capsys):
    write_class_folders(tmp_path, name)   # 8x8 images
    data = load_dataset(name, tmp_path, seed=0)
    assert data.image_size == side
    assert ("crops are 16px" in capsys.readouterr().out) == (side == 16)
    assert load_dataset(name, tmp_path, seed=0, image_size=40).image_size == 40   # the flag still wins
