"""What to do about the suspects: ``cleaned.csv`` (train without them), ``weights.csv`` (train with
them down-weighted) and ``relabel.csv`` (fix them); ``mislabel.scoring.cleaning`` names the actions.

* ``cleaned.csv``: the input list without the flagged and the unreadable images, as a CSV list
  (``path,label`` plus ``split`` when the input had a held-out split), with absolute paths so it
  works from anywhere: ``./run.sh find_issues cleaned.csv --allow_outside`` or any CSV reader.
  Labels are the class names.
* ``weights.csv``: the same list with every image kept and a ``weight`` column: 1, or for a flagged
  image the mean probability the model gave its label over training (the ``downweight`` action),
  for a training loop that scales each sample's loss.
* ``relabel.csv``: the flagged images, most suspicious first, with the label the model believed
  most besides the given one (``suggested_label``: highest mean probability over training among
  the other classes) and that mean probability; paths as in ``suspects.csv``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mislabel.data.user_data import Listing
from mislabel.reports.suspects import spreadsheet_safe
from mislabel.scoring.cleaning import RECOMMENDED_ACTION, RECOMMENDED_BECAUSE
from mislabel.scoring.count import NoisyCount
from mislabel.scoring.seeding import SeededCheck
from mislabel.scoring.summary import SampleSummary

__all__ = ["CLEANED_FILE", "RELABEL_FILE", "WEIGHTS_FILE", "advice", "cleaned_table", "relabel_table",
           "weights_table", "action_writes"]

CLEANED_FILE = "cleaned.csv"
RELABEL_FILE = "relabel.csv"
WEIGHTS_FILE = "weights.csv"


def weights_table(listing: Listing, keep: tuple[np.ndarray, np.ndarray], weights: dict[str, float]) -> pd.DataFrame:
    """Every readable input image with its loss weight (``weights`` by file, else 1); a split column
    only when the input had one."""
    names = np.asarray(listing.class_names, dtype=object)
    train = [(f, names[y], weights.get(f, 1.0), "train")
             for f, y, k in zip(listing.train_files, listing.train_labels, keep[0]) if k]
    if not listing.held_out:  # the test files are a sample of the training files: listed once
        return pd.DataFrame([row[:3] for row in train], columns=["path", "label", "weight"])
    test = [(f, names[y], 1.0, "test") for f, y, k in zip(listing.test_files, listing.test_labels, keep[1]) if k]
    return pd.DataFrame(train + test, columns=["path", "label", "weight", "split"])


def cleaned_table(weighted: pd.DataFrame, flagged_files: set[str]) -> pd.DataFrame:
    """``weights_table``'s list without the flagged images and without the weight column."""
    return weighted.loc[~weighted["path"].isin(flagged_files)].drop(columns="weight").reset_index(drop=True)


def relabel_table(summary: SampleSummary, class_names: list[str], suspects: pd.DataFrame, order: np.ndarray
                  ) -> pd.DataFrame:
    """The flagged rows of ``suspects`` (sorted; ``order`` maps its rows to the dynamics' rows), each
    with the most probable other class over training and its mean probability (``summary``'s)."""
    names = np.asarray(class_names, dtype=object)
    flagged = suspects["flagged"].to_numpy() == 1
    rows = order[flagged]
    chosen = suspects.loc[flagged, ["rank", "path", "given_label"]].reset_index(drop=True)
    return chosen.assign(suggested_label=names[summary.suggested[rows]],
                         probability=np.round(summary.suggested_probability[rows], 6),
                         score=suspects.loc[flagged, "score"].to_numpy())


def action_writes(out: Path, cleaned: pd.DataFrame, weighted: pd.DataFrame, relabel: pd.DataFrame
                  ) -> tuple[dict, dict[str, str]]:
    """The writers of the three files (for one all-or-nothing write with the other outputs) and their
    one-line descriptions for the report's settings table."""
    writes = {out / CLEANED_FILE: lambda tmp: spreadsheet_safe(cleaned).to_csv(tmp, index=False),
              out / WEIGHTS_FILE: lambda tmp: spreadsheet_safe(weighted).to_csv(tmp, index=False, float_format="%.6f"),
              out / RELABEL_FILE: lambda tmp: spreadsheet_safe(relabel).to_csv(tmp, index=False, float_format="%.6f")}
    return writes, {CLEANED_FILE: f"{len(cleaned)} images without the flagged and unreadable ones (path,label"
                          f"{',split' if 'split' in cleaned else ''}, absolute paths): train on it, e.g. "
                          "find_issues cleaned.csv --allow_outside" + _emptied_classes(cleaned, weighted),
            WEIGHTS_FILE: f"{len(weighted)} images, the flagged ones kept with a loss weight below 1 (their label's "
                          "mean probability over training): train with each sample's loss scaled by its weight",
            RELABEL_FILE: f"{len(relabel)} flagged images with the most probable other label over training "
                          "(suggested_label) and its mean probability: check them and fix the labels"}


def _emptied_classes(cleaned: pd.DataFrame, weighted: pd.DataFrame) -> str:
    """The warning for classes whose every training image is flagged: cleaned.csv lacks them, so a model
    trained on it cannot predict them (denoise refuses such a removal; here the other files remain)."""
    def training_classes(table: pd.DataFrame) -> set:
        return set(table["label"] if "split" not in table else table.loc[table["split"] == "train", "label"])

    emptied = sorted(map(str, training_classes(weighted) - training_classes(cleaned)))
    if not emptied:
        return ""
    return (f". Warning: it holds no training image of {', '.join(emptied)} (all flagged), so a model trained on it "
            f"cannot learn {'that class' if len(emptied) == 1 else 'those classes'}: use {WEIGHTS_FILE} or "
            f"{RELABEL_FILE} instead")


def advice(count: NoisyCount, num_samples: int, held_out: bool, seeded: SeededCheck | None = None) -> str:
    """The report's "what to do": how many labels look wrong and how sure that is (with the recall the
    run's seeded flips measured, when it has them), the action the benchmark supports
    (``mislabel.scoring.cleaning.RECOMMENDED_ACTION``) and what the benchmark measured for it
    (``RECOMMENDED_BECAUSE``, declared beside it)."""
    share = count.estimate / max(num_samples, 1)
    action = {"remove": f"train on {CLEANED_FILE} (the flagged images left out)",
              "relabel": f"fix the labels {RELABEL_FILE} suggests and train on them",
              "hybrid": f"fix the labels of {RELABEL_FILE} whose suggestion the model preferred, leave out the rest",
              "downweight": f"train on {WEIGHTS_FILE}, each image's loss scaled by its weight (the flagged ones "
                            "count less)"}[RECOMMENDED_ACTION]
    check = ("compare the held-out accuracy of a run on it with this run's before you adopt it" if held_out else
             "keep a held-out split of images you trust to check that the cleaned data trains a better model")
    measured = f" Measured on this run: {seeded.describe()}." if seeded is not None else ""
    return (f"About {count.estimate:,} of the {num_samples:,} labels ({share:.0%}) look wrong: {count.describe()}."
            f"{measured} Recommended: {action}, then {check}. On the benchmark grid (BENCHMARKS.md, bench/cleaning.py) "
            f"this action {RECOMMENDED_BECAUSE}; training "
            f"on {CLEANED_FILE} (removal) did as well where the network memorised the wrong labels but can cost "
            "a weak network the ambiguous images it needs. Where a network is barely hurt by the noise (retraining "
            "on the true labels gains under a point), acting on these is unlikely to change your accuracy much.")
