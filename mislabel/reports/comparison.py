"""compare's outputs: one answer to "does the learned detector beat the hand-crafted signals on this run?".

``mislabel.compare`` (``mislabel.api``) scores a phase-1 run with every method; ``write_comparison``
writes, into the run folder, comparison.csv / comparison.md (one row per method: AUC, mAP, P@k, R@k,
P@5%, P@10% and seconds), scores.csv (one column per method), roc_pr.png (known flips only) and
datamap.png. The files are renamed into place together, so a full disk leaves the previous set.
A seeded run's labels changed on purpose (``mislabel.scoring.seeding``) are left out of every metric,
which measure the real flips; comparison.md says how each method ranks them.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mislabel.core.dynamics import Dynamics
from mislabel.core.files import atomic_write_all
from mislabel.core.run_options import DEFAULT_FOLDS
from mislabel.reports.plots import plot_datamap, plot_roc_pr
from mislabel.reports.summary import read_summary
from mislabel.scoring.metrics import MethodScores, detection_metrics, has_ground_truth
from mislabel.scoring.seeding import SEED_KINDS, SEEDS_FILE, seed_auc

__all__ = ["METRICS", "OUTPUTS", "Comparison", "comparison_markdown", "write_comparison"]

# Column name in comparison.csv -> header in comparison.md.
METRICS = {"auc": "AUC", "map": "mAP", "precision_at_k": "P@k", "recall_at_k": "R@k",
           "precision_top5": "P@5%", "precision_top10": "P@10%"}
OUTPUTS = ("comparison.csv", "comparison.md", "scores.csv", "roc_pr.png", "datamap.png")


@dataclass
class Comparison:
    """What ``mislabel.compare`` gives back: each method's scores and metrics (in the table's order),
    comparison.md's text and the files written."""

    folder: Path
    results: list[MethodScores]
    markdown: str
    written: list[Path]


def _stored_classes_note(dyn: Dynamics) -> str:
    """Say so when td keeps fewer channels than there are classes (top-k recording).

    The class count is not stored; every class that appears as a label, a prediction or a true
    label is a lower bound, and fewer channels than that bound means channels were dropped.
    """
    seen = [dyn.labels.max(), dyn.pred.max()] + ([] if dyn.true_labels is None else [dyn.true_labels.max()])
    num_classes, channels = int(max(seen)) + 1, dyn.td.shape[2]
    if channels >= num_classes:
        return ""
    return (f"td stores {channels} of {num_classes} classes per sample (top-k recording), so "
            f"confidence_tracking tests only the {channels - 1} strongest competitors of the assigned label")


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# run.sh crossval_probs's positional arguments, in order, as runner.py flags.
_POSITIONAL_FLAGS = ("--datadir", "--dataset", "--seed", "--noise_ratio", "--noise_type", "--net_type", "--depth")


def _generate_td_flags(folder: Path) -> list[str]:
    """The flags of the generate_td command recorded in cmd.txt, split as the shell would."""
    path = folder / "cmd.txt"
    try:
        words = shlex.split(path.read_text()) if path.is_file() else []
    except ValueError:
        return []
    if "generate_td" not in words:
        return []
    flags: list[str] = []
    for word in words[words.index("generate_td") + 1:]:
        flags += word.split("=", 1) if word.startswith("--") else [word]
    return flags


def _crossval_hint(folder: Path) -> str:
    """The run.sh command that makes pred_probs_cv.npy for this folder.

    Built from the generate_td command recorded in cmd.txt, so the recipe flags (batch size,
    learning rate, ...) carry over; the run's summary.json fills in what it lacks.
    """
    summary = read_summary(folder) or {}
    known = ["<datadir>", summary.get("dataset", "<dataset>"), summary.get("seed", "<seed>"),
             f"{summary.get('noise_ratio') or 0:g}", summary.get("noise_type", "uniform"),
             summary.get("net_type", "<net_type>"), summary.get("depth", "<depth>")]
    values = dict(zip(_POSITIONAL_FLAGS, known))
    flags, rest = _generate_td_flags(folder), []
    position = 0
    while position < len(flags):
        flag = flags[position]
        # runner.py has no positional arguments, so a flag's value is whatever is not a flag itself.
        takes_value = position + 1 < len(flags) and not flags[position + 1].startswith("--")
        value = flags[position + 1] if takes_value else None
        position += 2 if takes_value else 1
        if flag in values and value is not None:
            values[flag] = value
        elif flag not in ("--results_dir", "--overwrite"):
            rest += [flag] if value is None else [flag, value]
    results_dir = folder.parent.parent
    prefix = [] if results_dir == Path("replication") else [f"RESULTS_DIR={shlex.quote(str(results_dir))}"]
    words = ["./run.sh", "crossval_probs", *map(str, values.values()), *rest]
    return " ".join(prefix + [word if word.startswith("<") else shlex.quote(word) for word in words])


def comparison_markdown(folder: Path, dyn: Dynamics, results: list[MethodScores], notes: list[str],
                        judged: np.ndarray | None = None) -> str:
    """The table users read: one row per method in a fixed order, then what the numbers mean.
    ``judged``: the rows the metrics read (all but a seeded run's seeds; None: every row)."""
    truth = None if dyn.flipped is None else dyn.flipped if judged is None else dyn.flipped[judged]
    known = has_ground_truth(truth)
    flips = f"k = {int(truth.sum())} flipped labels ({truth.mean():.1%})" if known else "flips unknown"
    lines = [f"# Mislabel detection: {folder}", "",
             f"{dyn.num_samples} training samples, {dyn.num_epochs} epochs, {flips}. "
             "Every score ranks higher = more likely mislabeled.", "",
             "| method | " + " | ".join(METRICS.values()) + " | seconds |",
             "|---|" + "---:|" * (len(METRICS) + 1)]
    for result in results:
        metrics = result.metrics or {}
        cells = [_cell(metrics.get(key)) for key in METRICS]
        lines.append(f"| {result.name} | " + " | ".join(cells) + f" | {result.seconds:.4f} |")
    lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def _notes(truth: np.ndarray | None, results: list[MethodScores], cleanlab_note: str) -> list[str]:
    notes = []
    if has_ground_truth(truth):
        best_auc = max(results, key=lambda r: r.metrics["auc"])
        best_map = max(results, key=lambda r: r.metrics["map"])
        notes.append(f"best AUC: {best_auc.name} ({best_auc.metrics['auc']:.4f}); "
                     f"best mAP: {best_map.name} ({best_map.metrics['map']:.4f})")
        notes.append("P@k and R@k are equal by construction: k is the number of flipped labels; "
                     "P@5%/P@10% are the shares of flips among the top 5%/10% of the ranking")
        below = [r.name for r in results if r.metrics["auc"] < 0.5]
        if below:
            notes.append(f"AUC below 0.5 ({', '.join(below)}): on this run these scores rank flipped labels as "
                         "less suspicious than a random order would")
    else:
        notes.append("AUC, mAP and precision/recall need known flips (synthetic noise from generate_td); this run "
                     "has none, so only scores.csv and datamap.png carry information")
    notes.append(cleanlab_note)
    notes += [f"{r.name}: {r.note}" for r in results if r.note]
    notes.append("seconds: time to compute each score from the stored dynamics (detectors: loading included); "
                 "cleanlab's extra training runs are not in it")
    return notes


def _outputs(folder: Path, dyn: Dynamics, results: list[MethodScores], markdown: str, judged: np.ndarray,
             seeded: np.ndarray | None) -> dict[Path, Callable[[str], object]]:
    """Every output file with the function that writes it to a temporary path (``atomic_write_all``);
    the metrics' files read the ``judged`` rows, scores.csv every row (the ``seeded`` ones marked)."""
    truth = None if dyn.flipped is None else dyn.flipped[judged]
    rows = [{"method": r.name, **{key: (r.metrics or {}).get(key) for key in METRICS},
             "seconds": round(r.seconds, 6), "note": r.note} for r in results]
    table = pd.DataFrame(rows)
    table.insert(len(METRICS) + 2, "k", int(truth.sum()) if has_ground_truth(truth) else None)
    columns = {"index": dyn.indices, "given_label": dyn.assigned}
    if dyn.true_labels is not None:
        columns["true_label"] = dyn.true_labels
    if dyn.flipped is not None:
        columns["flipped"] = dyn.flipped.astype(np.int8)
    if seeded is not None:
        columns["seeded"] = np.isin(np.arange(dyn.num_samples), seeded).astype(np.int8)
    columns.update({r.name: r.scores for r in results})
    scores = pd.DataFrame(columns)
    writes = {folder / "comparison.csv": lambda tmp: table.to_csv(tmp, index=False),
              folder / "comparison.md": lambda tmp: Path(tmp).write_text(markdown),
              folder / "scores.csv": lambda tmp: scores.to_csv(tmp, index=False, float_format="%.8g"),
              folder / "datamap.png": lambda tmp: plot_datamap(dyn, tmp)}
    if has_ground_truth(truth):
        writes[folder / "roc_pr.png"] = lambda tmp: plot_roc_pr({r.name: r.scores[judged] for r in results}, truth, tmp)
    return writes


def _cleanlab_note(folder: Path, cross_validation: dict | None) -> str:
    """What the cleanlab row rests on: the cross-validation's bill (``pred_probs_cv.json``), or the
    command that makes its input when it did not run (``cross_validation`` None)."""
    if cross_validation is None:
        return (f"cleanlab: not run, as {folder / 'pred_probs_cv.npy'} is missing; make it with "
                f"`{_crossval_hint(folder)}` (the generate_td run's arguments; with the default "
                f"--folds {DEFAULT_FOLDS} it costs {DEFAULT_FOLDS} extra training runs)")
    info = cross_validation
    cost = (f"{info['extra_training_runs']} extra training runs of {info['epochs_per_run']} epochs "
            f"({info['seconds']:.0f} s)" if {"extra_training_runs", "epochs_per_run", "seconds"} <= info.keys()
            else "an unrecorded number of extra training runs (pred_probs_cv.json is missing)")
    folds = f"{info['folds']}-fold " if "folds" in info else ""
    return f"cleanlab: confident learning on {folds}cross-validated probabilities, which cost {cost}"


def _seeded_note(results: list[MethodScores], seeds: np.ndarray, kinds: np.ndarray, judged: np.ndarray) -> str:
    """How each method ranks a seeded run's seeds against the rows it calls clean, per kind (``seed_auc``)."""
    present = [(code, kind) for code, kind in enumerate(SEED_KINDS) if (kinds == code).any()]
    aucs = "; ".join(f"{r.name} " + " / ".join(f"{seed_auc(r.scores, seeds[kinds == code], judged):.3f}"
                                              for code, _ in present) for r in results)
    return (f"{len(seeds)} labels were changed on purpose ({SEEDS_FILE}) and are left out of every metric above; "
            f"how each method ranks them, AUC against the rows it calls clean ({' / '.join(k for _, k in present)}): "
            f"{aucs}")


def write_comparison(folder: Path, dyn: Dynamics, results: list[MethodScores], cross_validation: dict | None,
                     seeded: tuple[np.ndarray, np.ndarray] | None = None) -> Comparison:
    """Write compare's outputs for ``results`` (``mislabel.scoring.scores.score`` of ``dyn``) into
    ``folder``, all or nothing; ``cross_validation``: the record of the held-out probabilities
    cleanlab scored (``load_pred_probs``'s), None when there were none; ``seeded``: a seeded run's
    seeds (row positions) and their kinds, whose rows every metric leaves out."""
    topk_note = _stored_classes_note(dyn)
    for result in results:
        if result.name.startswith("confidence_tracking"):
            result.note = topk_note
    judged = np.arange(dyn.num_samples) if seeded is None else np.setdiff1d(np.arange(dyn.num_samples), seeded[0])
    truth = None if dyn.flipped is None else dyn.flipped[judged]
    if seeded is not None:
        for result in results:
            result.metrics = detection_metrics(result.scores[judged], truth)
    notes = _notes(truth, results, _cleanlab_note(folder, cross_validation))
    if seeded is not None:
        notes.insert(0, _seeded_note(results, *seeded, judged))
    markdown = comparison_markdown(folder, dyn, results, notes, judged)
    outputs = _outputs(folder, dyn, results, markdown, judged, None if seeded is None else seeded[0])
    atomic_write_all(outputs)  # all or nothing: a full disk leaves the previous set, not a mix
    return Comparison(folder=folder, results=results, markdown=markdown,
                      written=[folder / name for name in OUTPUTS if folder / name in outputs])
