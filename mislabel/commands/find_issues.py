"""Find label issues in your own labelled images: one command, a ranked list, an HTML report.

    ./run.sh find_issues <class folder | list.csv> [--out FOLDER] [--detector_files F ...] [--flags]

    read the user's files  -> decode each once (unreadable ones skipped, listed in skipped.txt)
    -> pick a recipe from the data's size and image size (printed; every value a flag)
    -> phase 1 through the Runner, recording dynamics (checkpointed: rerunning continues)
    -> score every sample with the detector(s) and every baseline
    -> suspects.csv, datamap.png, report.html, find_issues.json, and a one-line summary

No noise is injected: the labels are the user's, and the flips are what we are looking for.

Under torchrun (``NPROC=n ./run.sh find_issues ...``) every process runs this same sequence: the
decoding passes are split among them (``mislabel.data.user_data``), rank 0 alone reads and writes the
caches and the plan and shares its decisions (``distributed.on_main``), phase 1 trains one
DistributedDataParallel replica per process, and rank 0 alone scores and writes every output
while the others end after training.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from mislabel.training.budget import Clock, minutes
from mislabel.commands.issues_cli import parse_args
from mislabel.core.dynamics import Dynamics, load_dynamics
from mislabel.core.user_input import UserError, check_output_folder, exit_on_user_error
from mislabel.core.files import atomic_write, atomic_write_all
from mislabel.core.device import pick_device

CLOCK = Clock()  # started before the heavy imports below: the budget covers them too

if __name__ == "__main__":  # refuse a bad command line before the imports below (seconds and ~1 GB)
    exit_on_user_error(parse_args)(sys.argv[1:])

import numpy as np  # noqa: E402  (after the clock and the check, on purpose)
import pandas as pd
import torch

from mislabel.core import distributed
from mislabel.scoring.baselines import BASELINES
from mislabel.scoring.scores import DEFAULT_CONTROL, DEFAULT_DETECTOR, Detector, load_detectors
from mislabel.scoring.scores import score as score_methods
from mislabel.reports.issues_actions import cleaned_table, relabel_table, action_writes
from mislabel.reports.issues_report import write_report
from mislabel.reports.plots import plot_datamap
from mislabel.core.progress import expect_after_training
from mislabel.reports.summary import read_summary
from mislabel.commands.issues_budget import plan_within_budget
from mislabel.training.plan import Plan, default_plan
from mislabel.training.loop import Recipe
from mislabel.data.user_data import SCAN_FILE, Listing, check_images, image_data, list_data
from mislabel.models import NETWORKS
from mislabel.pipeline import Runner
from mislabel.run_config import RunConfig

__all__ = ["Plan", "default_plan", "main", "parse_args", "DETECTOR_THRESHOLD"]

# --- constants: one place, each value with its reason ------------------------------------------
DETECTOR_THRESHOLD = 0.5            # a detector's probability of "mislabeled": flagged at >= 0.5
KEY_FILE = "find_issues_key.json"   # in the phase-1 folder: which data and settings produced it


# --- phase 1 -------------------------------------------------------------------------------------

def _detectors(args: argparse.Namespace, device: torch.device) -> tuple[list[Detector], str]:
    """Load every detector before any training, so a bad file costs seconds, not hours (on every
    rank under torchrun, so all of them refuse it alike)."""
    if args.detector_files is None and not DEFAULT_DETECTOR.is_file():
        return [], f"no detector given and none at {DEFAULT_DETECTOR}: baselines only"
    files = [DEFAULT_DETECTOR] if args.detector_files is None else [Path(f) for f in args.detector_files]
    return load_detectors(files, device), "detector" + ("s " if len(files) > 1 else " ") + ", ".join(map(str, files))


def _run_key(listing: Listing, labels: np.ndarray, files: list[str], plan: Plan, args: argparse.Namespace) -> dict:
    """What must match for a phase-1 folder to be continued or reused: the data and every setting."""
    digest = hashlib.sha256("\n".join(f"{f}\t{y}" for f, y in zip(listing.relative(files), labels)).encode(
        "utf-8", "surrogateescape")).hexdigest()
    return {"data": digest, "plan": asdict(plan), "seed": args.seed, "hflip": not args.no_hflip,
            **{k: getattr(args, k) for k in ("momentum", "wd", "loss_type", "widen_factor", "pretrained_path",
                                             "td_mode", "td_topk")}}


def _phase1_config(listing: Listing, plan: Plan, args: argparse.Namespace, out: Path) -> RunConfig:
    """The Runner's configuration for this data and plan; its ``td_dir`` is the phase-1 folder."""
    safe = re.sub(r"[^\w.-]", "_", listing.name)
    return RunConfig.from_args(args, dataset=safe if safe.strip(".") else "data", noise_ratio=None,
                               net_type=plan.net_type, depth=plan.depth, num_valid=0, image_size=plan.image_size,
                               results_dir=str(out / "phase1"), overwrite=False,
                               recipe=Recipe(epochs=plan.epochs, batch_size=plan.batch_size, lr=plan.lr,
                                             momentum=args.momentum, weight_decay=args.wd, loss_type=args.loss_type))


def _phase1(listing: Listing, keep: tuple[np.ndarray, np.ndarray], plan: Plan, args: argparse.Namespace,
            out: Path) -> tuple[Path, dict]:
    """Train and record unless a finished run of this data and settings is already there."""
    config = _phase1_config(listing, plan, args, out)
    config.recipe.validate()
    td_dir = config.td_dir
    files = [f for f, k in zip(listing.train_files, keep[0]) if k]
    key = _run_key(listing, listing.train_labels[keep[0]], files, plan, args)
    if distributed.on_main(lambda: _must_train(td_dir, key, args.overwrite)):
        runner = Runner(config, image_data(listing, *keep, plan.image_size, plan.in_memory, not args.no_hflip))
        if distributed.is_main():
            text = json.dumps(key, indent=2, sort_keys=True)
            atomic_write(td_dir / KEY_FILE, lambda tmp: Path(tmp).write_text(text))
        runner.train_for_td_computation()
    elif distributed.is_main():
        print(f"phase 1 already finished in {td_dir}; scoring it again")
    return td_dir, (read_summary(td_dir) or {}) if distributed.is_main() else {}


def _must_train(td_dir: Path, key: dict, overwrite: bool) -> bool:
    """Whether phase 1 must run (or continue) in ``td_dir``: not when a finished run of this data
    and these settings is there; one of other settings is refused. Drops it under ``overwrite``."""
    key_file = td_dir / KEY_FILE
    if overwrite and td_dir.exists():
        shutil.rmtree(td_dir)
    try:
        stored = json.loads(key_file.read_text()) if key_file.is_file() else None
    except ValueError:
        raise UserError(f"{key_file} is damaged; pass --overwrite to train phase 1 again") from None
    if stored is not None and stored != key:
        changed = sorted(k for k in key if stored.get(k) != key[k])
        raise UserError(f"{td_dir} holds a phase-1 run of other {' and '.join(changed)}; rerun that command, "
                        "pass --overwrite to train again, or --out elsewhere")
    return stored is None or read_summary(td_dir) is None


# --- scoring and outputs -------------------------------------------------------------------------

def _predicted(dyn: Dynamics) -> np.ndarray:
    """The class with the highest mean probability over training: the model's belief before it
    memorised a wrong label (the last epoch often just repeats the given label)."""
    if dyn.td.shape[2] < 2:
        return dyn.assigned.copy()
    mean = dyn.td[:, :, :2].astype(np.float32).mean(axis=1)
    return np.where(mean[:, 0] >= mean[:, 1], dyn.labels[:, 0], dyn.labels[:, 1])


def _suspects(dyn: Dynamics, listing: Listing, files: list[str], detectors: list[Detector]
              ) -> tuple[pd.DataFrame, str, np.ndarray]:
    """Every recorded sample, most suspicious first, with its flag under the threshold rule; and
    the order (table row -> dynamics row)."""
    def written(values: np.ndarray) -> np.ndarray:
        """As suspects.csv prints it, so ranks and flags agree with the printed scores (+ 0.0: no -0)."""
        return np.round(np.asarray(values, dtype=np.float64), 6) + 0.0

    # the learned control is a column beside the baselines it combines
    methods = [*(["control"] if DEFAULT_CONTROL.is_file() else []), *BASELINES]
    scored = score_methods(dyn, methods, detectors)
    baselines = {result.name: written(result.scores) for result in scored[:len(methods)]}
    probs = {result.name: result.scores for result in scored[len(methods):]}
    if probs:
        score = written(np.mean(list(probs.values()), axis=0))
        flagged, rule = score >= DETECTOR_THRESHOLD, f"detector probability >= {DETECTOR_THRESHOLD}"
    else:
        score = baselines["aum"]
        flagged, rule = score > 0, ("negative area under the margin (score = -AUM > 0: the model preferred "
                                    "another class on average)")
    probs = {name: written(values) for name, values in probs.items()}
    names = np.asarray(listing.class_names, dtype=object)
    table = pd.DataFrame({"path": np.asarray(listing.relative(files), dtype=object)[dyn.indices],
                          "given_label": names[dyn.assigned], "predicted_label": names[_predicted(dyn)],
                          "score": score, "flagged": flagged.astype(np.int8), **probs, **baselines})
    order = np.argsort(-score, kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table, rule, order


def _write_skipped(out: Path, paths: list[str], reasons: list[str]) -> None:
    lines = "".join(f"{p}\t{r}".replace("\n", "\\n") + "\n" for p, r in zip(paths, reasons))
    atomic_write(out / "skipped.txt",
                 lambda tmp: Path(tmp).write_text(lines, encoding="utf-8", errors="surrogateescape"))


def _scan(listing: Listing, out: Path) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, list[str], float]:
    """Decode every distinct file once; returns keep masks, short sides, the skipped paths and the
    seconds the scan took per file (what the budget predicts decoding from)."""
    listed = np.bincount(listing.train_labels, minlength=len(listing.class_names))
    if (listed == 0).any():  # a CSV's integer labels may skip an index
        empty = listing.class_names[int(np.argmax(listed == 0))]
        raise UserError(f"class {empty!r} has no training images in {listing.root}; add images or renumber "
                        "the labels without gaps")
    unique = list(dict.fromkeys(listing.train_files + listing.test_files))
    scan = check_images(unique, out / SCAN_FILE)
    ok = dict(zip(unique, scan.ok))
    failed = sorted(scan.failures)
    skipped = listing.relative([unique[i] for i in failed])
    if distributed.is_main():  # every rank has the scan; one writes and warns
        _write_skipped(out, skipped, [scan.failures[i] for i in failed])
        if skipped:
            shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
            print(f"warning: skipping {len(skipped)} unreadable images ({shown}); listed in {out / 'skipped.txt'}",
                  file=sys.stderr)
    keep = (np.array([ok[f] for f in listing.train_files]), np.array([ok[f] for f in listing.test_files]))
    counts = np.bincount(listing.train_labels[keep[0]], minlength=len(listing.class_names))
    if (counts == 0).any():
        empty = listing.class_names[int(np.argmax(counts == 0))]
        raise UserError(f"class {empty!r} has no readable training images (see {out / 'skipped.txt'}); "
                        "replace its files or remove the class")
    if not keep[1].any():
        raise UserError(f"no readable test images in {listing.root}; replace the files in skipped.txt")
    return keep, scan.short_side[scan.ok], skipped, scan.seconds / len(unique)


def _settings(listing: Listing, plan: Plan, args: argparse.Namespace, scored: int, skipped: int,
              detector_note: str, rule: str, summary: dict, td_dir: Path) -> dict[str, str]:
    """The report's settings table: enough to trace every number back to what produced it."""
    accuracy = summary.get("test_accuracy")
    accuracy_label = ("held-out accuracy" if listing.held_out else
                      "accuracy on a 10% sample of the training images (in-sample: a sanity check)")
    return {"data": f"{listing.root} ({listing.layout})", "classes": str(len(listing.class_names)),
            "samples scored": str(scored), "unreadable images skipped": str(skipped),
            "recipe": f"{plan.describe()}, momentum {args.momentum}, wd {args.wd}, "
                      f"flips {'off' if args.no_hflip else 'on'}",
            "seed": str(args.seed), "scored by": detector_note, "threshold": rule,
            accuracy_label: "n/a" if accuracy is None else f"{accuracy:.2%}", "phase-1 run": str(td_dir)}


def _arguments(args: argparse.Namespace) -> dict:
    """What find_issues.json records of the command; the data as an absolute path."""
    return {**vars(args), "data": os.path.abspath(args.data)}


def _refuse_other_results(out: Path, args: argparse.Namespace, td_dir: Path | None = None) -> None:
    """A finished --out folder made from other data (checked before anything is written) or from
    another phase-1 run (checked once the recipe, hence ``td_dir``, is known) is not replaced
    without --overwrite. A rerun on the same data and phase-1 run only scores again."""
    record_file = out / "find_issues.json"
    if args.overwrite or not record_file.is_file():
        return
    try:
        recorded = json.loads(record_file.read_text())
        data, phase1 = recorded["arguments"]["data"], recorded.get("phase1")
    except (ValueError, KeyError, TypeError):
        return  # not a record we wrote: nothing to compare with
    if os.path.abspath(data) != os.path.abspath(args.data):
        made = f"on {data}"
    elif td_dir is not None and phase1 is not None and phase1 != os.path.relpath(td_dir, out):
        made = f"of another phase-1 run ({out / phase1}; this command's is {td_dir})"
    else:
        return
    raise UserError(f"{out} already holds the finished results of find_issues {made}; pass --overwrite to "
                    "replace them, or another --out")


def find_issues(args: argparse.Namespace) -> Path:
    """The whole command; returns the output folder."""
    device = distributed.start(pick_device(args.device))  # joins torchrun's process group, if any
    rank0 = distributed.is_main()
    listing = list_data(args.data, args.seed, args.allow_outside)
    detectors, detector_note = _detectors(args, device)
    out = Path(args.out) if args.out else Path(args.results_dir) / "find_issues" / listing.name
    check_output_folder(out, "output folder", "pass --out a folder (or set RESULTS_DIR to one)")
    _refuse_other_results(out, args)
    keep, sides, skipped, decode_seconds = _scan(listing, out)
    num_train, median_side = int(keep[0].sum()), int(np.median(sides))
    choice = plan_within_budget(default_plan(num_train, median_side), num_train, int(keep[1].sum()),
                                len(listing.class_names), decode_seconds, args,
                                {name: depths[0] for name, depths in NETWORKS.items()}, CLOCK, out)
    plan = choice.plan
    if rank0:
        print(f"recipe: {plan.describe()} (for {num_train} images of median side {median_side}px; --net_type "
              "--depth --num_epochs --batch_size --lr --image_size --storage override it)")
        print("\n".join(choice.lines))
    expect_after_training(choice.estimate.after)
    _refuse_other_results(out, args, _phase1_config(listing, plan, args, out).td_dir)
    choice.save(out)
    td_dir, summary = _phase1(listing, keep, plan, args, out)
    if not rank0:
        return out  # rank 0 alone scores and writes
    dyn = load_dynamics(td_dir)
    dyn.flipped = dyn.true_labels = None  # the user's labels: no known flips to mark
    files = [f for f, k in zip(listing.train_files, keep[0]) if k]
    table, rule, order = _suspects(dyn, listing, files, detectors)
    flagged_files = {files[i] for i in dyn.indices[order[table["flagged"].to_numpy() == 1]]}
    actions, action_notes = action_writes(out, cleaned_table(listing, keep, flagged_files),
                                          relabel_table(dyn, listing.class_names, table, order))
    flagged = int(table["flagged"].sum())
    fallback = "" if detectors else f" [{detector_note}]"
    line = (f"find_issues: {len(table)} samples scored, {flagged} flagged ({rule.split(' (')[0]}){fallback}; "
            f"report: {out / 'report.html'}; took {minutes(CLOCK.elapsed())}")
    settings = _settings(listing, plan, args, len(table), len(skipped), detector_note, rule, summary, td_dir)
    budget = f"a {args.budget:g} min budget" if args.budget else "no budget (--budget 0: the full recipe)"
    settings.update({"time": f"{minutes(CLOCK.elapsed())} (predicted {minutes(choice.estimate.total)} after the "
                             f"scan, for {budget})", **action_notes})
    record = {"summary": line, "settings": settings, "plan": asdict(plan), "flagged": flagged,
              "samples": len(table), "arguments": _arguments(args), "predicted_seconds": round(choice.estimate.total, 1),
              "seconds": round(CLOCK.elapsed(), 1),
              "phase1": os.path.relpath(td_dir, out)}  # relative: a copied --out folder stays itself
    staged: dict[str, Path] = {}  # the report embeds the data map, read from its temporary file

    def datamap(tmp: str) -> None:
        staged["datamap"] = plot_datamap(dyn, tmp)

    def report(tmp: str) -> None:
        write_report(Path(tmp), title=f"Label issues in {listing.name}", summary=line, settings=settings,
                     table=table, root=listing.root, top=args.report_top, datamap=staged["datamap"],
                     threshold=DETECTOR_THRESHOLD if detectors else 0.0, skipped=skipped)

    # all or nothing (in this order): a failure leaves the previous set of outputs, not a mix
    atomic_write_all({out / "suspects.csv": lambda tmp: table.to_csv(tmp, index=False, float_format="%.6f"),
                      **actions, out / "datamap.png": datamap, out / "report.html": report,
                      out / "find_issues.json": lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2) + "\n")})
    print(line)
    return out


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        find_issues(args)
    finally:
        distributed.stop()


if __name__ == "__main__":
    main()
