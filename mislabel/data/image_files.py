"""Image-file datasets: find the files of each on-disk layout, label them and split them.

The readers here return a :class:`FileSplits` (absolute paths, int64 labels, class names) and never
open an image; ``mislabel.data.decode`` reads the pixels.

Layouts, relative to ``<datadir>/<name>/``:

* **class folders** (any unknown name, and ``webvision50`` / ``clothing100k``):
  ``train/<class>/**/<image>`` plus ``test/<class>/...``, or ``val/<class>/...`` when there is no
  ``test/``. This is what AUM's paper-replication runner (Pleiss et al. 2020) reads for its
  WebVision50 and Clothing100K subsets, and this paper uses AUM's subsets unchanged: AUM's
  ``large_dataset_*.sh`` passes ``--data <datadir>/<dataset>``, and its runner builds torchvision
  ``ImageFolder(<data>/train)`` for training and takes ``ImageFolder(<data>/test)`` as the test set
  when ``test/`` exists (``val/`` is then its validation set, which we do not use) and
  ``ImageFolder(<data>/val)`` otherwise. We follow the same rule, with ImageFolder's conventions:
  class index = position among the sorted ``train/`` folder names, files found recursively, the
  extensions in ``IMAGE_EXTENSIONS`` (case-insensitive). One deliberate difference: test classes
  are looked up in the *training* class list (ImageFolder would re-number them), so a test folder
  naming an unknown class is an error instead of silently shifted labels. Folders whose name
  starts with "." are skipped.
* **tiny_imagenet** (``<root>`` or ``<root>/tiny-imagenet-200/``): the official archive
  (``wnids.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` labelled by the
  tab-separated ``val/val_annotations.txt``), or the re-organised ``train/<wnid>/*.JPEG`` +
  ``val/<wnid>/*.JPEG``. Classes are the sorted wnids either way, so both give the same labels.
* **cub_200_2011** (``<root>`` or ``<root>/CUB_200_2011/``): the official archive: ``images.txt``
  (``id relpath``), ``image_class_labels.txt`` (``id label``, 1-based), ``train_test_split.txt``
  (``id is_train``), ``classes.txt`` (``id name``), ``images/``. Samples are ordered by id.
* **caltech256**: ``256_ObjectCategories/NNN.name/*.jpg``. ``257.clutter`` is excluded: it is a
  background class, and the paper counts 256 classes. There is no official split, so each class
  holds out ``CALTECH_TEST_FRACTION`` (20%, rounded, at least one image when the class has two or
  more) drawn from ``seed``: the same seed always gives the same split.
* **CSV lists** (any ``*.csv``): header ``path,label`` and optional ``split`` (``train``, ``test``;
  ``val`` counts as test). Relative paths resolve against the CSV's folder; a path leaving that
  folder is refused unless ``allow_outside``. Labels that are all non-negative integers are class
  indices (class names "0".."max"); otherwise they are class names, indexed in sorted order.
  Without a split column a stratified ``CSV_TEST_FRACTION`` (10%) is held out, drawn from ``seed``.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mislabel.core.user_input import UserError

__all__ = [
    "quote_cell",
    "unquote_cell",
    "IMAGE_EXTENSIONS",
    "CALTECH_TEST_FRACTION",
    "CSV_TEST_FRACTION",
    "FileSplits",
    "read_class_folders",
    "read_class_tree",
    "read_tiny_imagenet",
    "read_cub",
    "read_caltech256",
    "read_csv_list",
    "stratified_holdout",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# images of other formats (animated, vector, camera formats): left out, as by ImageFolder, but named in a warning
UNREAD_IMAGE_EXTENSIONS = (".gif", ".heic", ".heif", ".avif", ".svg", ".jfif", ".jp2", ".ico", ".dng", ".raw")
CALTECH_TEST_FRACTION = 0.2  # no official split; 20% per class keeps >= 16 test images per class
CSV_TEST_FRACTION = 0.1      # a user's own list: keep most data for training, enough to evaluate
CALTECH_CLUTTER = "257.clutter"


@dataclass
class FileSplits:
    """A file-based dataset before any pixel is read: paths and labels of both splits."""

    train_files: list[str]
    train_labels: np.ndarray  # int64 [N]
    test_files: list[str]
    test_labels: np.ndarray  # int64 [M]
    class_names: list[str]


# ---------------------------------------------------------------------------------------------
# Class-folder trees (ImageFolder conventions)
# ---------------------------------------------------------------------------------------------

def _images_below(folder: Path, within: Path, skipped: list[str], unread: list[str]) -> list[str]:
    """Every image file below `folder`, walked in sorted order so listings match on any filesystem.

    Directory links are followed, but each real directory only once, and never one that is `folder`
    or above it (a loop: ``ln -s .. loop`` would list the whole tree again, ~40 levels deep) or
    another part of `within` (those images belong to another class). Such directories go to `skipped`,
    images in a format not read (``UNREAD_IMAGE_EXTENSIONS``) to `unread`.
    """
    top, inside = Path(os.path.realpath(folder)), Path(os.path.realpath(within))
    seen: set[Path] = set()
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = Path(os.path.realpath(dirpath))
        above = inside.is_relative_to(real) or (real != top and top.is_relative_to(real))
        other_class = real.is_relative_to(inside) and not real.is_relative_to(top)
        if real in seen or above or other_class:
            skipped.append(dirpath)
            dirnames.clear()
            continue
        seen.add(real)
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)]
        unread += [os.path.join(dirpath, f) for f in filenames if f.lower().endswith(UNREAD_IMAGE_EXTENSIONS)]
    return found


def _class_folders(split_dir: Path, exclude: Sequence[str] = ()) -> list[str]:
    """Sorted names of the class folders in `split_dir` (hidden folders and `exclude` skipped)."""
    return sorted(entry.name for entry in os.scandir(split_dir)
                  if entry.is_dir() and not entry.name.startswith(".") and entry.name not in exclude)


def _list_split(split_dir: Path, class_names: Sequence[str],
                exclude: Sequence[str] = ()) -> tuple[list[str], np.ndarray]:
    """Files and labels of one `<split_dir>/<class>/...` split, labels indexing `class_names`."""
    present = _class_folders(split_dir, exclude)
    unknown = sorted(set(present) - set(class_names))
    if unknown:
        raise UserError(f"{split_dir} has class folders that are not training classes "
                        f"({', '.join(unknown[:3])}); rename or remove them")
    _refuse_linked_classes(split_dir, present)
    index = {name: i for i, name in enumerate(class_names)}
    skipped: list[str] = []
    unread: list[str] = []
    per_class = [_images_below(split_dir / name, split_dir, skipped, unread) for name in present]
    if unread:
        print(f"warning: left out {len(unread)} images in formats not read ({', '.join(sorted(unread)[:3])}"
              f"{' ...' if len(unread) > 3 else ''}); convert them to {', '.join(IMAGE_EXTENSIONS[:3])} to include "
              "them", file=sys.stderr)
    if skipped:
        print(f"warning: skipped {len(skipped)} linked folders that lead back into {split_dir} (a symlink loop, or "
              f"images listed under another class): {', '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''}",
              file=sys.stderr)
    labels = np.repeat(np.array([index[name] for name in present], dtype=np.int64),
                       [len(files) for files in per_class])
    return [f for files in per_class for f in files], labels


def _refuse_linked_classes(split_dir: Path, present: Sequence[str]) -> None:
    """A class folder that links to another folder of the split (``c -> a``) would list the same
    images under two labels; a link to a folder elsewhere (another disk) is followed as any folder."""
    inside = Path(os.path.realpath(split_dir))
    for name in present:
        real = Path(os.path.realpath(split_dir / name))
        if real != inside / name and real.is_relative_to(inside):
            raise UserError(f"class folder {split_dir / name} is a link to {real}, inside {split_dir}, so its images "
                            "would be listed under two classes; remove the link, or replace it with a copy")


def _require_every_class(split_dir: Path, labels: np.ndarray, class_names: Sequence[str]) -> None:
    """An empty training class is nearly always a failed copy, and no sample could teach it."""
    empty = np.flatnonzero(np.bincount(labels, minlength=len(class_names)) == 0)
    if len(empty):
        raise UserError(f"{split_dir / class_names[empty[0]]} holds no images "
                        f"({len(empty)} empty classes); add images or remove the class")


def read_class_tree(root: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """Files, labels and class names of a bare ``<root>/<class>/**/<image>`` tree with no split,
    the way most people keep a labelled folder; the same conventions as ``read_class_folders``."""
    class_names = _class_folders(root)
    if len(class_names) < 2:
        raise UserError(f"{root} has {len(class_names)} class folders; mislabel detection needs at least 2 "
                        f"(<class>/<image>)")
    files, labels = _list_split(root, class_names)
    _require_every_class(root, labels, class_names)
    return files, labels, class_names


def read_class_folders(root: Path) -> FileSplits:
    """Read ``train/<class>/`` and ``test/<class>/`` (else ``val/<class>/``) as AUM does."""
    train_dir = root / "train"
    test_dir = root / "test" if (root / "test").is_dir() else root / "val"
    if not train_dir.is_dir() or not test_dir.is_dir():
        raise UserError(f"{root} needs train/<class>/<images> and val/<class>/ (or test/<class>/) "
                        f"folders; arrange the images that way")
    class_names = _class_folders(train_dir)
    if len(class_names) < 2:
        raise UserError(f"{train_dir} has {len(class_names)} class folders; need at least 2")
    train_files, train_labels = _list_split(train_dir, class_names)
    _require_every_class(train_dir, train_labels, class_names)
    test_files, test_labels = _list_split(test_dir, class_names)
    if not test_files:
        raise UserError(f"{test_dir} holds no images; put the test images in <class>/ folders there")
    return FileSplits(train_files, train_labels, test_files, test_labels, class_names)


# ---------------------------------------------------------------------------------------------
# Text tables shipped with Tiny ImageNet and CUB
# ---------------------------------------------------------------------------------------------

def _read_table(path: Path, sep: str, columns: dict[str, type]) -> pd.DataFrame:
    """The first len(columns) columns of a header-less text table, typed; bad files -> UserError."""
    try:
        return pd.read_csv(path, sep=sep, header=None, names=list(columns), dtype=columns,
                           usecols=range(len(columns)), keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot read {path} as {len(columns)} {sep!r}-separated columns "
                        f"({reason}); re-extract it from the original archive") from err


def _require_files(paths: Sequence[str], listed_in: Path) -> None:
    """Fail before training, not hours into it, when a listed image is missing."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UserError(f"{len(missing)} images listed in {listed_in} are missing, e.g. {missing[0]}; "
                        f"re-extract the archive")


def read_tiny_imagenet(root: Path) -> FileSplits:
    """Read Tiny ImageNet in its official layout or re-organised into class folders."""
    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir() or not val_dir.is_dir():
        raise UserError(f"{root} needs train/<wnid>/ and val/ (official tiny-imagenet-200 archive, "
                        f"or val/<wnid>/ class folders); extract the archive there")
    wnids_file = root / "wnids.txt"
    class_names = (sorted(_read_table(wnids_file, "\t", {"wnid": str})["wnid"].str.strip())
                   if wnids_file.is_file() else _class_folders(train_dir))
    train_files, train_labels = _list_split(train_dir, class_names)
    _require_every_class(train_dir, train_labels, class_names)
    annotations = val_dir / "val_annotations.txt"
    if not annotations.is_file():
        test_files, test_labels = _list_split(val_dir, class_names)
        return FileSplits(train_files, train_labels, test_files, test_labels, class_names)
    table = _read_table(annotations, "\t", {"file": str, "wnid": str})
    codes = pd.Categorical(table["wnid"], categories=class_names).codes.astype(np.int64)
    if (codes < 0).any():
        unknown = table["wnid"].iloc[np.argmax(codes < 0)]
        raise UserError(f"{annotations} labels an image with {unknown}, which is not a training "
                        f"class; re-extract the archive")
    test_files = [os.path.join(val_dir, "images", f) for f in table["file"]]
    return FileSplits(train_files, train_labels, test_files, codes, class_names)


def read_cub(root: Path) -> FileSplits:
    """Read CUB-200-2011 from its official id-keyed text files, with its official split."""
    if (root / "CUB_200_2011").is_dir():
        root = root / "CUB_200_2011"
    needed = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
    absent = [n for n in needed if not (root / n).is_file()]
    if absent:
        raise UserError(f"{root} lacks {', '.join(absent)}; extract CUB_200_2011.tgz there "
                        f"(or use train/<class>/ + test/<class>/ folders)")
    def by_id(file: str, column: str, kind: type) -> pd.DataFrame:
        table = _read_table(root / file, " ", {"id": np.int64, column: kind})
        return table.sort_values("id", ignore_index=True)

    images = by_id("images.txt", "path", str)
    labelled = by_id("image_class_labels.txt", "label", np.int64)
    split = by_id("train_test_split.txt", "is_train", np.int64)
    ids = images["id"]
    if ids.duplicated().any() or not (ids.equals(labelled["id"]) and ids.equals(split["id"])):
        raise UserError(f"the image ids in {root}/images.txt, image_class_labels.txt and "
                        f"train_test_split.txt disagree; re-extract the archive")
    classes = _read_table(root / "classes.txt", " ", {"id": np.int64, "name": str}).sort_values("id")
    if not np.array_equal(classes["id"], np.arange(1, len(classes) + 1)):
        raise UserError(f"{root / 'classes.txt'} must number its classes 1..K; re-extract it")
    labels = labelled["label"].to_numpy() - 1
    if labels.min() < 0 or labels.max() >= len(classes):
        raise UserError(f"{root / 'image_class_labels.txt'} has labels outside 1..{len(classes)}")
    if not split["is_train"].isin([0, 1]).all():
        raise UserError(f"{root / 'train_test_split.txt'} must mark each image 1 (train) or 0 (test)")
    files = [os.path.join(root, "images", p) for p in images["path"]]
    _require_files(files, root / "images.txt")
    return _split_by_mask(files, labels, split["is_train"].to_numpy() == 0, classes["name"].tolist())


# ---------------------------------------------------------------------------------------------
# Seeded splits: Caltech-256 and CSV lists without a split column
# ---------------------------------------------------------------------------------------------

def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean test mask holding out round(fraction * n) random samples of every class.

    A class with n >= 2 samples gives at least one to test and keeps at least one for training;
    a class with one sample keeps it for training. The draw depends only on `labels` and `seed`.
    """
    counts = np.bincount(labels)
    n_test = np.clip(np.floor(counts * fraction + 0.5), 1, np.maximum(counts - 1, 1))
    n_test[counts < 2] = 0
    order = np.lexsort((np.random.default_rng(seed).random(len(labels)), labels))
    first_of_class = np.cumsum(counts) - counts
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - first_of_class[labels[order]]
    return rank < n_test[labels]


def _split_by_mask(files: Sequence[str], labels: np.ndarray, is_test: np.ndarray,
                   class_names: list[str]) -> FileSplits:
    """Cut one labelled file list into train and test, keeping the original order within each."""
    paths = np.array(files, dtype=object)
    return FileSplits(paths[~is_test].tolist(), labels[~is_test],
                      paths[is_test].tolist(), labels[is_test], class_names)


def read_caltech256(root: Path, seed: int) -> FileSplits:
    """Read Caltech-256 without the clutter class and hold out a seeded 20% of every class."""
    categories = root / "256_ObjectCategories"
    if not categories.is_dir():
        raise UserError(f"{categories} not found; extract 256_ObjectCategories.tar into {root} "
                        f"(or use train/<class>/ + test/<class>/ folders)")
    class_names = _class_folders(categories, exclude=(CALTECH_CLUTTER,))
    files, labels = _list_split(categories, class_names, exclude=(CALTECH_CLUTTER,))
    _require_every_class(categories, labels, class_names)
    return _split_by_mask(files, labels, stratified_holdout(labels, CALTECH_TEST_FRACTION, seed),
                          class_names)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet reads such a cell as a formula


def quote_cell(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``@SUM(...)``) gets a
    leading ``'``, the usual neutraliser; numbers (``-1``) are left as they are. ``unquote_cell``
    undoes it, so the CSVs we write read back to the same values."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def unquote_cell(value: str) -> str:
    """``quote_cell``'s inverse, for the CSV lists we read (cleaned.csv read back by find_issues)."""
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_STARTS) else value


def read_csv_list(csv_path: Path, seed: int, allow_outside: bool = False) -> FileSplits:
    """Read a user's ``path,label[,split]`` list; see the module docstring for the rules."""
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False).map(unquote_cell)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"cannot read {csv_path} as CSV ({str(err).splitlines()[0]}); "
                        f"write it with a header line path,label[,split]") from err
    table.columns = table.columns.str.strip().str.lower()
    absent = [c for c in ("path", "label") if c not in table.columns]
    if absent:
        raise UserError(f"{csv_path} lacks column(s) {', '.join(absent)}; its header must be "
                        f"path,label[,split]")
    if table.empty:
        raise UserError(f"{csv_path} lists no images; add rows path,label[,split]")
    blank = (table[["path", "label"]].apply(lambda column: column.str.strip()) == "").any(axis=1)
    if blank.any():
        raise UserError(f"{csv_path} line {np.argmax(blank) + 2} has an empty path or label; "
                        f"fill it in")
    base = os.path.abspath(csv_path.parent)
    files = [os.path.normpath(os.path.join(base, p.strip())) for p in table["path"]]
    if not allow_outside:
        # resolved first: a symlink inside the folder may point anywhere
        inside = os.path.realpath(base).rstrip(os.sep) + os.sep
        outside = [f for f in files if not os.path.realpath(f).startswith(inside)]
        if outside:
            raise UserError(f"{csv_path} lists {len(outside)} paths outside {base} (symlinks resolved), e.g. "
                            f"{outside[0]}; move the images under the CSV's folder or pass --allow_outside "
                            f"(allow_outside=True in Python)")
    _require_files(files, csv_path)
    labels, class_names = _csv_labels(table["label"].str.strip(), csv_path)
    _check_duplicates(files, labels, csv_path)
    if "split" in table.columns:
        split = table["split"].str.strip().str.lower()
        if not split.isin(["train", "test", "val"]).all():
            raise UserError(f"{csv_path}: split must be train, test or val, not "
                            f"{split[~split.isin(['train', 'test', 'val'])].iloc[0]!r}")
        is_test = split.isin(["test", "val"]).to_numpy()
    else:
        is_test = stratified_holdout(labels, CSV_TEST_FRACTION, seed)
    if is_test.all() or not is_test.any():
        raise UserError(f"{csv_path} yields an empty {'train' if is_test.all() else 'test'} split; "
                        f"mark some rows train and some test")
    return _split_by_mask(files, labels, is_test, class_names)


def _check_duplicates(files: list[str], labels: np.ndarray, csv_path: Path) -> None:
    """An image listed under two labels is a contradiction: refused, naming the first two lines
    that disagree. Repeated identical rows are kept (each copy is a sample) but said out loud."""
    paths = pd.Series(files)
    repeated = paths.duplicated(keep=False).to_numpy()
    if not repeated.any():
        return
    rows = np.flatnonzero(repeated)
    per_path = pd.Series(labels[rows]).groupby(paths.iloc[rows].to_numpy()).transform("nunique").to_numpy()
    if (per_path > 1).any():
        first = rows[int(np.argmax(per_path > 1))]
        same_path = np.flatnonzero((paths == files[first]).to_numpy())
        other = same_path[labels[same_path] != labels[first]][0]
        raise UserError(f"{csv_path} lists {files[first]} under two labels (lines {first + 2} and {other + 2}); "
                        "keep one row per image")
    later = np.flatnonzero(paths.duplicated().to_numpy())
    print(f"warning: {csv_path} repeats {len(later)} earlier row(s) as they are (first at line {later[0] + 2}: "
          f"{files[later[0]]}); each copy is trained on and scored as a sample of its own", file=sys.stderr)


def _csv_labels(raw: pd.Series, csv_path: Path) -> tuple[np.ndarray, list[str]]:
    """Integer labels are class indices as given; any other labels are names, indexed sorted."""
    if raw.str.fullmatch(r"\d+").all():
        labels = raw.astype(np.int64).to_numpy()
        class_names = [str(i) for i in range(labels.max() + 1)]
    else:
        class_names = sorted(raw.unique())
        labels = pd.Categorical(raw, categories=class_names).codes.astype(np.int64)
    if len(np.unique(labels)) < 2:
        raise UserError(f"{csv_path} has a single class ({class_names[labels[0]]}); "
                        f"mislabel detection needs at least 2")
    return labels, class_names
