"""One answer to "does the learned detector beat the hand-crafted signals on this run?".

    ./run.sh compare <run_folder> [detector_file ...]

Scores one phase-1 run with every baseline of ``mislabel.scoring.baselines``, every LSTM detector
given and, when ``pred_probs_cv.npy`` is there (``./run.sh crossval_probs``), cleanlab; times
each; and writes into the run folder comparison.csv / comparison.md (one row per method),
scores.csv (one column per method), roc_pr.png and datamap.png. Everything is computed and
checked before the first file is written, and the files are renamed into place together, so a bad
detector file or a full disk leaves the folder as it was.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mislabel.scoring.baselines import BASELINES
from mislabel.scoring.metrics import has_ground_truth
from mislabel.scoring.scores import DEFAULT_CONTROL, MethodScores, load_detectors, score
from mislabel.training.crossval import DEFAULT_FOLDS, load_pred_probs
from mislabel.reports.plots import plot_datamap, plot_roc_pr
from mislabel.reports.summary import read_summary
from mislabel.core.dynamics import Dynamics, load_dynamics
from mislabel.core.user_input import OneLineParser, check_output_folder, exit_on_user_error
from mislabel.core.files import atomic_write_all
from mislabel.core.device import pick_device

__all__ = ["METRICS", "score_every_method", "comparison_markdown", "compare", "main"]

# Column name in comparison.csv -> header in comparison.md.
METRICS = {"auc": "AUC", "map": "mAP", "precision_at_k": "P@k", "recall_at_k": "R@k",
           "precision_top5": "P@5%", "precision_top10": "P@10%"}
OUTPUTS = ("comparison.csv", "comparison.md", "scores.csv", "roc_pr.png", "datamap.png")


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


def score_every_method(dyn: Dynamics, detector_files: list[str | Path], pred_probs: np.ndarray | None,
                  device: str = "auto") -> list[MethodScores]:
    """Every baseline, then cleanlab (when ``pred_probs`` is given), the shipped learned control (what
    the detectors must beat to be worth it), then each detector, timed."""
    detectors = load_detectors(detector_files, pick_device(device))
    methods = [*BASELINES, *(["cleanlab"] if pred_probs is not None else []),
               *(["control"] if DEFAULT_CONTROL.is_file() else [])]
    results = score(dyn, methods, detectors, pred_probs)
    topk_note = _stored_classes_note(dyn)
    for result in results:
        if result.name.startswith("confidence_tracking"):
            result.note = topk_note
    return results


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------


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


def comparison_markdown(folder: Path, dyn: Dynamics, results: list[MethodScores], notes: list[str]) -> str:
    """The table users read: one row per method in a fixed order, then what the numbers mean."""
    known = has_ground_truth(dyn.flipped)
    flips = f"k = {int(dyn.flipped.sum())} flipped labels ({dyn.flipped.mean():.1%})" if known else "flips unknown"
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


def _notes(dyn: Dynamics, results: list[MethodScores], cleanlab_note: str) -> list[str]:
    notes = []
    if has_ground_truth(dyn.flipped):
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


def _outputs(folder: Path, dyn: Dynamics, results: list[MethodScores], markdown: str) -> dict[Path, Callable[[str], object]]:
    """Every output file with the function that writes it to a temporary path (``atomic_write_all``)."""
    rows = [{"method": r.name, **{key: (r.metrics or {}).get(key) for key in METRICS},
             "seconds": round(r.seconds, 6), "note": r.note} for r in results]
    table = pd.DataFrame(rows)
    table.insert(len(METRICS) + 2, "k", int(dyn.flipped.sum()) if has_ground_truth(dyn.flipped) else None)
    columns = {"index": dyn.indices, "given_label": dyn.assigned}
    if dyn.true_labels is not None:
        columns["true_label"] = dyn.true_labels
    if dyn.flipped is not None:
        columns["flipped"] = dyn.flipped.astype(np.int8)
    columns.update({r.name: r.scores for r in results})
    scores = pd.DataFrame(columns)
    writes = {folder / "comparison.csv": lambda tmp: table.to_csv(tmp, index=False),
              folder / "comparison.md": lambda tmp: Path(tmp).write_text(markdown),
              folder / "scores.csv": lambda tmp: scores.to_csv(tmp, index=False, float_format="%.8g"),
              folder / "datamap.png": lambda tmp: plot_datamap(dyn, tmp)}
    if has_ground_truth(dyn.flipped):
        writes[folder / "roc_pr.png"] = lambda tmp: plot_roc_pr({r.name: r.scores for r in results}, dyn.flipped, tmp)
    return writes


def compare(folder: str | Path, detector_files: list[str | Path] = (), device: str = "auto") -> list[MethodScores]:
    """Score, then write the tables and plots into ``folder``; prints the markdown report."""
    folder = Path(folder)
    dyn = load_dynamics(folder)
    check_output_folder(folder, "run folder", "copy the run folder somewhere writable and compare the copy")
    loaded = load_pred_probs(folder, dyn)
    results = score_every_method(dyn, list(detector_files), None if loaded is None else loaded[0], device)
    if loaded is None:
        cleanlab_note = (f"cleanlab: not run, as {folder / 'pred_probs_cv.npy'} is missing; make it with "
                         f"`{_crossval_hint(folder)}` (the generate_td run's arguments; with the default "
                         f"--folds {DEFAULT_FOLDS} it costs {DEFAULT_FOLDS} extra training runs)")
    else:
        info = loaded[1]
        cost = (f"{info['extra_training_runs']} extra training runs of {info['epochs_per_run']} epochs "
                f"({info['seconds']:.0f} s)" if {"extra_training_runs", "epochs_per_run", "seconds"} <= info.keys()
                else "an unrecorded number of extra training runs (pred_probs_cv.json is missing)")
        folds = f"{info['folds']}-fold " if "folds" in info else ""
        cleanlab_note = f"cleanlab: confident learning on {folds}cross-validated probabilities, which cost {cost}"
    markdown = comparison_markdown(folder, dyn, results, _notes(dyn, results, cleanlab_note))
    outputs = _outputs(folder, dyn, results, markdown)
    atomic_write_all(outputs)  # all or nothing: a full disk leaves the previous set, not a mix
    print(markdown)
    print(f"wrote {', '.join(name for name in OUTPUTS if folder / name in outputs)} in {folder}")
    return results


@exit_on_user_error
def main(argv: list[str] | None = None, prog: str = "run.sh compare", launcher: str = "./") -> None:
    parser = OneLineParser(prog=prog, launcher=launcher, description=__doc__.split("\n")[0])
    parser.add_argument("run_folder", help="a generate_td output folder (holds training_dynamics.npz)")
    parser.add_argument("detector_files", nargs="*", help="LSTM detector files (train_detector.py) to compare")
    parser.add_argument("--device", default="auto", help="for the detectors: auto (CUDA when present), cpu, cuda[:N]")
    args = parser.parse_args(argv)
    compare(args.run_folder, args.detector_files, args.device)


if __name__ == "__main__":
    main(sys.argv[1:])
