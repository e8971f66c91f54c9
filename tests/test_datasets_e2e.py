"""Phase 1 (`generate_td`) end to end on a fixture of every dataset name, with every network.

Runs go through ``runner.main`` in this process (what ``./run.sh generate_td`` calls), so the
interpreter and torch start once; ``./run.sh`` itself is exercised by one run and one error.
Sizes are tiny (a few images, 1-2 epochs, 32-pixel crops for image-file sets): these tests check
plumbing and file contents, not learning.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import runner
from mislabel.data.datasets import load_dataset
from mislabel.data.formats import FASHION_MNIST_SYSTEM_DIR, LARGE_DATASETS, read_dataset
from mislabel.models import NETWORKS
from conftest import (run_sh, write_caltech256, write_cifar10, write_cifar100, write_class_folders, write_csv_list,
                      write_cub, write_mnist, write_tiny_imagenet)
from mislabel.core.dynamics import METADATA_FILE, TD_FILE

CLASS_FOLDER_NAME = "my_photos"
CSV_NAME = "labels.csv"


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Batches of a few images gain nothing from intra-op threads on a shared 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def datadir(tmp_path_factory) -> Path:
    """One datadir holding every dataset name in its on-disk format."""
    root = tmp_path_factory.mktemp("datasets")
    write_cifar10(root)
    write_cifar100(root, num_train=12)
    write_mnist(root, "mnist", num_train=9)
    write_mnist(root, "fashion_mnist", gz=True, num_train=9)
    write_tiny_imagenet(root)
    write_cub(root)
    write_caltech256(root)
    write_class_folders(root, "webvision50", test_dir="test")
    write_class_folders(root, "clothing100k")
    write_class_folders(root, CLASS_FOLDER_NAME)
    write_csv_list(root, CSV_NAME, with_split=False)
    return root


@dataclass(frozen=True)
class Case:
    dataset: str
    net_type: str
    depth: int
    flags: tuple[str, ...] = ()


FILE_FLAGS = ("--image_size", "32", "--batch_size", "4")
CASES = [
    Case("cifar10", "resnet", 20),
    Case("cifar100", "wide_resnet", 16, ("--widen_factor", "1")),
    Case("mnist", "lenet_mnist", 5),
    Case("mnist", "linear", 1),
    Case("fashion_mnist", "mlp", 2),
    Case("fashion_mnist", "lenet", 5),
    Case("tiny_imagenet", "preresnet", 18),
    Case("cub_200_2011", "resnet", 18, FILE_FLAGS),
    Case("caltech256", "conv4", 4, FILE_FLAGS),
    Case("webvision50", "vgg", 11, FILE_FLAGS),
    Case("clothing100k", "densenet", 40, FILE_FLAGS),
    Case(CLASS_FOLDER_NAME, "lenet", 5, FILE_FLAGS),
    Case(CSV_NAME, "conv4", 4, FILE_FLAGS),
]
EPOCHS = 2


def generate_td(datadir: Path, results: Path, case: Case, *extra: str) -> None:
    runner.main(["generate_td", "--datadir", str(datadir), "--dataset", case.dataset, "--seed", "1",
                 "--noise_ratio", "0.2", "--noise_type", "flip", "--net_type", case.net_type,
                 "--depth", str(case.depth), "--num_epochs", str(EPOCHS), "--num_valid", "2",
                 "--device", "cpu", "--results_dir", str(results), *case.flags, *extra])


def test_cases_cover_every_network() -> None:
    assert {case.net_type for case in CASES} == set(NETWORKS)


@pytest.mark.slow   # phase 1 on every format and network
@pytest.mark.parametrize("case", CASES, ids=[case.dataset for case in CASES])
def test_generate_td(datadir: Path, tmp_path: Path, case: Case) -> None:
    generate_td(datadir, tmp_path, case)
    large = case.dataset in LARGE_DATASETS
    noise = "" if large else "_percmislabeled0.2_flip"
    folder = tmp_path / f"{case.dataset}_{case.net_type}{case.depth}{noise}" / "computation4td_seed1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.parent.name]

    raw = read_dataset(case.dataset, datadir, seed=1)
    meta = torch.load(folder / METADATA_FILE, weights_only=True)
    train, valid = meta["train_indices"].numpy(), meta["valid_indices"].numpy()
    assert len(valid) == 2
    assert np.array_equal(np.sort(np.concatenate([train, valid])), np.arange(len(raw.train_labels)))
    assert ("true_targets" in meta) == (not large)
    with np.load(folder / TD_FILE) as npz:
        assert npz["td"].shape == (len(train), EPOCHS, raw.num_classes)
        assert np.array_equal(npz["indices"], train)
        assert np.array_equal(npz["labels"][:, 0], meta["assigned_targets"].numpy()[train])
    results_test = (folder / "results_test.csv").read_text().splitlines()
    assert len(results_test) == 1 + len(raw.test_labels)


@pytest.mark.slow   # a whole generate_td command
def test_run_sh_generate_td_on_image_files(datadir: Path, tmp_path: Path) -> None:
    """The seed's positional form through ./run.sh; a large set ignores the noise arguments."""
    done = run_sh("generate_td", str(datadir), "webvision50", "0", "0.4", "uniform", "conv4", "4",
                  "--num_epochs", "1", "--image_size", "16", "--device", "cpu", env={"RESULTS_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "noise arguments are ignored" in done.stdout
    assert (tmp_path / "webvision50_conv44" / "computation4td_seed0" / TD_FILE).is_file()


def test_run_sh_missing_dataset_folder(datadir: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    done = run_sh("generate_td", str(datadir), "caltech101", "0", "0.2", "uniform", "conv4", "4",
                  env={"RESULTS_DIR": str(results)})
    assert done.returncode == 2
    assert re.fullmatch(r"error: unknown dataset 'caltech101' and no folder \S+caltech101; .*\n", done.stderr)
    assert not results.exists()


@pytest.mark.parametrize("dataset, datadir_name, flags, message", [
    ("webvision50", "absent", (), r"datadir \S+absent does not exist"),
    ("cub_200_2011", "empty", (), r"dataset folder \S+cub_200_2011 not found"),
    ("cifar10", "datasets", ("--image_size", "64"), r"--image_size applies only to datasets read from image files"),
    ("webvision50", "datasets", ("--image_size", "4"), r"--image_size 4 is outside 8..1024"),
], ids=["missing-datadir", "missing-dataset", "image-size-in-memory", "image-size-tiny"])
def test_bad_input_is_one_line(datadir: Path, tmp_path: Path, capsys, dataset: str, datadir_name: str,
                               flags: tuple[str, ...], message: str) -> None:
    where = {"absent": tmp_path / "absent", "empty": tmp_path, "datasets": datadir}[datadir_name]
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as exit_info:
        generate_td(where, results, Case(dataset, "conv4", 4, flags))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"error: {message}.*\n", err), err
    assert not results.exists()


def test_no_datadir_for_a_dataset_on_disk(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["generate_td", "--dataset", "cifar10", "--results_dir", str(tmp_path / "results")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: cifar10 is read from disk; pass --datadir, the folder that holds " \
                                      "cifar10/ (see README)\n"
    assert not (tmp_path / "results").exists()


def test_corrupt_image_mid_run_names_the_file(tmp_path: Path, capsys) -> None:
    """Image files are only opened while training; a broken one must still be named, in one line."""
    write_class_folders(tmp_path, "photos", per_class=6)
    broken = tmp_path / "photos" / "train" / "class_b" / "img_003.jpg"
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(SystemExit) as exit_info:
        generate_td(tmp_path, tmp_path / "results", Case("photos", "conv4", 4, FILE_FLAGS))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err  # tqdm's progress bars, then the error as the last line
    assert "Traceback" not in err
    assert re.fullmatch(rf"error: cannot decode image {re.escape(str(broken))} .*", err.splitlines()[-1]), err


@pytest.mark.skipif(not FASHION_MNIST_SYSTEM_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package(tmp_path: Path) -> None:
    """A datadir without fashion_mnist/ falls back to the package's files, as the pipeline loads them."""
    data = load_dataset("fashion_mnist", tmp_path, seed=0)
    assert (data.num_train, len(data.test_labels), data.num_classes) == (60000, 10000, 10)
    assert (data.in_channels, data.image_size) == (1, 28)
    assert not data.augment.hflip
