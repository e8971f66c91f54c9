"""Our scores in the schema of cleanlab's ``Datalab.get_issues("label")``, for tools that read it.

Datalab reports one row per sample, in dataset order (a ``RangeIndex``), with four columns:

    is_label_issue   bool     the sample is flagged
    label_score      float64  in [0, 1]; higher = a *better* (more likely correct) label
    given_label      the assigned label (int64 for integer labels, else the class names)
    predicted_label  the class the model predicts, of the same type

How our methods fill them (``LABEL_RULES``):

    detector, control   a score p in [0, 1], higher = more likely mislabeled (a gated detector's is a
                        ranking mapped onto (0, 1], not a probability): label_score = 1 - p
    aum                 the area under the margin A (the table holds -A): label_score = sigmoid(A)

``is_label_issue`` is suspects.csv's ``flagged``: the method's top rows, as many as the run's
estimated number of wrong labels (``mislabel.scoring.count``).

``to_datalab`` converts a ``rank()`` table (``given_label`` and ``predicted_label`` as
``mislabel.reports.suspects`` defines them); ``datalab_table`` builds the frame from per-sample
arrays, for callers holding those (find_issues: suspects.csv's columns, labels as class names).
``suspects.csv`` stays the native format; this is an export.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import expit

from mislabel.core.user_input import UserError
from mislabel.scoring.count import flag_first

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "LABEL_RULES", "datalab_table", "to_datalab"]

COLUMNS = ("is_label_issue", "label_score", "given_label", "predicted_label")


def _from_unit_score(scores: np.ndarray) -> np.ndarray:
    return 1.0 - scores


def _from_minus_aum(scores: np.ndarray) -> np.ndarray:
    return expit(-scores)


# method -> (its scores, higher = more suspicious) -> label_score
LABEL_RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "detector": _from_unit_score,
    "control": _from_unit_score,
    "aum": _from_minus_aum,
}


def _labels(values) -> pd.Series:
    """Integer labels as int64 (Datalab's dtype for them); class names as pandas infers strings."""
    import pandas as pd

    array = np.asarray(values)
    return pd.Series(array.astype(np.int64) if array.dtype.kind in "iu" else list(array))


def datalab_table(given_label, predicted_label, scores, flagged, method: str = "detector", index=None
                  ) -> pd.DataFrame:
    """The Datalab-schema frame of one method's scores.

    :param given_label: per sample, the assigned label (integers or class names).
    :param predicted_label: per sample, the model's class, of the same kind.
    :param scores: per sample, the method's score (higher = more likely mislabeled), as ``rank`` and
        ``score`` give it.
    :param flagged: per sample, whether it is flagged (``is_label_issue``).
    :param method: a key of ``LABEL_RULES``: how scores become ``label_score``.
    :param index: each sample's dataset index (default: 0, 1, ...); rows come out sorted by it, with
        a ``RangeIndex`` when the indices are 0..N-1, as Datalab's.
    """
    import pandas as pd

    if method not in LABEL_RULES:
        raise UserError(f"method {method!r} has no Datalab label rule; choose one of: {', '.join(LABEL_RULES)}")
    scores = np.asarray(scores, dtype=np.float64)
    count = len(scores)
    ids = np.arange(count) if index is None else np.asarray(index, dtype=np.int64)
    if ids.shape != (count,) or len(given_label) != count or len(predicted_label) != count or len(flagged) != count:
        raise UserError(f"datalab_table needs one given label, predicted label, flag and index per score ({count}); "
                        f"got {len(given_label)}, {len(predicted_label)}, {len(flagged)} and {len(ids)}")
    _check_values(scores, method, ids, {"given_label": given_label, "predicted_label": predicted_label})
    frame = pd.DataFrame({"is_label_issue": np.asarray(flagged, dtype=bool), "label_score": LABEL_RULES[method](scores),
                          "given_label": _labels(given_label), "predicted_label": _labels(predicted_label)})
    order = np.argsort(ids, kind="stable")
    frame = frame.iloc[order]
    frame.index = pd.RangeIndex(count) if np.array_equal(ids[order], np.arange(count)) else pd.Index(ids[order])
    return frame


def _check_values(scores: np.ndarray, method: str, ids: np.ndarray, labels: dict) -> None:
    """Refuse what would export as a wrong row: a NaN score or label, a probability outside [0, 1]
    (it would become a label_score outside [0, 1]), an index given twice or negative."""
    import pandas as pd

    if not np.isfinite(scores).all():
        raise UserError(f"the {method} scores hold {int((~np.isfinite(scores)).sum())} NaN or infinite values; "
                        "pass the scores mislabel.rank gives")
    if LABEL_RULES[method] is _from_unit_score and len(scores) and not (0 <= scores.min() and scores.max() <= 1):
        raise UserError(f"the {method} scores run from {scores.min():g} to {scores.max():g}, outside [0, 1]; pass "
                        "the scores mislabel.rank gives")
    if len(ids) and (ids.min() < 0 or len(np.unique(ids)) != len(ids)):
        raise UserError("the sample indices hold a negative or repeated value; pass each sample's dataset index once")
    for name, values in labels.items():
        if pd.isna(np.asarray(values, dtype=object)).any():
            raise UserError(f"{name} holds a missing value (NaN or None); pass one label per sample")


def to_datalab(table: pd.DataFrame, method: str | None = None) -> pd.DataFrame:
    """A ``rank()`` table in the schema of cleanlab's ``Datalab.get_issues("label")``, rows in sample
    index order.

    :param table: what ``mislabel.rank`` returns (columns ``index``, ``given_label``,
        ``predicted_label``, ``flagged`` and one per method).
    :param method: the score column to convert, a key of ``LABEL_RULES``; ``None``: ``detector`` when
        the table has it, else ``control``, else ``aum``. Its top rows are flagged, as many as the
        table flags (the run's estimated number of wrong labels).
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise UserError(f"table is a {type(table).__name__}, expected the DataFrame mislabel.rank returns")
    if method is None:
        method = next((name for name in LABEL_RULES if name in table.columns), None)
        if method is None:
            raise UserError(f"the table has none of the columns to_datalab converts ({', '.join(LABEL_RULES)}); "
                            "rank with one of those methods")
    elif method not in table.columns:
        raise UserError(f"the table has no {method!r} column; its columns are: {', '.join(map(str, table.columns))}")
    missing = [name for name in ("index", "given_label", "predicted_label", "flagged") if name not in table.columns]
    if missing:
        raise UserError(f"the table lacks {missing}; pass a table from mislabel.rank")
    scores = table[method].to_numpy()
    # the table may be sorted by another method: this one's order
    flagged = flag_first(np.argsort(-scores, kind="stable"), int(table["flagged"].sum()))
    return datalab_table(table["given_label"].to_numpy(), table["predicted_label"].to_numpy(), scores, flagged,
                         method, table["index"].to_numpy())
