"""What to do about the suspects: ``cleaned.csv`` (train without them) and ``relabel.csv`` (fix them).

* ``cleaned.csv``: the input list without the flagged and the unreadable images, as a CSV list
  (``path,label`` plus ``split`` when the input had a held-out split), with absolute paths so it
  works from anywhere: ``./run.sh find_issues cleaned.csv --allow_outside`` or any CSV reader.
  Labels are the class names.
* ``relabel.csv``: the flagged images, most suspicious first, with the label the model believed
  most besides the given one (``suggested_label``: highest mean probability over training among
  the other classes) and that mean probability; paths as in ``suspects.csv``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mislabel.data.user_data import Listing
from mislabel.core.dynamics import Dynamics
from mislabel.reports.suspects import spreadsheet_safe
from mislabel.scoring.cleaning import suggested_labels

__all__ = ["CLEANED_FILE", "RELABEL_FILE", "cleaned_table", "relabel_table", "action_writes"]

CLEANED_FILE = "cleaned.csv"
RELABEL_FILE = "relabel.csv"


def cleaned_table(listing: Listing, keep: tuple[np.ndarray, np.ndarray], flagged_files: set[str]) -> pd.DataFrame:
    """Every readable input image except the flagged ones; a split column only when the input had one."""
    names = np.asarray(listing.class_names, dtype=object)
    train = [(f, names[y], "train") for f, y, k in zip(listing.train_files, listing.train_labels, keep[0])
             if k and f not in flagged_files]
    if not listing.held_out:  # the test files are a sample of the training files: listed once
        return pd.DataFrame([row[:2] for row in train], columns=["path", "label"])
    test = [(f, names[y], "test") for f, y, k in zip(listing.test_files, listing.test_labels, keep[1]) if k]
    return pd.DataFrame(train + test, columns=["path", "label", "split"])


def relabel_table(dyn: Dynamics, class_names: list[str], suspects: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
    """The flagged rows of ``suspects`` (sorted; ``order`` maps its rows to the dynamics' rows), each
    with the most probable other class over training and its mean probability."""
    names = np.asarray(class_names, dtype=object)
    suggested, probability = suggested_labels(dyn)
    flagged = suspects["flagged"].to_numpy() == 1
    rows = order[flagged]
    chosen = suspects.loc[flagged, ["rank", "path", "given_label"]].reset_index(drop=True)
    return chosen.assign(suggested_label=names[suggested[rows]], probability=np.round(probability[rows], 6),
                         score=suspects.loc[flagged, "score"].to_numpy())


def action_writes(out: Path, cleaned: pd.DataFrame, relabel: pd.DataFrame) -> tuple[dict, dict[str, str]]:
    """The writers of both files (for one all-or-nothing write with the other outputs) and their
    one-line descriptions for the report's settings table."""
    writes = {out / CLEANED_FILE: lambda tmp: spreadsheet_safe(cleaned).to_csv(tmp, index=False),
              out / RELABEL_FILE: lambda tmp: spreadsheet_safe(relabel).to_csv(tmp, index=False, float_format="%.6f")}
    return writes, {CLEANED_FILE: f"{len(cleaned)} images without the flagged and unreadable ones (path,label"
                          f"{',split' if 'split' in cleaned else ''}, absolute paths): train on it, e.g. "
                          "find_issues cleaned.csv --allow_outside",
            RELABEL_FILE: f"{len(relabel)} flagged images with the most probable other label over training "
                          "(suggested_label) and its mean probability: check them and fix the labels"}
