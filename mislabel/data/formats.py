"""Dataset format readers: turn ``(name, datadir, seed)`` into one :class:`RawDataset`.

The pipeline calls only :func:`read_dataset`, so it never needs to know whether a dataset arrived
as CIFAR pickles, IDX files, an image-folder tree or a CSV list. Small datasets come back decoded
as uint8 tensors, so training can keep them on the device and augment whole batches; large ones
come back as absolute paths for :class:`ImageFileDataset`. Nothing is ever downloaded: a missing,
damaged or oddly shaped file is a one-line :class:`UserError` naming the file and the fix.

Layouts under ``<datadir>`` are listed in ``LAYOUTS``; the image-file ones (Tiny ImageNet, CUB,
Caltech-256, WebVision50, Clothing100K, class folders, CSV) are detailed in
:mod:`mislabel.data.image_files`. ``seed`` only matters where there is no official split: Caltech-256
and CSV lists without a ``split`` column.
"""
from __future__ import annotations

import builtins
import gzip
import os
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

import numpy as np
import torch

from mislabel.core.run_options import LARGE_DATASETS
from mislabel.core.user_input import UserError, require_folder

# The image-file readers and decoders load pandas, PIL and torchvision (which brings torch._dynamo):
# seconds and ~250 MiB that CIFAR pickles and IDX files never need, so they are imported where used.
if TYPE_CHECKING:
    from mislabel.data.decode import ImageFileDataset
    from mislabel.data.image_files import FileSplits

__all__ = ["RawDataset", "read_dataset", "KNOWN_DATASETS", "LARGE_DATASETS", "LAYOUTS",
           "ImageFileDataset"]

# ---------------------------------------------------------------------------------------------
# Contract
# ---------------------------------------------------------------------------------------------

KNOWN_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "tiny_imagenet",
                  "cub_200_2011", "caltech256") + LARGE_DATASETS

_IDX_LAYOUT = "{name}/[raw/]{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]"
_FOLDER_LAYOUT = "{name}/train/<class>/<images> + {name}/val/<class>/ (or test/<class>/)"
LAYOUTS = {
    "cifar10": "cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
    "cifar100": "cifar100/cifar-100-python/{train,test,meta}",
    "mnist": _IDX_LAYOUT.format(name="mnist"),
    "fashion_mnist": _IDX_LAYOUT.format(name="fashion_mnist"),
    "tiny_imagenet": "tiny_imagenet/[tiny-imagenet-200/]{wnids.txt,train/<wnid>/images/,"
                     "val/images/,val/val_annotations.txt} or train/<wnid>/ + val/<wnid>/",
    "cub_200_2011": "cub_200_2011/[CUB_200_2011/]{images.txt,image_class_labels.txt,"
                    "train_test_split.txt,classes.txt,images/}",
    "caltech256": "caltech256/256_ObjectCategories/NNN.name/*.jpg",
    "webvision50": _FOLDER_LAYOUT.format(name="webvision50"),
    "clothing100k": _FOLDER_LAYOUT.format(name="clothing100k"),
}
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian dataset-fashion-mnist
TINY_IMAGENET_SIZE = (64, 64)


@dataclass
class RawDataset:
    """Both splits of one dataset: int64 labels plus either uint8 [N, C, H, W] pixels or paths."""

    train_labels: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]
    train_images: torch.Tensor | None = None
    test_images: torch.Tensor | None = None
    train_files: list[str] | None = None
    test_files: list[str] | None = None

    def __post_init__(self) -> None:
        """Hold every reader, present and future, to the same contract in one place."""
        for split in ("train", "test"):
            labels, images, files = (getattr(self, f"{split}_{part}")
                                     for part in ("labels", "images", "files"))
            if labels.dtype != torch.int64 or labels.ndim != 1:
                raise ValueError(f"{split}_labels must be int64 [N], got {labels.dtype} "
                                 f"{tuple(labels.shape)}")
            if (images is None) == (files is None):
                raise ValueError(f"give exactly one of {split}_images and {split}_files")
            if images is not None and (images.dtype != torch.uint8 or images.ndim != 4):
                raise ValueError(f"{split}_images must be uint8 [N, C, H, W], got {images.dtype} "
                                 f"{tuple(images.shape)}")
            if len(images if images is not None else files) != len(labels):
                raise ValueError(f"{split}: {len(labels)} labels for a different number of samples")
            if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(f"{split}_labels fall outside 0..{self.num_classes - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _from_files(splits: FileSplits) -> RawDataset:
    """A file-based dataset as the pipeline sees it: paths and tensor labels."""
    return RawDataset(torch.from_numpy(splits.train_labels), torch.from_numpy(splits.test_labels),
                      splits.class_names, train_files=splits.train_files, test_files=splits.test_files)


def __getattr__(name: str) -> object:
    """``ImageFileDataset`` stays importable from here, loaded (with torchvision) on first use."""
    if name == "ImageFileDataset":
        from mislabel.data.decode import ImageFileDataset

        return ImageFileDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _decoded(splits: FileSplits, size: tuple[int, int]) -> RawDataset:
    """A small image-file dataset decoded into memory once, so epochs never touch the disk."""
    from mislabel.data.decode import decode_images

    return RawDataset(torch.from_numpy(splits.train_labels), torch.from_numpy(splits.test_labels),
                      splits.class_names,
                      train_images=torch.from_numpy(decode_images(splits.train_files, size)),
                      test_images=torch.from_numpy(decode_images(splits.test_files, size)))


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------

def read_dataset(name: str, datadir: str | os.PathLike, seed: int, *,
                 allow_outside: bool = False) -> RawDataset:
    """Read dataset `name` from `datadir` (layouts in ``LAYOUTS``; ``*.csv`` names a CSV list).

    :param seed: draws the train/test split where the dataset has none (Caltech-256, CSV lists)
    :param allow_outside: let a CSV list point at images outside the CSV's folder
    """
    if name.endswith(".csv"):
        from mislabel.data.image_files import read_csv_list

        return _from_files(read_csv_list(_csv_path(name, datadir), seed, allow_outside))
    datadir = Path(os.path.abspath(datadir))
    layout = LAYOUTS.get(name, _FOLDER_LAYOUT.format(name=name))
    require_folder(datadir, "datadir", f"pass the folder holding {layout}")
    root = datadir / name
    if name in ("mnist", "fashion_mnist"):
        return _read_mnist(name, root)
    if not root.is_dir():
        if name not in KNOWN_DATASETS:
            raise UserError(f"unknown dataset {name!r} and no folder {root}; use one of "
                            f"{', '.join(KNOWN_DATASETS)}, a *.csv list, or lay out {datadir}/{layout}")
        raise UserError(f"dataset folder {root} not found; expected {datadir}/{layout}")
    if name in _CIFAR:
        return _read_cifar(root, _CIFAR[name])
    from mislabel.data import image_files

    if name == "tiny_imagenet":
        return _decoded(image_files.read_tiny_imagenet(root), TINY_IMAGENET_SIZE)
    # CUB and Caltech-256 re-organised into train/ + val|test/ class folders read like any other.
    if name == "cub_200_2011" and not (root / "train").is_dir():
        return _from_files(image_files.read_cub(root))
    if name == "caltech256" and not (root / "train").is_dir():
        return _from_files(image_files.read_caltech256(root, seed))
    return _from_files(image_files.read_class_folders(root))


def _csv_path(name: str, datadir: str | os.PathLike) -> Path:
    """`<datadir>/<name>` if it exists, else `name` itself as a path."""
    for candidate in (Path(datadir) / name, Path(name)):
        if candidate.is_file():
            return Path(os.path.abspath(candidate))
    raise UserError(f"CSV list {name} not found in {datadir} nor as a path; check the name")


# ---------------------------------------------------------------------------------------------
# CIFAR pickles
# ---------------------------------------------------------------------------------------------

class _CifarSpec(NamedTuple):
    """Where one CIFAR variant keeps its batches and under which (bytes) keys."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    labels_key: bytes
    names_key: bytes


_CIFAR = {
    "cifar10": _CifarSpec("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                          ("test_batch",), "batches.meta", b"labels", b"label_names"),
    "cifar100": _CifarSpec("cifar-100-python", ("train",), ("test",), "meta",
                           b"fine_labels", b"fine_label_names"),
}
_CIFAR_ROW = 3 * 32 * 32  # one image per row: 1024 red, 1024 green, 1024 blue, row-major

# numpy's array-rebuilding function has moved between private modules (numpy.core ->
# numpy._core); CIFAR files name the old one, so ask numpy for it rather than import either.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{("builtins", kind): getattr(builtins, kind)
       for kind in ("list", "dict", "tuple", "set", "frozenset", "bytearray")},
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild containers and numpy arrays, and nothing else.

    Loading a pickle may call any importable function (``os.system`` included); CIFAR batches only
    need numpy's array constructor, so every other global is refused before it is imported.
    ``encoding="bytes"`` because the files come from Python 2: keys and names arrive as bytes.
    """

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> object:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise UserError(f"{self._path} asks to load {module}.{name}, which no CIFAR file needs; "
                            f"refusing it: replace the file with the original download") from None


def _load_pickle(path: Path) -> object:
    """Unpickle `path` with :class:`_ArrayOnlyUnpickler`; any failure names the file."""
    if not path.is_file():
        raise UserError(f"missing {path}; extract the original CIFAR python archive there")
    try:
        with open(path, "rb") as file:
            return _ArrayOnlyUnpickler(file, path).load()
    except UserError:
        raise
    except Exception as err:  # a broken pickle can fail in many ways; all mean "bad file"
        raise UserError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}); "
                        f"re-download it") from err


def _read_cifar_batch(path: Path, spec: _CifarSpec, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels uint8 [n, 3, 32, 32] and labels int64 [n] of one CIFAR batch file."""
    batch = _load_pickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or spec.labels_key not in batch:
        raise UserError(f"{path} is not a CIFAR batch (no b'data' / {spec.labels_key!r} entries); "
                        f"re-download it")
    data, labels = batch[b"data"], np.asarray(batch[spec.labels_key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != _CIFAR_ROW:
        shape = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{path}: data is {shape}, expected uint8 [N, {_CIFAR_ROW}]; re-download it")
    if labels.shape != (len(data),) or (len(labels) and labels.dtype.kind not in "iu"):
        raise UserError(f"{path}: {labels.size} labels for {len(data)} images; re-download it")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{path}: labels outside 0..{num_classes - 1}; re-download it")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _read_cifar(root: Path, spec: _CifarSpec) -> RawDataset:
    """CIFAR-10 / CIFAR-100 (fine labels) from the official python-pickle archive."""
    folder = root / spec.folder
    meta_path = folder / spec.meta
    meta = _load_pickle(meta_path)
    names = meta.get(spec.names_key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise UserError(f"{meta_path} has no {spec.names_key!r} list of class names; re-download it")
    class_names = [n.decode() if isinstance(n, bytes) else n for n in names]

    def split(files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_read_cifar_batch(folder / f, spec, len(class_names)) for f in files]
        return (torch.from_numpy(np.concatenate([p[0] for p in parts])),
                torch.from_numpy(np.concatenate([p[1] for p in parts])))

    train_images, train_labels = split(spec.train)
    test_images, test_labels = split(spec.test)
    return RawDataset(train_labels, test_labels, class_names,
                      train_images=train_images, test_images=test_images)


# ---------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# ---------------------------------------------------------------------------------------------

# IDX type byte -> element type; multi-byte types are big-endian.
_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
              "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
_MNIST_CLASSES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
}
_TORCHVISION_FOLDER = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def _read_bytes(path: Path) -> bytearray:
    """The whole file, gunzipped when it ends in .gz; writable so arrays on it need no copy."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as file:
            return bytearray(file.read())
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"cannot read {path} ({err}); it is truncated or corrupt: "
                        f"re-download it") from err


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file: bytes 0 0 <type> <ndim>, ndim big-endian uint32 sizes, then the data."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _IDX_TYPES:
        raise UserError(f"{path} is not an IDX file (magic {bytes(raw[:4]).hex()}); re-download it")
    ndim, dtype = raw[3], _IDX_TYPES[raw[2]]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path} is truncated inside its header; re-download it")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise UserError(f"{path} holds {len(raw)} bytes but its header {shape} promises {expected}; "
                        f"it is truncated or corrupt: re-download it")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def _idx_folder(name: str, root: Path) -> Path:
    """The first candidate folder holding all four IDX files (each plain or .gz)."""
    candidates = [root, root / "raw", root / _TORCHVISION_FOLDER[name] / "raw"]
    if name == "fashion_mnist":
        candidates.append(FASHION_MNIST_SYSTEM_DIR)
    for folder in candidates:
        if all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in _IDX_FILES.values()):
            return folder
    raise UserError(f"no complete set of IDX files in {root} (also tried raw/, "
                    f"{_TORCHVISION_FOLDER[name]}/raw/); expected {root.parent}/{LAYOUTS[name]}")


def _read_mnist(name: str, root: Path) -> RawDataset:
    """MNIST / Fashion-MNIST from IDX files: uint8 [N, 1, 28, 28] images, labels 0..9."""
    folder = _idx_folder(name, root)
    paths = {key: folder / f if (folder / f).is_file() else folder / f"{f}.gz"
             for key, f in _IDX_FILES.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
            raise UserError(f"{paths[f'{split}_images']} holds {images.dtype} {images.shape}, "
                            f"expected uint8 [N, 28, 28]; re-download it")
        if labels.dtype != np.uint8 or labels.shape != images.shape[:1] \
                or (labels.size and labels.max() > 9):
            raise UserError(f"{paths[f'{split}_labels']} holds {labels.dtype} {labels.shape}, expected "
                            f"{len(images)} uint8 labels 0..9 to match the images; re-download it")
    return RawDataset(
        torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        torch.from_numpy(arrays["test_labels"].astype(np.int64)),
        list(_MNIST_CLASSES[name]),
        train_images=torch.from_numpy(arrays["train_images"][:, None]),
        test_images=torch.from_numpy(arrays["test_images"][:, None]),
    )
