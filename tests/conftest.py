"""What the tests share: how to run the commands, the one check that a bad input is refused,
phase-1 runs made once per session, and tiny datasets in every on-disk format.

Test modules import these names from here (``from conftest import ...``) and never from each
other; nothing here or in any test imports from bench/.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names

from mislabel.core.user_input import UserError
from mislabel.data.py2_pickle import dumps_py2

ROOT = Path(__file__).resolve().parents[1]

# A recipe small enough for CI yet long enough that noisy labels leave a trace: a CIFAR ResNet-20
# on 8x8 digits takes well under a second per epoch on two CPU cores.
TINY_RECIPE = ["--net_type", "resnet", "--depth", "20", "--num_epochs", "30", "--device", "cpu"]
# a LeNet-5 for 2 epochs on digits: a second or two, enough for a well-formed run folder
TINY = ["--dataset", "digits", "--seed", "5", "--noise_ratio", "0.3", "--noise_type", "uniform",
        "--net_type", "lenet", "--depth", "5", "--num_epochs", "2", "--device", "cpu"]
RUN_SUBDIR = Path("digits_lenet5_percmislabeled0.3_uniform") / "computation4td_seed5"


# ---------------------------------------------------------------------------------------------
# Running commands, and the one refusal check
# ---------------------------------------------------------------------------------------------

def run_sh(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ./run.sh with the test interpreter, capturing output."""
    full_env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run([str(ROOT / "run.sh"), *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or ROOT, timeout=900)


def run_python(script: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=900)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden temp files included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _state(path: Path) -> object:
    """What ``refused`` compares: None when absent, else the SHA-256 of each file at or below it."""
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def refused(run: Callable[[], object] | subprocess.CompletedProcess, *needles: str,
            unchanged: Sequence[Path] = (), after_progress: bool = False) -> str:
    """Assert that bad input was refused as every command must refuse it, and return the error line.

    ``run`` is a command already run (a ``CompletedProcess``) or a callable: one that runs a command
    and returns its ``CompletedProcess``, an entry point run in-process (``lambda: main(argv)``,
    stderr captured here) or a library call. A refusal is exit
    code 2 (or a ``UserError``, for a library call), exactly one line ``error: ...`` holding every
    one of ``needles`` and no traceback; ``after_progress``: a failure mid-training, where progress
    bars come before that line. Each path in ``unchanged`` (file or folder, present or absent) is
    byte for byte as it was before ``run`` was called.
    """
    before = {path: _state(path) for path in unchanged}
    done, code, captured = run, None, io.StringIO()
    if not isinstance(run, subprocess.CompletedProcess):
        with contextlib.redirect_stderr(captured):
            try:
                done = run()
            except SystemExit as exited:
                code = exited.code
            except UserError as err:
                code = 2
                print(f"error: {err}", file=sys.stderr)
    if isinstance(done, subprocess.CompletedProcess):
        code, stderr = done.returncode, done.stderr
    else:
        stderr = captured.getvalue()
    assert code == 2, f"exit code {code}, not 2: {stderr[-3000:]}"
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in stderr, stderr[-3000:]
    assert after_progress or len(lines) == 1, stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    for path, state in before.items():
        assert _state(path) == state, f"{path} changed although the input was refused"
    return errors[0]


# ---------------------------------------------------------------------------------------------
# Phase-1 runs and detectors, made once per test session; the slow tier
# ---------------------------------------------------------------------------------------------

# Fixtures that train a model or run a whole command (tens of seconds to minutes on 2 cores): every
# test that needs one is marked slow here, once; tests slow on their own carry @pytest.mark.slow.
# `./run.sh test -m "not slow"` is the quick loop; `./run.sh test` and CI run everything.
SLOW_FIXTURES = frozenset({"uniform30_run", "detector_file", "finished", "budget_run", "small_results"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

@pytest.fixture(scope="session")
def uniform30_run(tmp_path_factory) -> Path:
    """Phase 1 on digits with 30% uniform noise (seed 1): the detector's training data."""
    results = tmp_path_factory.mktemp("results")
    done = run_python("runner.py", "generate_td", "--dataset", "digits", "--seed", "1", "--noise_ratio", "0.3",
                      "--noise_type", "uniform", "--results_dir", str(results), *TINY_RECIPE)
    assert done.returncode == 0, done.stderr
    return results / "digits_resnet20_percmislabeled0.3_uniform" / "computation4td_seed1"


@pytest.fixture(scope="session")
def detector_file(uniform30_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("detector") / "digits_0.3_lstm_detector.pth.tar"
    done = run_sh("train_detector", "--r", "0.3", "--dataset", "digits", "--files_path", str(uniform30_run),
                  "--out", str(out), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    return out


# ---------------------------------------------------------------------------------------------
# Your own images: class folders of digits with some labels moved (find_issues' input)
# ---------------------------------------------------------------------------------------------

PER_CLASS = 48                 # 480 images: enough for the swaps to stand out, quick on a CPU
SWAP_SHARE = 0.1
HOSTILE_CLASS = "7<img src=x onerror=alert(1)>"
HOSTILE_FILE = "<script>alert(1)</script>.png"   # a "/" inside: a folder "<script>alert(1)<" + "script>.png"


def write_digit_folders(root: Path, seed: int = 0) -> set[str]:
    """PNG class folders of upsampled 8x8 digits; returns the relative paths of the moved files."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.choice(np.flatnonzero(digits.target == c), PER_CLASS, replace=False)
                           for c in range(10)])
    swapped_rows = set(rng.choice(rows, int(SWAP_SHARE * len(rows)), replace=False).tolist())
    names = [HOSTILE_CLASS if c == 7 else str(c) for c in range(10)]
    moved = set()
    for position, row in enumerate(rows):
        label = int(digits.target[row])
        if row in swapped_rows:
            label = (label + int(rng.integers(1, 10))) % 10
        pixels = np.rint(digits.images[row] * (255 / 16)).astype(np.uint8)
        relative = f"{names[label]}/{position:04d}.png"
        if position == rows.size - 1:
            relative = f"{names[label]}/{HOSTILE_FILE}"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).resize((16, 16), Image.NEAREST).save(root / relative)
        if row in swapped_rows:
            moved.add(relative)
    (root / "0" / "corrupt.png").write_bytes(b"this is not a png")
    good = sorted((root / "1").glob("*.png"))[0].read_bytes()
    (root / "1" / "truncated.png").write_bytes(good[: len(good) // 2])
    return moved


# ---------------------------------------------------------------------------------------------
# Tiny datasets written in every on-disk format that mislabel.data.formats reads
# ---------------------------------------------------------------------------------------------
# Each ``write_*`` function takes a folder (the ``datadir``), writes one dataset under it exactly as
# the real download lays it out, and returns a :class:`Written` record of what a reader must give
# back: ``write_cifar10(tmp_path)`` then ``read_dataset("cifar10", tmp_path, 0)``. Images are solid
# colours (``class_colour``) so JPEG round trips stay within a few levels and a test can check
# pixels, not only shapes. File names sort in writing order, so ``train_labels`` lists labels in
# the order readers return them.

@dataclass
class Written:
    """What a fixture wrote: its folder and the classes, labels (and pixels) a reader must return."""

    root: Path
    class_names: list[str]
    train_labels: np.ndarray
    test_labels: np.ndarray
    train_images: np.ndarray | None = None  # uint8 [N, C, H, W], only for in-memory formats
    test_images: np.ndarray | None = None


def class_colour(label: int) -> tuple[int, int, int]:
    """A distinct RGB colour per class, far enough apart to survive JPEG."""
    return (40 * label + 20) % 256, (90 * label + 60) % 256, (150 * label + 100) % 256


def write_image(path: Path, label: int, size: tuple[int, int] = (8, 8), mode: str = "RGB") -> None:
    """Write a solid `class_colour(label)` image of `size` = (width, height); format from suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, class_colour(label)).convert(mode).save(path)


def _labels(num_classes: int, per_class: int) -> np.ndarray:
    """Labels 0,0,..,1,1,..: class-major, the order sorted class folders are listed in."""
    return np.repeat(np.arange(num_classes, dtype=np.int64), per_class)


# ---------------------------------------------------------------------------------------------
# CIFAR: Python 2 pickles, as in the official cifar-*-python archives (mislabel.data.py2_pickle)
# ---------------------------------------------------------------------------------------------

def _cifar_batch(rng: np.random.Generator, labels: np.ndarray,
                 labels_key: str) -> tuple[dict, np.ndarray]:
    """One batch dict as in the archive, and its pixels as uint8 [N, 3, 32, 32]."""
    data = rng.integers(0, 256, (len(labels), 3 * 32 * 32), dtype=np.uint8)
    batch = {"batch_label": "fixture batch", labels_key: labels.tolist(), "data": data,
             "filenames": [f"img_{i}.png" for i in range(len(labels))]}
    return batch, data.reshape(-1, 3, 32, 32)


def write_cifar10(folder: Path, per_batch: int = 4, num_test: int = 6) -> Written:
    """``cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``."""
    root = folder / "cifar10" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    rng = np.random.default_rng(10)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (root / "batches.meta").write_bytes(dumps_py2({"label_names": names, "num_vis": 3072,
                                                   "num_cases_per_batch": per_batch}))
    splits = {}
    for split, files, count in (("train", [f"data_batch_{i}" for i in range(1, 6)], per_batch),
                                ("test", ["test_batch"], num_test)):
        labels, images = [], []
        for file in files:
            batch_labels = rng.integers(0, 10, count)
            batch, pixels = _cifar_batch(rng, batch_labels, "labels")
            (root / file).write_bytes(dumps_py2(batch))
            labels.append(batch_labels)
            images.append(pixels)
        splits[split] = np.concatenate(labels), np.concatenate(images)
    return Written(root, names, splits["train"][0], splits["test"][0],
                   splits["train"][1], splits["test"][1])


def write_cifar100(folder: Path, num_train: int = 8, num_test: int = 5) -> Written:
    """``cifar100/cifar-100-python/{train,test,meta}`` with fine and coarse labels."""
    root = folder / "cifar100" / "cifar-100-python"
    root.mkdir(parents=True)
    rng = np.random.default_rng(100)
    fine = [f"fine_{i:02d}" for i in range(100)]
    (root / "meta").write_bytes(dumps_py2({"fine_label_names": fine,
                                           "coarse_label_names": [f"coarse_{i}" for i in range(20)]}))
    out = {}
    for split, count in (("train", num_train), ("test", num_test)):
        labels = rng.integers(0, 100, count)
        batch, pixels = _cifar_batch(rng, labels, "fine_labels")
        batch["coarse_labels"] = (labels // 5).tolist()
        (root / split).write_bytes(dumps_py2(batch))
        out[split] = labels, pixels
    return Written(root, fine, out["train"][0], out["test"][0], out["train"][1], out["test"][1])


# ---------------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST)
# ---------------------------------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX (magic 0 0 0x08 ndim, big-endian sizes), gzipped if *.gz."""
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) \
        + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def write_mnist(folder: Path, name: str = "mnist", gz: bool = False, subfolder: str = "",
                num_train: int = 7, num_test: int = 3) -> Written:
    """``<name>/[subfolder/]{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``."""
    root = folder / name / subfolder
    rng = np.random.default_rng(28)
    suffix = ".gz" if gz else ""
    out = {}
    for prefix, count in (("train", num_train), ("t10k", num_test)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        out[prefix] = labels.astype(np.int64), images[:, None]
    names = [str(d) for d in range(10)] if name == "mnist" else [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
        "Ankle boot"]
    return Written(root, names, out["train"][0], out["t10k"][0], out["train"][1], out["t10k"][1])


# ---------------------------------------------------------------------------------------------
# Image-file layouts
# ---------------------------------------------------------------------------------------------

def write_tiny_imagenet(folder: Path, official: bool = True, nested: bool = True,
                        num_classes: int = 3, per_class: int = 4, val_per_class: int = 2) -> Written:
    """Tiny ImageNet, 64x64 JPEGs, in the official archive layout or as class folders.

    The last training image of class 0 is grayscale, as some real ones are.
    """
    root = folder / "tiny_imagenet" / ("tiny-imagenet-200" if nested else "")
    wnids = [f"n0{i:07d}" for i in (7, 3, 5, 9)[:num_classes]]  # unsorted, as in wnids.txt
    class_names = sorted(wnids)
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    for label, wnid in enumerate(class_names):
        image_dir = root / "train" / wnid / ("images" if official else "")
        for i in range(per_class):
            mode = "L" if label == 0 and i == per_class - 1 else "RGB"
            write_image(image_dir / f"{wnid}_{i}.JPEG", label, (64, 64), mode)
        if official:
            (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    val_labels = np.tile(np.arange(num_classes), val_per_class)  # interleaved, as in the archive
    lines = []
    for i, label in enumerate(val_labels):
        file = f"val_{i}.JPEG"
        if official:
            write_image(root / "val" / "images" / file, int(label), (64, 64))
            lines.append(f"{file}\t{class_names[label]}\t0\t0\t63\t63\n")
        else:
            write_image(root / "val" / class_names[label] / file, int(label), (64, 64))
    if official:
        (root / "val" / "val_annotations.txt").write_text("".join(lines))
    else:
        val_labels = np.sort(val_labels, kind="stable")  # class folders list class-major
    return Written(root, class_names, _labels(num_classes, per_class), val_labels)


def write_cub(folder: Path, num_classes: int = 3, per_class: int = 4, nested: bool = True) -> Written:
    """CUB-200-2011's official text files; every other image of each class is a test image."""
    root = folder / "cub_200_2011" / ("CUB_200_2011" if nested else "")
    class_names = [f"{i + 1:03d}.Bird_{i}" for i in range(num_classes)]
    root.mkdir(parents=True)
    images, labels, split = [], [], []
    samples = ((c, i) for c in range(num_classes) for i in range(per_class))
    for image_id, (label, i) in enumerate(samples, start=1):
        relpath = f"{class_names[label]}/Bird_{label}_{i:04d}.jpg"
        write_image(root / "images" / relpath, label)
        images.append(f"{image_id} {relpath}\n")
        labels.append(f"{image_id} {label + 1}\n")
        split.append(f"{image_id} {int(i % 2 == 0)}\n")
    for name, lines in (("images.txt", images), ("image_class_labels.txt", labels),
                        ("train_test_split.txt", split),
                        ("classes.txt", [f"{i + 1} {n}\n" for i, n in enumerate(class_names)])):
        (root / name).write_text("".join(lines))
    all_labels = _labels(num_classes, per_class)
    is_train = np.tile(np.arange(per_class) % 2 == 0, num_classes)
    return Written(root, class_names, all_labels[is_train], all_labels[~is_train])


def write_caltech256(folder: Path, per_class: tuple[int, ...] = (5, 2, 1, 10)) -> Written:
    """``caltech256/256_ObjectCategories/NNN.name/*.jpg`` plus a ``257.clutter`` to be ignored.

    ``train_labels`` holds all labels (the split is the reader's, drawn from its seed) and
    ``test_labels`` is empty.
    """
    root = folder / "caltech256" / "256_ObjectCategories"
    class_names = [f"{i + 1:03d}.object_{i}" for i in range(len(per_class))]
    for label, (name, count) in enumerate(zip(class_names, per_class)):
        for i in range(count):
            write_image(root / name / f"{label + 1:03d}_{i:04d}.jpg", label)
    write_image(root / "257.clutter" / "257_0001.jpg", 0)
    (root / class_names[0] / "notes.txt").write_text("not an image")
    labels = np.repeat(np.arange(len(per_class), dtype=np.int64), per_class)
    return Written(root, class_names, labels, np.empty(0, dtype=np.int64))


def write_class_folders(folder: Path, name: str, test_dir: str = "val", num_classes: int = 3,
                        per_class: int = 4, test_per_class: int = 2) -> Written:
    """``<name>/{train,<test_dir>}/<class>/*.jpg``: AUM's ImageFolder trees."""
    root = folder / name
    class_names = [f"class_{c}" for c in "bca"[:num_classes]]
    class_names.sort()
    for split, count in (("train", per_class), (test_dir, test_per_class)):
        for label, class_name in enumerate(class_names):
            for i in range(count):
                write_image(root / split / class_name / f"img_{i:03d}.jpg", label)
    return Written(root, class_names, _labels(num_classes, per_class),
                   _labels(num_classes, test_per_class))


def write_csv_list(folder: Path, name: str = "list.csv", labels_as: str = "names",
                   with_split: bool = True, per_class: int = 10, num_classes: int = 3) -> Written:
    """A user's ``path,label[,split]`` CSV in `folder`, images in ``folder/images/``.

    `labels_as` is "names" (class names, sorted by the reader) or "ints" (class indices). With a
    split column the last two rows of each class are test rows (one says "val").
    """
    names = ["zebra", "apple", "mango"][:num_classes]
    class_names = sorted(names) if labels_as == "names" else [str(i) for i in range(num_classes)]
    rows, is_test = [], []
    for label in range(num_classes):
        for i in range(per_class):
            relpath = f"images/{label}_{i:03d}.png"
            write_image(folder / relpath, label)
            split = ("val" if i == per_class - 1 else "test") if i >= per_class - 2 else "train"
            shown = class_names[label] if labels_as == "names" else str(label)
            rows.append(f"{relpath},{shown}" + (f",{split}" if with_split else ""))
            is_test.append(split != "train")
    header = "path,label" + (",split" if with_split else "")
    (folder / name).write_text("\n".join([header, *rows]) + "\n")
    labels, mask = _labels(num_classes, per_class), np.array(is_test)
    if not with_split:
        return Written(folder, class_names, labels, np.empty(0, dtype=np.int64))
    return Written(folder, class_names, labels[~mask], labels[mask])
