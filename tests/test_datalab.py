"""to_datalab gives what cleanlab's own Datalab gives for the same labels: the same columns, dtypes
and row index; label scores follow the documented rules, flags are rank()'s estimated count."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import mislabel
from mislabel import Recorder, rank, to_datalab
from mislabel.core.user_input import UserError
from mislabel.reports.datalab import COLUMNS, datalab_table

Datalab = pytest.importorskip("cleanlab.datalab.datalab").Datalab

SAMPLES, CLASSES, EPOCHS = 40, 3, 6


@pytest.fixture(scope="module")
def ranked():
    """A rank() table of a small recorded run whose last ten labels disagree with the data."""
    generator = torch.Generator().manual_seed(0)
    truth = torch.arange(SAMPLES) % CLASSES
    labels = truth.clone()
    labels[-10:] = (truth[-10:] + 1) % CLASSES
    recorder = Recorder(SAMPLES, CLASSES, EPOCHS)
    for epoch in range(EPOCHS):
        logits = 3 * torch.nn.functional.one_hot(truth, CLASSES) + torch.randn(SAMPLES, CLASSES, generator=generator)
        logits[-10:] += epoch * torch.nn.functional.one_hot(labels[-10:], CLASSES)   # memorised late
        for rows in torch.randperm(SAMPLES, generator=generator).split(16):
            recorder.update(logits[rows], labels[rows], rows)
        recorder.next_epoch()
    return rank(recorder, methods=("detector", "aum")), labels.numpy()


def cleanlab_issues(given_labels):
    """What cleanlab's Datalab reports for these labels (the probabilities do not matter here)."""
    probs = np.random.default_rng(0).dirichlet(np.ones(CLASSES), len(given_labels))
    lab = Datalab(data={"label": given_labels}, label_name="label", verbosity=0)
    lab.find_issues(pred_probs=probs, issue_types={"label": {}})
    return lab.get_issues("label")


def assert_same_schema(ours, theirs) -> None:
    assert list(ours.columns) == list(theirs.columns) == list(COLUMNS)
    assert ours.dtypes.to_dict() == theirs.dtypes.to_dict()
    assert ours.index.equals(theirs.index) and type(ours.index) is type(theirs.index)


def test_the_schema_is_datalabs_and_the_rules_hold(ranked):
    table, labels = ranked
    ours = to_datalab(table)
    theirs = cleanlab_issues(labels)
    assert_same_schema(ours, theirs)
    assert (ours["given_label"] == theirs["given_label"]).all()          # rows in sample order, as Datalab's
    by_index = table.set_index("index").sort_index()
    assert np.allclose(ours["label_score"], 1 - by_index["detector"])
    # the flags are rank()'s: the detector's top rows, as many as the run's estimated count
    count = table.attrs["estimated_wrong_labels"]["estimate"]
    assert 0 < count == int(table["flagged"].sum()) == int(ours["is_label_issue"].sum())
    assert (ours["is_label_issue"] == by_index["flagged"]).all()
    assert np.array_equal(ours["predicted_label"], by_index["predicted_label"])
    assert ours["is_label_issue"].iloc[-10:].mean() > ours["is_label_issue"].iloc[:-10].mean()

    by_aum = to_datalab(table, method="aum")
    assert_same_schema(by_aum, theirs)
    assert ((by_aum["label_score"] > 0) & (by_aum["label_score"] < 1)).all()
    assert int(by_aum["is_label_issue"].sum()) == count        # as many, AUM's own top rows
    issues = by_aum["is_label_issue"]
    assert by_aum["label_score"][issues].max() <= by_aum["label_score"][~issues].min()


def test_class_names_and_dataset_indices(ranked):
    names = np.array(["cat", "dog", "fox"])
    given, predicted = names[ranked[1]], names[(ranked[1] + 1) % CLASSES]
    flags = np.linspace(0, 1, SAMPLES) > 0.8
    ours = datalab_table(given, predicted, np.linspace(0, 1, SAMPLES), flags, method="control")
    assert_same_schema(ours, cleanlab_issues(given))
    assert (ours["is_label_issue"].to_numpy() == flags).all()
    shuffled = np.random.default_rng(1).permutation(SAMPLES)
    subset = datalab_table(given, predicted, np.linspace(0, 1, SAMPLES), flags, index=100 + shuffled)
    assert list(subset.index) == list(range(100, 100 + SAMPLES))                    # sorted by dataset index
    assert list(subset["given_label"]) == list(given[np.argsort(shuffled)])


def test_bad_input_is_refused_naming_it(ranked):
    table = ranked[0]
    with pytest.raises(UserError, match="no 'confidence' column"):
        to_datalab(table, method="confidence")
    with pytest.raises(UserError, match="no Datalab label rule"):
        to_datalab(table.assign(confidence=0.0), method="confidence")
    with pytest.raises(UserError, match="none of the columns"):
        to_datalab(table.drop(columns=["detector", "aum"]))
    assert mislabel.to_datalab is to_datalab
