"""suspects.csv, the one table of suspects, and the vocabulary every table of scores uses.

    rank             1 = most suspicious
    index | path     the sample: its dataset index (phase 3 on a named dataset) or its file (find_issues)
    given_label      the label the sample carries in the training data (the user's label; with
                     synthetic noise, the noisy one)
    predicted_label  the class the model gave the highest mean probability over training: the given
                     label or the most probable other class (``SampleSummary.predicted``; the model's
                     belief before it memorised a wrong label; the last epoch often just repeats the
                     given label)
    score            higher = more likely mislabeled (a detector's score, else -AUM)
    flagged          1 for the top rows, as many as the run's estimated number of wrong labels
                     (``mislabel.scoring.count``; denoise: the rows it acted on)
    true_label       only where it is known (synthetic noise)
    ...              find_issues adds one column per method (``lstm:<name>``, control, baselines)

``rank()``'s table (``mislabel.api``) and compare's scores.csv use the same names for the same things.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mislabel.core.dynamics import Dynamics
from mislabel.data.image_files import quote_cell
from mislabel.scoring.count import flag_first
from mislabel.scoring.summary import SampleSummary

__all__ = ["suspects_table", "written", "spreadsheet_safe"]


def written(values: np.ndarray) -> np.ndarray:
    """Scores as suspects.csv prints them (6 decimals; + 0.0: no -0), so ranks and flags agree with
    the printed numbers."""
    return np.round(np.asarray(values, dtype=np.float64), 6) + 0.0


def suspects_table(dyn: Dynamics, summary: SampleSummary, score: np.ndarray, flagged: np.ndarray | int,
                   sample: tuple[str, Sequence], class_names: Sequence[str] | None = None,
                   methods: Mapping[str, np.ndarray] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """suspects.csv's rows, most suspicious first, and the order (table row -> dynamics row).

    :param summary: the run's per-sample summary (``mislabel.scoring.summary``): the predicted labels.
    :param flagged: bool per row of ``dyn`` (denoise: the rows it acted on), or a count: the table's
        first rows, in the order of the printed scores.
    :param sample: the id column, ``("index", ids)`` or ``("path", paths)``, aligned to ``dyn``'s rows.
    :param class_names: labels are written as these names (find_issues), else as class ids.
    :param methods: extra score columns, aligned to ``dyn``'s rows.
    """
    def label(ids: np.ndarray) -> np.ndarray:
        return ids if class_names is None else np.asarray(class_names, dtype=object)[ids]

    columns = {sample[0]: np.asarray(sample[1], dtype=object if sample[0] == "path" else None),
               "given_label": label(dyn.assigned), "predicted_label": label(summary.predicted),
               "score": written(score)}
    order = np.argsort(-columns["score"], kind="stable")
    columns["flagged"] = (flag_first(order, flagged) if np.ndim(flagged) == 0 else np.asarray(flagged)).astype(np.int8)
    if dyn.true_labels is not None:
        columns["true_label"] = label(dyn.true_labels)
    columns.update({name: written(values) for name, values in (methods or {}).items()})
    table = pd.DataFrame(columns).iloc[order].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table, order


def spreadsheet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every text cell that a spreadsheet would run as a formula quoted (``quote_cell``):
    for the CSVs made to be opened by people (suspects.csv, relabel.csv, cleaned.csv). Reading them
    back with find_issues (a CSV list) removes the quote again."""
    text = [name for name in table.columns if not pd.api.types.is_numeric_dtype(table[name])]
    return table.assign(**{name: table[name].map(quote_cell) for name in text})
