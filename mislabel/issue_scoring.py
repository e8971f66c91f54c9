"""find_issues' scoring: a finished phase-1 run in, suspects.csv's table and what the outputs need out.

Kept apart from ``mislabel.issue_finder`` (the pipeline's steps and files) because a seeded run
(``--seed_rate``, ``mislabel.scoring.seeding``) is scored in two views: the labels it trained on, for the
count, the choice of score and the measured recall, and the user's own labels, for everything written.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mislabel.core.dynamics import Dynamics
from mislabel.data.user_data import Listing
from mislabel.reports.suspects import suspects_table
from mislabel.scoring.baselines import BASELINES
from mislabel.scoring.count import NoisyCount, estimate_on_rows
from mislabel.scoring.scores import DEFAULT_CONTROL, Detector, score
from mislabel.scoring.seeding import (SEEDED_CANDIDATES, SeededCheck, Seeds, choose_score, flag_line,
                                      original_label_view, place_seeded, seeded_check, seeded_rows)
from mislabel.scoring.summary import SampleSummary, scoring_view

__all__ = ["ScoredRun", "Seeds", "score_suspects"]


@dataclass
class ScoredRun:
    """The scored run: suspects.csv's table (most suspicious first), ``order`` (table row -> dynamics
    row), the count that set the flags, the run's per-sample summary and the flagged dynamics rows,
    most suspicious first."""

    table: pd.DataFrame
    order: np.ndarray
    count: NoisyCount
    summary: SampleSummary
    flagged_rows: np.ndarray
    seeded: SeededCheck | None = None   # what the seeds measured, when the run was seeded


def score_suspects(dyn: Dynamics, listing: Listing, files: list[str], detectors: list[Detector],
                   seeds: Seeds | None = None, pred_probs: np.ndarray | None = None) -> ScoredRun:
    """suspects.csv (``mislabel.reports.suspects``) for the user's files (``files[i]``: dynamics index
    i): the detectors' mean score when there are detectors, else -AUM; every method as a column. The
    flagged rows are the run's estimated number of wrong labels (``mislabel.scoring.count``), most
    suspicious first. The run's summary is computed once here, for the count, the gate, the actions
    and the table; ``pred_probs`` (the run's held-out probabilities, rows as the dynamics', when it has
    them: ``crossval_probs``) make the count instead of the dynamics, as for denoise.

    ``seeds`` (the labels ``--seed_rate`` changed and the user's labels they replaced): the count is
    made on the other rows, the seeds may overrule the score (``choose_score``) and measure the flagged
    set's recall (``SeededCheck``); then every seeded row goes back to the user's label
    (``original_label_view``) and takes the place its label's confidence gives it (``place_seeded``),
    so it is judged, flagged and acted on as the user's own label."""
    # the learned control is a column beside the baselines it combines
    methods = [*(["control"] if DEFAULT_CONTROL.is_file() else []), *BASELINES]
    epochs, summary = scoring_view(dyn)
    rows = None if seeds is None or not len(seeds[0].indices) else seeded_rows(dyn.indices, seeds[0].indices)
    unseeded = np.arange(dyn.num_samples) if rows is None else np.setdiff1d(np.arange(dyn.num_samples), rows)
    count = estimate_on_rows(epochs, summary, None if rows is None else unseeded, pred_probs)
    scored = score(epochs, methods, detectors, count=count.estimate, summary=summary)
    baselines = {result.name: result.scores for result in scored[:len(methods)]}
    probs = {result.name: result.scores for result in scored[len(methods):]}
    suspicion = np.mean(list(probs.values()), axis=0) if probs else baselines["aum"]
    paths = np.asarray(listing.relative(files), dtype=object)[dyn.indices]
    check, flagged, columns = None, count.estimate, {**probs, **baselines}
    if rows is not None:
        default = "detector" if probs else "aum"
        kinds = seeds[0].kinds
        choice = choose_score({default: suspicion, **{name: baselines[name] for name in SEEDED_CANDIDATES}}, rows,
                              kinds, default)
        suspicion = suspicion if choice.method == default else baselines[choice.method]
        line = flag_line(suspicion, unseeded, count.estimate)
        check = seeded_check(choice, suspicion, rows, kinds, line)
        original = seeds[1][np.searchsorted(seeds[0].indices, dyn.indices[rows])]
        dyn, user = original_label_view(epochs, summary, rows, original)
        believed = user.given_probability[rows]   # every score column ranks the seeds by the user's labels alike
        suspicion = place_seeded(suspicion, rows, believed)
        columns = {name: place_seeded(values, rows, believed) for name, values in columns.items()}
        flagged, summary = suspicion >= line, user
    table, order = suspects_table(dyn, summary, suspicion, flagged, ("path", paths), listing.class_names, columns)
    if rows is not None:
        table["seeded"] = np.isin(order, rows).astype(np.int8)
    return ScoredRun(table=table, order=order, count=count, summary=summary,
                     flagged_rows=order[table["flagged"].to_numpy() == 1], seeded=check)
