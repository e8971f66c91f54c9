"""A fixed subset of Fashion-MNIST's training images, written as IDX files the Runner reads as
``fashion_mnist``: CPU benchmarks train on a few thousand images instead of 60,000, and every
benchmark that uses the same count gets the same images."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def subset_folder(work: Path, classes: tuple[int, ...] | None = None, count: int | None = None) -> Path:
    """The datadir of a subset: ``work/data`` for all classes, ``work/data_classes1-3-5`` for a class
    subset; ``count`` names a size other than the benchmark's usual one (``work/data_first1000``)."""
    name = "data" if classes is None else "data_classes" + "-".join(map(str, classes))
    return work / (name if count is None else f"{name}_first{count}")


def prepare_fashion_subset(work: Path, count: int, classes: tuple[int, ...] | None = None,
                           named_count: bool = False) -> None:
    """The first ``count`` images of a fixed permutation (numpy default_rng(0)) of the 60,000
    training images, and the full 10,000-image test set; from the system copy the formats module finds.
    With ``classes``, only those classes' images of that subset (and of the test set), relabelled
    0..len(classes)-1 in the given order, under ``subset_folder(work, classes)``; ``named_count`` puts
    the subset under a folder named by its size."""
    from mislabel.data.formats import FASHION_MNIST_SYSTEM_DIR, read_idx
    from mislabel.core.user_input import UserError
    from mislabel.core.files import atomic_write

    folder = subset_folder(work, classes, count if named_count else None) / "fashion_mnist"
    if (folder / "t10k-labels-idx1-ubyte").is_file():
        return
    source = FASHION_MNIST_SYSTEM_DIR
    if not (source / "train-images-idx3-ubyte.gz").is_file():
        raise UserError(f"Fashion-MNIST is not at {source}; install it with `apt-get install dataset-fashion-mnist`")
    for split, keep in (("train", count), ("t10k", None)):
        images = read_idx(source / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(source / f"{split}-labels-idx1-ubyte.gz")
        rows = np.sort(np.random.default_rng(0).permutation(len(labels))[:keep]) if keep else np.arange(len(labels))
        if classes is not None:
            rows = rows[np.isin(labels[rows], classes)]
            relabel = np.full(256, 255, dtype=labels.dtype)
            relabel[list(classes)] = np.arange(len(classes))
            labels = relabel[labels]
        for kind, array in (("images-idx3", images[rows]), ("labels-idx1", labels[rows])):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            payload = header + np.ascontiguousarray(array).tobytes()
            atomic_write(folder / f"{split}-{kind}-ubyte", lambda tmp, data=payload: Path(tmp).write_bytes(data))
