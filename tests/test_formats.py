"""Every dataset format loads from tiny fixture files with the right counts, classes and shapes,
and every kind of bad input ends in a one-line UserError that names the file."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import mislabel.data.formats as formats
from mislabel.data.formats import (KNOWN_DATASETS, LARGE_DATASETS, ImageFileDataset, RawDataset,
                              read_dataset)
from conftest import (Written, class_colour, dumps_py2, write_caltech256, write_cifar10, write_cifar100,
                      write_class_folders, write_csv_list, write_cub, write_idx, write_image, write_mnist,
                      write_tiny_imagenet)
from mislabel.core.user_input import UserError


def check_in_memory(raw: RawDataset, written: Written, shape: tuple[int, ...]) -> None:
    """Labels, pixels, dtypes and shapes of an in-memory dataset match what the fixture wrote."""
    assert raw.train_files is None and raw.test_files is None
    for split in ("train", "test"):
        labels, images = getattr(raw, f"{split}_labels"), getattr(raw, f"{split}_images")
        assert labels.dtype == torch.int64 and images.dtype == torch.uint8
        assert tuple(images.shape) == (len(getattr(written, f"{split}_labels")), *shape)
        assert np.array_equal(labels.numpy(), getattr(written, f"{split}_labels"))
        if getattr(written, f"{split}_images") is not None:
            assert np.array_equal(images.numpy(), getattr(written, f"{split}_images"))


def check_files(raw: RawDataset, written: Written) -> None:
    """Labels of a file-based dataset match, and every path is absolute and exists."""
    assert raw.train_images is None and raw.test_images is None
    assert raw.class_names == written.class_names
    for split in ("train", "test"):
        labels, files = getattr(raw, f"{split}_labels"), getattr(raw, f"{split}_files")
        assert labels.dtype == torch.int64
        assert np.array_equal(labels.numpy(), getattr(written, f"{split}_labels"))
        assert all(os.path.isabs(f) and os.path.isfile(f) for f in files)


def test_dataset_names() -> None:
    assert set(LARGE_DATASETS) == {"webvision50", "clothing100k"} <= set(KNOWN_DATASETS)
    assert set(formats.LAYOUTS) == set(KNOWN_DATASETS)


# --- CIFAR -------------------------------------------------------------------------------------

def test_cifar10(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    raw = read_dataset("cifar10", tmp_path, seed=0)
    check_in_memory(raw, written, (3, 32, 32))
    assert raw.class_names == written.class_names and raw.num_classes == 10
    assert len(raw.train_labels) == 20 and len(raw.test_labels) == 6


def test_reading_cifar_pickles_loads_no_image_file_library(tmp_path: Path) -> None:
    """Phase 1 on CIFAR pickles never needs pandas, PIL, torchvision or sklearn (seconds and hundreds
    of MiB each run): neither the Runner's module nor the reader imports them."""
    import subprocess
    import sys

    write_cifar10(tmp_path)
    code = ("import sys, mislabel.pipeline; from mislabel.data.datasets import load_dataset; "
            f"load_dataset('cifar10', {str(tmp_path)!r}, 0); "
            "print(sorted(m for m in ('pandas', 'PIL', 'torchvision', 'sklearn') if m in sys.modules))")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path)
    raw = read_dataset("cifar100", str(tmp_path), seed=0)
    check_in_memory(raw, written, (3, 32, 32))
    assert raw.class_names == written.class_names and raw.num_classes == 100


def test_pickle_with_foreign_global_is_refused(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (written.root / "data_batch_3").write_bytes(dumps_py2({"data": Exploit()}))
    with pytest.raises(UserError, match=r"data_batch_3 asks to load (posix|os|nt)\.system"):
        read_dataset("cifar10", tmp_path, seed=0)
    assert not marker.exists()


def test_truncated_pickle_names_file(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path)
    path = written.root / "train"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(UserError, match=rf"{re.escape(str(path))}.*truncated or corrupt"):
        read_dataset("cifar100", tmp_path, seed=0)


def test_cifar_wrong_width_is_refused(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    bad = {"data": np.zeros((4, 3000), np.uint8), "labels": [0, 1, 2, 3]}
    (written.root / "test_batch").write_bytes(dumps_py2(bad))
    with pytest.raises(UserError, match=r"test_batch: data is uint8 \(4, 3000\)"):
        read_dataset("cifar10", tmp_path, seed=0)


def test_cifar_missing_batch(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    (written.root / "data_batch_5").unlink()
    with pytest.raises(UserError, match="missing .*data_batch_5"):
        read_dataset("cifar10", tmp_path, seed=0)


# --- IDX ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("subfolder", ["", "raw", "MNIST/raw"])
def test_mnist_plain_gz_and_raw(tmp_path: Path, gz: bool, subfolder: str) -> None:
    written = write_mnist(tmp_path, gz=gz, subfolder=subfolder)
    raw = read_dataset("mnist", tmp_path, seed=0)
    check_in_memory(raw, written, (1, 28, 28))
    assert raw.class_names == written.class_names


def test_fashion_mnist_in_datadir_wins(tmp_path: Path) -> None:
    written = write_mnist(tmp_path, name="fashion_mnist", gz=True)
    raw = read_dataset("fashion_mnist", tmp_path, seed=0)
    check_in_memory(raw, written, (1, 28, 28))
    assert raw.class_names == written.class_names


@pytest.mark.skipif(not formats.FASHION_MNIST_SYSTEM_DIR.is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_debian_fallback(tmp_path: Path) -> None:
    raw = read_dataset("fashion_mnist", tmp_path, seed=0)
    assert tuple(raw.train_images.shape) == (60000, 1, 28, 28)
    assert tuple(raw.test_images.shape) == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(raw.train_labels), torch.full((10,), 6000))
    assert raw.class_names[0] == "T-shirt/top" and raw.num_classes == 10


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_names_file(tmp_path: Path, gz: bool) -> None:
    written = write_mnist(tmp_path, gz=gz)
    path = written.root / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(UserError, match=rf"{re.escape(str(path))}.*truncated"):
        read_dataset("mnist", tmp_path, seed=0)


def test_idx_bad_magic_and_wrong_shape(tmp_path: Path) -> None:
    written = write_mnist(tmp_path)
    labels = written.root / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"\x01\x02" + labels.read_bytes()[2:])
    with pytest.raises(UserError, match=rf"{re.escape(str(labels))} is not an IDX file"):
        read_dataset("mnist", tmp_path, seed=0)
    write_idx(labels, np.zeros(2, np.uint8))  # 3 test images, 2 labels
    with pytest.raises(UserError, match=rf"{re.escape(str(labels))} holds uint8 \(2,\), expected 3"):
        read_dataset("mnist", tmp_path, seed=0)


# --- Tiny ImageNet -----------------------------------------------------------------------------

@pytest.mark.parametrize("official,nested", [(True, True), (True, False), (False, False)])
def test_tiny_imagenet_layouts(tmp_path: Path, official: bool, nested: bool) -> None:
    written = write_tiny_imagenet(tmp_path, official=official, nested=nested)
    raw = read_dataset("tiny_imagenet", tmp_path, seed=0)
    check_in_memory(raw, written, (3, 64, 64))
    assert raw.class_names == written.class_names
    labels = torch.cat([raw.train_labels, raw.test_labels])
    colours = torch.cat([raw.train_images, raw.test_images]).float().mean(dim=(2, 3))
    expected = torch.tensor([class_colour(int(label)) for label in labels], dtype=torch.float)
    grey = 3  # the fixture's grayscale image: last training image of class 0, now R = G = B
    assert (raw.train_images[grey, 0] == raw.train_images[grey, 2]).all()
    keep = torch.arange(len(labels)) != grey
    assert torch.allclose(colours[keep], expected[keep], atol=4)


def test_truncated_jpeg_names_file(tmp_path: Path) -> None:
    written = write_tiny_imagenet(tmp_path)
    path = written.root / "val" / "images" / "val_1.JPEG"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UserError, match=rf"cannot decode image {re.escape(str(path))}"):
        read_dataset("tiny_imagenet", tmp_path, seed=0)


def test_tiny_imagenet_wrong_size(tmp_path: Path) -> None:
    written = write_tiny_imagenet(tmp_path, official=False, nested=False)
    path = Path(written.root) / "train" / written.class_names[1] / "odd.JPEG"
    write_image(path, 1, (32, 32))
    with pytest.raises(UserError, match=rf"{re.escape(str(path))} is 32x32, expected 64x64"):
        read_dataset("tiny_imagenet", tmp_path, seed=0)


# --- CUB, Caltech-256, class folders -----------------------------------------------------------

@pytest.mark.parametrize("nested", [True, False])
def test_cub(tmp_path: Path, nested: bool) -> None:
    written = write_cub(tmp_path, nested=nested)
    raw = read_dataset("cub_200_2011", tmp_path, seed=0)
    check_files(raw, written)
    assert len(raw.train_files) == 6 and len(raw.test_files) == 6
    assert os.path.basename(raw.train_files[0]) == "Bird_0_0000.jpg"


def test_cub_missing_image(tmp_path: Path) -> None:
    written = write_cub(tmp_path)
    next((written.root / "images").rglob("*.jpg")).unlink()
    with pytest.raises(UserError, match=r"1 images listed in .*images.txt are missing"):
        read_dataset("cub_200_2011", tmp_path, seed=0)


def test_caltech256_split(tmp_path: Path) -> None:
    written = write_caltech256(tmp_path)
    raw = read_dataset("caltech256", tmp_path, seed=3)
    assert raw.class_names == written.class_names  # 257.clutter excluded
    assert not any("clutter" in f for f in raw.train_files + raw.test_files)
    # per class (5, 2, 1, 10) images -> 20% rounded, >= 1 when the class has >= 2: (1, 1, 0, 2)
    assert torch.bincount(raw.test_labels, minlength=4).tolist() == [1, 1, 0, 2]
    assert torch.bincount(raw.train_labels, minlength=4).tolist() == [4, 1, 1, 8]
    again = read_dataset("caltech256", tmp_path, seed=3)
    assert again.test_files == raw.test_files
    other_seeds = {tuple(read_dataset("caltech256", tmp_path, seed=s).test_files) for s in range(6)}
    assert len(other_seeds) > 1


@pytest.mark.parametrize("name", ["webvision50", "clothing100k", "my_photos"])
@pytest.mark.parametrize("test_dir", ["val", "test"])
def test_class_folder_datasets(tmp_path: Path, name: str, test_dir: str) -> None:
    written = write_class_folders(tmp_path, name, test_dir=test_dir)
    raw = read_dataset(name, tmp_path, seed=0)
    check_files(raw, written)
    assert all(f"{os.sep}{test_dir}{os.sep}" in f for f in raw.test_files)


def test_test_folder_wins_over_val(tmp_path: Path) -> None:
    write_class_folders(tmp_path, "clothing100k", test_dir="val", test_per_class=1)
    written = write_class_folders(tmp_path, "clothing100k", test_dir="test", test_per_class=3)
    raw = read_dataset("clothing100k", tmp_path, seed=0)
    assert np.array_equal(raw.test_labels.numpy(), written.test_labels)


def test_class_folder_unknown_test_class(tmp_path: Path) -> None:
    written = write_class_folders(tmp_path, "webvision50")
    write_image(written.root / "val" / "class_z" / "x.jpg", 0)
    with pytest.raises(UserError, match="not training classes \\(class_z\\)"):
        read_dataset("webvision50", tmp_path, seed=0)


def test_image_file_dataset(tmp_path: Path) -> None:
    written = write_class_folders(tmp_path, "webvision50")
    raw = read_dataset("webvision50", tmp_path, seed=0)
    dataset = ImageFileDataset(raw.train_files, raw.train_labels)
    image, label, index = dataset[5]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 8, 8)
    assert (label, index) == (int(written.train_labels[5]), 5) and len(dataset) == 12
    halved = ImageFileDataset(raw.train_files, raw.train_labels, lambda im: torch.tensor(im.size) // 2)
    assert halved[0][0].tolist() == [4, 4]
    Path(raw.train_files[2]).write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match=rf"cannot decode image {re.escape(str(raw.train_files[2]))}"):
        dataset[2]


# --- CSV lists ---------------------------------------------------------------------------------

def test_csv_with_split_column(tmp_path: Path) -> None:
    written = write_csv_list(tmp_path)
    raw = read_dataset("list.csv", tmp_path, seed=0)
    check_files(raw, written)
    assert raw.class_names == ["apple", "mango", "zebra"]


def test_csv_int_labels_seeded_holdout(tmp_path: Path) -> None:
    write_csv_list(tmp_path, labels_as="ints", with_split=False)
    raw = read_dataset(str(tmp_path / "list.csv"), "/nonexistent", seed=1)  # name given as a path
    assert raw.class_names == ["0", "1", "2"]
    assert torch.bincount(raw.test_labels).tolist() == [1, 1, 1]  # 10% of 10 per class
    assert torch.bincount(raw.train_labels).tolist() == [9, 9, 9]
    assert read_dataset("list.csv", tmp_path, seed=1).test_files == raw.test_files


def test_csv_path_escape(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.png"
    write_image(outside, 0)
    sub = tmp_path / "lists"
    write_csv_list(sub)
    with open(sub / "list.csv", "a") as f:
        f.write("../elsewhere.png,apple,train\n")
    with pytest.raises(UserError, match=r"1 paths outside .*elsewhere.png.*allow_outside=True"):
        read_dataset("list.csv", sub, seed=0)
    raw = read_dataset("list.csv", sub, seed=0, allow_outside=True)
    assert str(outside) in raw.train_files


@pytest.mark.parametrize("content,message", [
    ("file,label\na.png,x\n", "lacks column\\(s\\) path"),
    ("path,label\n", "lists no images"),
    ("path,label\nimages/0_000.png,cat\nimages/0_001.png,cat\n", "single class \\(cat\\)"),
    ("path,label,split\nimages/0_000.png,a,train\nimages/0_001.png,b,dev\n", "not 'dev'"),
])
def test_csv_bad_lists(tmp_path: Path, content: str, message: str) -> None:
    write_csv_list(tmp_path)
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(UserError, match=message):
        read_dataset("bad.csv", tmp_path, seed=0)


# --- Missing things ----------------------------------------------------------------------------

def test_missing_datadir(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"datadir .*nope does not exist.*cifar-10-batches-py"):
        read_dataset("cifar10", tmp_path / "nope", seed=0)


def test_missing_dataset_folder_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"folder .*cub_200_2011 not found; expected .*images.txt"):
        read_dataset("cub_200_2011", tmp_path, seed=0)
    with pytest.raises(UserError, match=r"unknown dataset 'imagenet21k'"):
        read_dataset("imagenet21k", tmp_path, seed=0)
    with pytest.raises(UserError, match=r"no complete set of IDX files"):
        read_dataset("mnist", tmp_path, seed=0)
    with pytest.raises(UserError, match=r"CSV list missing.csv not found"):
        read_dataset("missing.csv", tmp_path, seed=0)


def test_errors_are_one_line(tmp_path: Path) -> None:
    write_tiny_imagenet(tmp_path)
    (tmp_path / "tiny_imagenet" / "tiny-imagenet-200" / "val" / "val_annotations.txt").write_text("a\n")
    with pytest.raises(UserError) as error:
        read_dataset("tiny_imagenet", tmp_path, seed=0)
    assert "\n" not in str(error.value) and "val_annotations.txt" in str(error.value)
