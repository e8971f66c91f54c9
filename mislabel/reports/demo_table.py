"""The demo's closing table: what finding and acting on the wrong labels is worth on one run.

`./run.sh demo` retrains its unseen run three ways: the seed's phase 3 (remove the top suspects),
the action the benchmark recommends (``RECOMMENDED_ACTION`` on the estimated number of wrong
labels, as find_issues acts), and the oracle (without exactly the flipped labels: the most any
removal can give). ``demo_table`` reads those run folders and says, beside each test accuracy, how
many test images the difference to the noisy model is, and whether the test set can tell it from
chance: on a small test set one image is a visible fraction of a point, and a table that shows
98.33% against 98.06% without saying so reads as "cleaning made it worse".

The test compares two models on the same images: only the images one gets right and the other
wrong carry evidence, and under "no difference" each goes either way with probability 1/2 (the
exact McNemar test). It measures the test set's resolution only; another training seed moves
every accuracy too (BENCHMARKS.md's cleaning table gives that spread).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from math import comb
from pathlib import Path

import numpy as np

from mislabel.core.user_input import UserError
from mislabel.reports.summary import format_metric, read_summary
from mislabel.scoring.count import NoisyCount
from mislabel.scoring.seeding import SEED_KINDS

__all__ = ["DemoFolders", "SIGNIFICANCE", "demo_table", "paired_p_value", "test_correct"]

SIGNIFICANCE = 0.05   # a difference whose paired p-value reaches this could be chance on this test set


@dataclass(frozen=True)
class DemoFolders:
    """The run folders the table reads: phase 1 of the unseen run and its three retrainings."""

    noisy: Path         # phase 1: trained on the noisy labels
    remove: Path        # the seed's phase 3: the top remove_ratio removed
    recommended: Path   # RECOMMENDED_ACTION on the estimated number of wrong labels
    oracle: Path        # without exactly the flipped labels


def test_correct(folder: Path) -> np.ndarray:
    """bool [T]: whether the run in ``folder`` got each test image right, in test-index order
    (its results_test.csv: index, Loss, Prediction, Confidence, Label)."""
    path = Path(folder) / "results_test.csv"
    if not path.is_file():
        raise UserError(f"{path} does not exist; finish that run first (./run.sh demo writes it)")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    order = np.argsort([int(row["index"]) for row in rows], kind="stable")
    correct = np.array([row["Prediction"] == row["Label"] for row in rows], dtype=bool)
    return correct[order]


def paired_p_value(before: np.ndarray, after: np.ndarray) -> float:
    """Two-sided exact McNemar p-value of two models' per-image correctness on the same test images:
    of the n images exactly one of them gets right, how unlikely a split at least this uneven is when
    each image goes either way with probability 1/2."""
    gained, lost = int((after & ~before).sum()), int((before & ~after).sum())
    disagree = gained + lost
    tail = sum(comb(disagree, k) for k in range(min(gained, lost) + 1)) / 2 ** disagree
    return min(1.0, 2 * tail)


def _p_text(p_value: float) -> str:
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


def _finished(folder: Path) -> dict:
    summary = read_summary(folder)
    if summary is None:
        raise UserError(f"{folder} holds no finished run; run ./run.sh demo to the end first")
    return summary


def _count_rows(noisy: dict, recommended: dict) -> list[tuple[str, str]]:
    """How many labels are wrong: the true number (the noise was injected, and the seeded flips are
    wrong labels trained on too) beside the estimate the recommended action acted on; on a seeded run,
    the recall measured on the seeds at that action's flagged line (the suspects it acted on) beside the
    real flips' true recall there (its summary's ``seeded_check``: ``mislabel.scoring.seeding.acted_on_check``)."""
    estimate = recommended.get("estimated_wrong_labels")
    described = "n/a" if estimate is None else NoisyCount(**estimate).describe()
    seeded = f" (after {noisy['num_seeded']:,} were changed on purpose)" if noisy.get("num_seeded") else ""
    rows = [("wrong labels, true (injected)", f"{noisy['num_flipped']:,} of {recommended['num_ranked']:,}{seeded}"),
            ("wrong labels, estimated", described)]
    check = recommended.get("seeded_check")
    if check is None:
        return rows
    total, found = sum(check["seeds"].values()), sum(check["found"].values())
    kinds = ", ".join(f"{kind} {check['found'][kind]}/{check['seeds'][kind]}" for kind in SEED_KINDS
                      if check["seeds"].get(kind))
    rows.append(("recall at the flagged line, measured on seeded flips",
                 f"of the {total:,} labels changed on purpose, {found:,} ({check['recall']:.0%}) reach the flagged "
                 f"line ({kinds})"))
    real = check.get("flipped_recall")
    rows.append(("recall at the flagged line, true (the injected flips)",
                 "n/a" if real is None else f"{real:.0%} of the real flipped labels reach the same line"))
    return rows


def _accuracy_cell(summary: dict, correct: np.ndarray, noisy_correct: np.ndarray) -> tuple[str, float]:
    """The test accuracy with its difference to the noisy model in images (gained, lost), and its p-value."""
    gained, lost = int((correct & ~noisy_correct).sum()), int((noisy_correct & ~correct).sum())
    p_value = paired_p_value(noisy_correct, correct)
    cell = (f"{format_metric(summary['test_accuracy'], percent=True)} ({gained - lost:+d} images: {gained} newly "
            f"right, {lost} newly wrong; {_p_text(p_value)})")
    return cell, p_value


def _verdict(differences: dict[str, tuple[int, float]], noisy_accuracy: float, num_test: int) -> str:
    """One sentence on whether the test set tells the retrainings from the noisy model."""
    clear = {name: d for name, d in differences.items() if d[1] < SIGNIFICANCE}
    if not clear:
        largest = max(abs(d[0]) for d in differences.values())
        return (f"None of the retrainings differs from the noisy model by more than chance on these {num_test} "
                f"test images (largest difference {largest} images, every p >= {SIGNIFICANCE}): the noisy model "
                f"reaches {format_metric(noisy_accuracy, percent=True)} and even the oracle, the most any removal "
                f"can give, changes it by {differences['oracle'][0]:+d} images, so this run cannot show what "
                "cleaning is worth; BENCHMARKS.md's cleaning table measures it over seeds and noisier runs.")
    told = "; ".join(f"{name}: {d[0]:+d} images ({_p_text(d[1])})" for name, d in clear.items())
    rest = [name for name in differences if name not in clear]
    return (f"Beyond chance on these {num_test} test images (p < {SIGNIFICANCE}): {told}."
            + (f" Within chance, so this test set cannot tell them from the noisy model: {', '.join(rest)}."
               if rest else ""))


def demo_table(folders: DemoFolders) -> str:
    """Markdown: the count, detection, and test accuracy trained on the noisy labels, after the seed's
    removal, after the recommended action and for the oracle, each with its difference in test images;
    then the test set's resolution and a sentence on which differences it can tell from chance."""
    noisy, remove = _finished(folders.noisy), _finished(folders.remove)
    recommended, oracle = _finished(folders.recommended), _finished(folders.oracle)
    noisy_correct = test_correct(folders.noisy)
    num_test = len(noisy_correct)
    detection = remove.get("detection") or {}
    share = remove["num_suspects"] / max(remove["num_ranked"], 1)
    retrainings = {
        f"remove the top {share:.0%} (the seed's phase 3)": (remove, folders.remove),
        f"{recommended['action']} the ~{recommended['num_suspects']:,} estimated wrong labels (recommended)":
            (recommended, folders.recommended),
        f"oracle: without exactly the {oracle['num_removed']:,} flipped labels": (oracle, folders.oracle),
    }
    rows = [*_count_rows(noisy, recommended),
            ("detection AUC / mAP", f"{format_metric(detection.get('auc'))} / {format_metric(detection.get('map'))}"),
            (f"flipped among the top {share:.0%}", format_metric(remove.get("flipped_share_of_removed"), percent=True)),
            ("test accuracy, trained on the noisy labels", format_metric(noisy["test_accuracy"], percent=True))]
    differences = {}
    for name, (summary, folder) in retrainings.items():
        correct = test_correct(folder)
        cell, p_value = _accuracy_cell(summary, correct, noisy_correct)
        rows.append((f"test accuracy, {name}", cell))
        differences[name.split(" ")[0].rstrip(":")] = (int(correct.sum()) - int(noisy_correct.sum()), p_value)
    rows.append(("test set", f"{num_test:,} images: 1 image = {100 / num_test:.2f} points"))
    lines = ["| measure | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines) + "\n\n" + _verdict(differences, noisy["test_accuracy"], num_test)
