"""find_issues as a library pipeline: your own labelled images in, a ranked table of suspects out.

    find_issues(data, out=..., budget=...)   the façade (``mislabel.find_issues``): builds an IssueFinder
    IssueFinder(options).run()               list the files -> scan them -> plan the recipe -> phase 1
                                             -> score every sample -> write the outputs

    list the user's files      (``mislabel.data.user_data``: a class folder, train/ + test/, a CSV)
    scan: decode each once     (unreadable ones skipped, listed in skipped.txt)
    plan a recipe              (``mislabel.training.plan`` and ``budget``: deterministic, printed)
    phase 1 through the Runner (checkpointed: rerunning continues; a finished run is reused)
    score every sample         (``mislabel.scoring.scores.score``: detector(s), control, baselines)
    outputs                    suspects.csv, cleaned.csv, weights.csv, relabel.csv, datamap.png,
                               report.html, find_issues.json, skipped.txt, datalab_issues.csv,
                               budget_plan.json, scan.json (``mislabel.reports``)

No noise is injected: the labels are the user's (``ImageData.real_noise``: no known flips), and the
flips are what we are looking for. The
command (``mislabel.commands.find_issues``) only parses, calls ``IssueFinder.run`` and prints.

Under torchrun every process runs this same sequence: the scan is split among them, each computes
the same (deterministic) plan, phase 1 trains one DistributedDataParallel replica per process, and
rank 0 alone decides about, reads and writes the folders, scores and writes every output.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mislabel.core import distributed
from mislabel.core.device import pick_device
from mislabel.core.dynamics import Dynamics, load_dynamics
from mislabel.core.files import atomic_write_all, read_record, write_record
from mislabel.core.user_input import UserError
from mislabel.data.user_data import SCAN_FILE, Listing, Scan, check_images, image_data, list_data, save_scan
from mislabel.issue_options import IssueOptions, issue_options
from mislabel.issue_scoring import ScoredRun, Seeds, score_suspects
from mislabel.models.backbones import load_backbone
from mislabel.pipeline import Runner
from mislabel.reports.datalab import datalab_table
from mislabel.reports.issues_actions import action_writes, advice, cleaned_table, relabel_table, weights_table
from mislabel.reports.issues_report import write_report
from mislabel.reports.plots import datamap_png
from mislabel.reports.summary import read_summary
from mislabel.reports.suspects import spreadsheet_safe
from mislabel.run_config import RunConfig
from mislabel.scoring.cleaning import clean_labels
from mislabel.scoring.scores import DEFAULT_DETECTOR, Detector, load_detectors
from mislabel.scoring.seeding import load_seeds
from mislabel.training.budget import (BudgetChoice, Clock, Workload, accuracy_note, minutes, plan_within_budget,
                                      scan_seconds)
from mislabel.training.crossval import load_pred_probs
from mislabel.training.plan import Plan, backbone_plan, candidate_plans, default_plan
from mislabel.training.probe import backbone_side, probe_features_cached

__all__ = ["IssueFinder", "IssueResult", "UsableFiles", "find_issues", "KEY_FILE",
           "RECORD_FILE"]

KEY_FILE = "find_issues_key.json"   # in the phase-1 folder: which data and settings produced it
RECORD_FILE = "find_issues.json"    # in the output folder: the request, the plan, the summary
DATALAB_FILE = "datalab_issues.csv"  # in the output folder: the ranking in cleanlab Datalab's schema
PHASE1_FOLDER = "phase1"             # in the output folder: the phase-1 run and a probe's cached features


@dataclass
class IssueResult:
    """What a find_issues run gives back: the output folder, the suspects table (suspects.csv's rows,
    most suspicious first) and the one-line summary."""

    out: Path
    table: pd.DataFrame
    summary: str


@dataclass
class UsableFiles:
    """The request's decodable files: the keep masks of (train, test) over the listing, the kept
    training files (phase 1's rows: dynamics index i is ``train_files[i]``) and the skipped files
    (relative path -> why)."""

    keep: tuple[np.ndarray, np.ndarray]
    train_files: list[str]
    skipped: dict[str, str]


class IssueFinder:
    """One find_issues request, step by step (module docstring); ``run`` does them all. The device
    (joining torchrun's process group, if any) and the detectors are set up at construction: every
    later step reads them, and a bad detector file is refused before any work."""

    def __init__(self, options: IssueOptions, clock: Clock | None = None) -> None:
        self.options, self.clock = options, clock or Clock()
        self.device = distributed.start(pick_device(options.run.device))
        self.detectors, self.detector_note = self._detectors()
        if options.run.backbone is not None:  # missing or mismatched weights: refused before anything is written
            load_backbone(options.run.backbone, options.run.backbone_weights)

    # --- the pipeline ---------------------------------------------------------------------------
    def run(self) -> IssueResult | None:
        """The whole request; None on the ranks other than 0 under torchrun (they only train)."""
        o = self.options
        listing = list_data(o.data, o.run.seed, o.allow_outside)
        listed = np.bincount(listing.train_labels, minlength=len(listing.class_names))
        if (listed == 0).any():  # a CSV's integer labels may skip an index
            empty = listing.class_names[int(np.argmax(listed == 0))]
            raise UserError(f"class {empty!r} has no training images in {listing.root}; add images or renumber "
                            "the labels without gaps")
        out = Path(o.out) if o.out else Path(o.run.results_dir) / "find_issues" / listing.name
        earlier = distributed.on_main(lambda: self._earlier_results(out))  # before the scan: other data
        unique = list(dict.fromkeys(listing.train_files + listing.test_files))
        scan = check_images(unique, out / SCAN_FILE)
        usable = self._usable(listing, unique, scan, out)
        median_side = int(np.median(scan.short_side[scan.ok]))
        choice = self._plan(listing, usable, len(unique), median_side, out)
        config = self._phase1_config(listing, choice.plan, out)
        self._refuse_other_phase1(out, earlier, config.td_dir)  # nothing is written before this
        key = self._run_key(listing, usable, choice.plan)
        must_train = distributed.on_main(lambda: _must_train(config.td_dir, key, config.overwrite))
        if distributed.is_main():
            print(f"recipe: {choice.plan.describe()} (for {len(usable.train_files)} images of median side "
                  f"{median_side}px; --net_type --depth --num_epochs --batch_size --lr --image_size --storage "
                  "override it)")
            print("\n".join(choice.lines))
        save_plan = functools.partial(self._save_plan, out, scan, choice)
        dyn, summary, seeds = self._phase1(listing, usable, choice, config, key, must_train, save_plan)
        if not distributed.is_main():
            return None
        held_out = load_pred_probs(config.td_dir, dyn)   # crossval_probs' held-out probabilities make the count
        scored = score_suspects(dyn, listing, usable.train_files, self.detectors, seeds,
                                None if held_out is None else held_out[0])
        return self._write(out, listing, usable, dyn, scored, choice, summary, config)

    def _detectors(self) -> tuple[list[Detector], str]:
        """Load every detector before any training, so a bad file costs seconds, not hours (on every
        rank under torchrun, so all of them refuse it alike)."""
        files = self.options.detector_files
        if files is None and not DEFAULT_DETECTOR.is_file():
            return [], f"no detector given and none at {DEFAULT_DETECTOR}: baselines only"
        paths = [DEFAULT_DETECTOR] if files is None else [Path(f) for f in files]
        return (load_detectors(paths, self.device),
                "detector" + ("s " if len(paths) > 1 else " ") + ", ".join(map(str, paths)))

    def _usable(self, listing: Listing, unique: list[str], scan: Scan, out: Path) -> UsableFiles:
        """The decodable files of each split and the skipped ones; refuses a class left without
        readable training images and a test split left empty."""
        ok = dict(zip(unique, scan.ok))
        failed = sorted(scan.failures)
        skipped = dict(zip(listing.relative([unique[i] for i in failed]), (scan.failures[i] for i in failed)))
        if skipped and distributed.is_main():
            shown = ", ".join(list(skipped)[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
            print(f"warning: skipping {len(skipped)} unreadable images ({shown}); listed in {out / 'skipped.txt'}",
                  file=sys.stderr)
        keep = (np.array([ok[f] for f in listing.train_files]), np.array([ok[f] for f in listing.test_files]))
        counts = np.bincount(listing.train_labels[keep[0]], minlength=len(listing.class_names))
        if (counts == 0).any():
            empty = int(np.argmax(counts == 0))
            unreadable = listing.relative([f for f, y in zip(listing.train_files, listing.train_labels)
                                           if y == empty and not ok[f]])
            raise UserError(f"class {listing.class_names[empty]!r} has no readable training images (unreadable: "
                            f"{', '.join(unreadable[:3])}{' ...' if len(unreadable) > 3 else ''}); replace its files "
                            "or remove the class")
        if not keep[1].any():
            raise UserError(f"no readable test images in {listing.root}; replace the unreadable files")
        return UsableFiles(keep, [f for f, k in zip(listing.train_files, keep[0]) if k], skipped)

    def _plan(self, listing: Listing, usable: UsableFiles, num_files: int, median_side: int,
              out: Path) -> BudgetChoice:
        """The recipe: the data's full one, or under a budget the best rung predicted to fit. A probe
        plan is priced without its extraction when the features cached in ``out`` are still valid."""
        o = self.options
        num_train = len(usable.train_files)
        full = default_plan(num_train, median_side)
        cached = False
        if o.run.backbone is not None:  # the user's choice: the ladder of from-scratch recipes is not used
            side = backbone_side(o.run.backbone, full.image_size, o.fixed.image_size)
            full = backbone_plan(num_train, side, o.run.backbone, o.run.mode, o.fixed)
            cached = full.mode == "probe" and probe_features_cached(
                image_data(listing, *usable.keep, side, False, o.hflip), o.run.backbone, side, o.run.backbone_weights,
                out / PHASE1_FOLDER)
        work = Workload(num_train=num_train, num_valid=0, num_test=int(usable.keep[1].sum()),
                        num_classes=len(listing.class_names), in_channels=3, side=full.image_size,
                        file_side=median_side, scored=num_train)
        candidates = [full] if full.backbone else candidate_plans(full, num_train, o.fixed)
        return plan_within_budget(candidates, work, str(self.device), o.budget,
                                  scan_seconds(num_files, median_side, str(self.device)), o.run.widen_factor,
                                  features_cached=cached)

    def _phase1_config(self, listing: Listing, plan: Plan, out: Path) -> RunConfig:
        """The Runner's configuration for this data and plan; phase 1 runs in
        ``<out>/phase1/<network><depth>_seed<seed>``."""
        run = self.options.run
        network = replace(run, net_type=plan.net_type, depth=plan.depth).network_name
        folder = out / PHASE1_FOLDER / f"{network}_seed{run.seed}"
        return replace(run, dataset=listing.name, net_type=plan.net_type, depth=plan.depth,
                       image_size=plan.image_size, td_folder=str(folder),
                       recipe=replace(run.recipe, epochs=plan.epochs, batch_size=plan.batch_size, lr=plan.lr))

    def _run_key(self, listing: Listing, usable: UsableFiles, plan: Plan) -> dict:
        """What must match for a phase-1 folder to be continued or reused: the data and every setting."""
        labels = listing.train_labels[usable.keep[0]]
        pairs = zip(listing.relative(usable.train_files), labels)
        digest = hashlib.sha256("\n".join(f"{f}\t{y}" for f, y in pairs).encode(
            "utf-8", "surrogateescape")).hexdigest()
        run = self.options.run
        # a from-scratch plan's key as before backbones existed (its backbone fields are None)
        recipe = {name: value for name, value in asdict(plan).items() if value is not None}
        weights = {} if run.backbone_weights is None else {"backbone_weights": os.path.abspath(run.backbone_weights)}
        seeding = {"seed_rate": self.options.seed_rate} if self.options.seed_rate else {}  # unseeded: keys as before
        return {"data": digest, "plan": recipe, **weights, **seeding, "seed": run.seed, "hflip": self.options.hflip,
                "momentum": run.recipe.momentum, "wd": run.recipe.weight_decay, "loss_type": run.recipe.loss_type,
                "widen_factor": run.widen_factor, "pretrained_path": run.pretrained_path, "td_mode": run.td_mode,
                "td_topk": run.td_topk}

    def _phase1(self, listing: Listing, usable: UsableFiles, choice: BudgetChoice, config: RunConfig, key: dict,
                must_train: bool, save_plan: Callable[[], None]) -> tuple[Dynamics | None, dict, Seeds | None]:
        """Train and record unless a finished run of this data and settings (``key``) is already there
        (``must_train`` False); the dynamics (rank 0), the run's summary and its seeds with the labels they
        replaced (None when unseeded). ``save_plan`` writes the first files into the output folder, once
        the last check that can refuse the request has passed."""
        plan, td_dir = choice.plan, config.td_dir
        if not must_train:
            if distributed.is_main():
                print(f"phase 1 already finished in {td_dir}; scoring it again")
                dyn = load_dynamics(td_dir)
                seeds = load_seeds(td_dir, dyn)
                save_plan()
                return dyn, read_summary(td_dir) or {}, seeds
            return None, {}, None
        data = image_data(listing, *usable.keep, plan.image_size, plan.in_memory, self.options.hflip)
        # builds the model (a foreign --pretrained_path is refused) and seeds --seed_rate of the labels, which
        # phase 1 trains on and saves beside its dynamics; every output shows the user's
        runner = Runner(config, data, device=self.device)
        save_plan()
        if distributed.is_main():
            write_record(td_dir / KEY_FILE, key, sort_keys=True)
        runner.train_for_td_computation(after_training=choice.estimate.after, keep_dynamics=True)
        if not distributed.is_main():
            return None, {}, None
        summary = read_summary(td_dir) or {}
        note = accuracy_note(choice.estimate.training, summary.get("train_seconds", 0.0))
        if note:
            print(note)
        return runner.recorded, summary, runner.seeds

    @staticmethod
    def _save_plan(out: Path, scan: Scan, choice: BudgetChoice) -> None:
        """scan.json (the scan's cache) and budget_plan.json (rank 0)."""
        if distributed.is_main():
            save_scan(out / SCAN_FILE, scan)
            choice.save(out)

    def _earlier_results(self, out: Path) -> dict | None:
        """The record of find_issues' finished results in ``out`` (None without one, or under
        --overwrite); refused at once when they were made from other data."""
        if self.options.run.overwrite:
            return None
        recorded = read_record(out / RECORD_FILE, "pass --overwrite to replace it, or another --out")
        data = (recorded or {}).get("arguments", {}).get("data")
        if data is not None and os.path.abspath(data) != os.path.abspath(self.options.data):
            raise UserError(f"{out} already holds the finished results of find_issues on {data}; pass --overwrite "
                            "to replace them, or another --out")
        return recorded

    @staticmethod
    def _refuse_other_phase1(out: Path, earlier: dict | None, td_dir: Path) -> None:
        """Results of this data from another phase-1 run (other settings) are not replaced without
        --overwrite; a rerun on the same data and phase-1 run only scores again."""
        phase1 = (earlier or {}).get("phase1")
        if phase1 is not None and phase1 != os.path.relpath(td_dir, out):
            raise UserError(f"{out} already holds the finished results of find_issues of another phase-1 run "
                            f"({out / phase1}; this command's is {td_dir}); pass --overwrite to replace them, or "
                            "another --out")

    # --- outputs ----------------------------------------------------------------------------------
    def _write(self, out: Path, listing: Listing, usable: UsableFiles, dyn: Dynamics, scored: ScoredRun,
               choice: BudgetChoice, summary: dict, config: RunConfig) -> IssueResult:
        """Every output, all or nothing: a failure leaves the previous set, not a mix."""
        o, plan, table = self.options, choice.plan, scored.table
        flagged_files = [usable.train_files[i] for i in dyn.indices[scored.flagged_rows]]
        weights = clean_labels(scored.summary, scored.flagged_rows, "downweight").weights[scored.flagged_rows]
        weighted = weights_table(listing, usable.keep, dict(zip(flagged_files, weights.tolist())))
        actions, action_notes = action_writes(out, cleaned_table(weighted, set(flagged_files)), weighted,
                                              relabel_table(scored.summary, listing.class_names, table, scored.order))
        flagged = len(scored.flagged_rows)
        fallback = "" if self.detectors else f" [{self.detector_note}]"
        measured = "" if scored.seeded is None else f"; {scored.seeded.describe()}"
        line = (f"find_issues: {len(table)} samples scored, {flagged} flagged (the {flagged:,} highest scores)"
                f"{fallback}{measured}; report: {out / 'report.html'}; took {minutes(self.clock.elapsed())}")
        accuracy = summary.get("test_accuracy")
        accuracy_label = ("held-out accuracy" if listing.held_out else
                          "accuracy on a 10% sample of the training images (in-sample: a sanity check)")
        budget = f"a {o.budget:g} min budget" if o.budget else "no budget (--budget 0: the full recipe)"
        settings = {"data": f"{listing.root} ({listing.layout})", "classes": str(len(listing.class_names)),
                    "samples scored": str(len(table)), "unreadable images skipped": str(len(usable.skipped)),
                    "recipe chosen": plan.reason(),
                    "recipe": f"{plan.describe()}, momentum {config.recipe.momentum}, wd {config.recipe.weight_decay}, "
                              f"flips {'on' if o.hflip else 'off'}",
                    "seed": str(config.seed), "scored by": self.detector_note,
                    "seeded flips": ("off (--seed_rate 0)" if scored.seeded is None else
                                     f"{o.seed_rate:.0%} of the labels trained on were changed on purpose (every "
                                     f"output shows yours); score used: {scored.seeded.choice.method} "
                                     f"({scored.seeded.choice.reason})"),
                    "threshold": f"the {flagged:,} highest scores ({scored.count.describe()})",
                    accuracy_label: "n/a" if accuracy is None else f"{accuracy:.2%}",
                    "phase-1 run": str(config.td_dir),
                    "time": f"{minutes(self.clock.elapsed())} (predicted {minutes(choice.estimate.total)} after the "
                            f"scan, for {budget})", **action_notes}
        what_to_do = advice(scored.count, len(table), listing.held_out, scored.seeded)
        record = {"summary": line, "advice": what_to_do, "settings": settings, "plan": asdict(plan), "flagged": flagged,
                  "estimated_wrong_labels": asdict(scored.count),
                  "seeded_check": None if scored.seeded is None else scored.seeded.record(),
                  "samples": len(table), "arguments": o.arguments(),
                  "predicted_seconds": round(choice.estimate.total, 1),
                  "seconds": round(self.clock.elapsed(), 1),
                  "phase1": os.path.relpath(config.td_dir, out)}  # relative: a copied --out folder stays itself
        # the same ranking in cleanlab Datalab's get_issues("label") schema, rows in training-list order
        datalab = datalab_table(table["given_label"], table["predicted_label"], table["score"], table["flagged"] == 1,
                                method="detector" if self.detectors else "aum", index=dyn.indices[scored.order])
        datalab["path"] = np.asarray(listing.relative(usable.train_files), dtype=object)[datalab.index]
        skipped_lines = "".join(f"{p}\t{r}".replace("\n", "\\n") + "\n" for p, r in usable.skipped.items())
        datamap = datamap_png(dyn)  # one picture: datamap.png and the report's copy

        def report(tmp: str) -> None:
            write_report(Path(tmp), title=f"Label issues in {listing.name}", summary=line, advice=what_to_do,
                         settings=settings, table=table, root=listing.root, top=o.report_top, datamap=datamap,
                         threshold=_lowest_flagged(table), skipped=list(usable.skipped))

        atomic_write_all({out / "skipped.txt": lambda tmp: Path(tmp).write_text(skipped_lines, encoding="utf-8",
                                                                                errors="surrogateescape"),
                          out / "suspects.csv": lambda tmp: spreadsheet_safe(table).to_csv(tmp, index=False,
                                                                                           float_format="%.6f"),
                          out / DATALAB_FILE: lambda tmp: spreadsheet_safe(datalab).to_csv(tmp, index_label="index",
                                                                                            float_format="%.6f"),
                          **actions, out / "datamap.png": lambda tmp: Path(tmp).write_bytes(datamap),
                          out / "report.html": report,
                          out / RECORD_FILE: lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2) + "\n")})
        return IssueResult(out=out, table=table, summary=line)


def _lowest_flagged(table: pd.DataFrame) -> float:
    """The score at which flagging stops (the report's histogram line): the lowest flagged score,
    above every score when nothing is flagged."""
    flagged = table["score"][table["flagged"] == 1]
    return float(flagged.min()) if len(flagged) else float(table["score"].max()) + 1e-9


def _must_train(td_dir: Path, key: dict, overwrite: bool) -> bool:
    """Whether phase 1 must run (or continue) in ``td_dir``: not when a finished run of this data
    and these settings is there; one of other settings is refused. Drops it under ``overwrite``."""
    if overwrite and td_dir.exists():
        shutil.rmtree(td_dir)
    stored = read_record(td_dir / KEY_FILE, "pass --overwrite to train phase 1 again")
    if stored is not None and stored != key:
        changed = sorted(k for k in key if stored.get(k) != key[k])
        raise UserError(f"{td_dir} holds a phase-1 run of other {' and '.join(changed)}; rerun that command, "
                        "pass --overwrite to train again, or --out elsewhere")
    return stored is None or read_summary(td_dir) is None


def find_issues(data: str | os.PathLike, **settings) -> pd.DataFrame:
    """Rank every image of ``data`` (a folder of ``<class>/<image>``, ``train/`` + ``val|test/``, or a
    CSV of ``path,label``) by how likely its label is wrong, and write the outputs to ``out``.

    :param settings: find_issues' flags by name, e.g. ``out="audit"``, ``budget=5`` (minutes; 0 =
        the full recipe), ``detector_files=[...]``, ``net_type="lenet"``, ``no_hflip=True``, ``seed=1``.
    :returns: the suspects table (suspects.csv's rows), most suspicious first; ``table.attrs``
        holds ``out`` (the output folder) and ``summary`` (the one-line summary).
    :raises ValueError: (``UserError``) on bad settings or data, naming the problem and the fix.
    """
    with distributed.stopped_after():
        result = IssueFinder(issue_options(data, **settings)).run()
    if result is None:
        return pd.DataFrame()
    result.table.attrs.update(out=str(result.out), summary=result.summary)
    return result.table
