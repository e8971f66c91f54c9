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
from mislabel.scoring.cleaning import DEFAULT_ACTION, suggested_labels
from mislabel.scoring.count import NoisyCount

__all__ = ["CLEANED_FILE", "RELABEL_FILE", "advice", "cleaned_table", "relabel_table", "action_writes"]

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


def advice(count: NoisyCount, num_samples: int, held_out: bool) -> str:
    """The report's "what to do": how many labels look wrong and how sure that is, what the default
    action (``mislabel.scoring.cleaning.DEFAULT_ACTION``) is, and what the benchmark says it is worth."""
    share = count.estimate / max(num_samples, 1)
    action = {"remove": f"train on {CLEANED_FILE} (the flagged images left out)",
              "relabel": f"fix the labels {RELABEL_FILE} suggests and train on them",
              "hybrid": f"fix the labels of {RELABEL_FILE} whose suggestion the model preferred, leave out the rest",
              "downweight": "keep the flagged images with a smaller loss weight"}[DEFAULT_ACTION]
    check = ("compare the held-out accuracy of a run on it with this run's before you adopt it" if held_out else
             "keep a held-out split of images you trust to check that the cleaned data trains a better model")
    return (f"About {count.estimate:,} of the {num_samples:,} labels ({share:.0%}) look wrong: {count.describe()}. "
            f"Recommended: {action}, then {check}. On the benchmark grid (BENCHMARKS.md, bench/cleaning.py) "
            "removing the estimated count recovered most of the accuracy the wrong labels cost where the network "
            "fits them (digits); where a network is barely hurt by the noise (retraining on the true labels gains "
            "under a point), removing these is unlikely to change your accuracy much.")
