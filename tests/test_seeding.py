"""Seeded flips: the labels they change, the score they choose, and rank(seeded=) on a recorded run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from conftest import refused
from mislabel import Recorder, rank, seed_flips
from mislabel.core.user_input import UserError
from mislabel.scoring.seeding import MIN_SEEDS, SEED_KINDS, choose_score, proxy_features, seeded_rows


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    return bunch.images.reshape(len(bunch.target), -1).astype(np.float32), bunch.target.astype(np.int64)


def test_seed_flips_changes_the_asked_share_in_two_kinds_deterministically(digits):
    images, labels = digits
    new, rows, kinds = seed_flips(labels, rate=0.05, seed=3, features=images)
    assert len(rows) == round(0.05 * len(labels)) and np.all(np.diff(rows) > 0)
    assert np.array_equal(np.flatnonzero(new != labels), rows)       # every seed changes its label, nothing else
    assert sorted(np.bincount(kinds, minlength=2)) == [len(rows) // 2, len(rows) - len(rows) // 2]
    again = seed_flips(labels, rate=0.05, seed=3, features=images)
    assert all(np.array_equal(a, b) for a, b in zip(again, (new, rows, kinds)))
    assert not np.array_equal(seed_flips(labels, rate=0.05, seed=4, features=images).indices, rows)
    assert np.array_equal(labels, load_digits().target)               # the caller's labels are left alone


def test_ambiguous_seeds_go_to_the_look_alike_class_and_sit_between_classes(digits):
    images, labels = digits
    new, rows, kinds = seed_flips(labels, rate=0.1, seed=0, features=images)
    proxy = proxy_features(images, 0)
    centroids = np.stack([proxy[labels == c].mean(axis=0) for c in range(10)])
    distances = ((proxy[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    hard = rows[kinds == SEED_KINDS.index("ambiguous")]
    distances[hard, labels[hard]] = np.inf
    assert np.array_equal(new[hard], distances[hard].argmin(axis=1))
    # drawn towards images between two classes: closer to their look-alike than random seeds are
    easy = rows[kinds == SEED_KINDS.index("random")]
    own = ((proxy - centroids[labels]) ** 2).sum(axis=1)
    assert np.median(own[hard] / distances[hard].min(axis=1)) > np.median(own[easy] / np.sort(
        ((proxy[easy, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)[:, 1])


def test_without_features_every_seed_is_random_and_rate_zero_changes_nothing(digits):
    _, labels = digits
    new, rows, kinds = seed_flips(labels, rate=0.03)
    assert len(rows) == round(0.03 * len(labels)) and not kinds.any() and np.all(new[rows] != labels[rows])
    new, rows, kinds = seed_flips(labels, rate=0)
    assert np.array_equal(new, labels) and len(rows) == len(kinds) == 0


@pytest.mark.parametrize("rate", [-0.1, 0.5, float("nan"), "many", True])
def test_a_bad_rate_or_labels_is_refused_in_one_line(digits, rate):
    refused(lambda: seed_flips(digits[1], rate=rate), "seed rate must be a number in [0, 0.2]")
    refused(lambda: seed_flips(np.array([0.5, 1.0])), "labels must be a 1-D array")
    refused(lambda: seed_flips(digits[1], features=np.full_like(digits[0], np.nan)), "NaN or inf")


def test_choose_score_takes_a_clear_winner_on_both_kinds_and_keeps_the_default_otherwise():
    rng = np.random.default_rng(0)
    seeds, kinds = np.arange(40), np.repeat([0, 1], 20)
    truth = np.zeros(1000)
    truth[seeds] = 1
    sharp, blunt = truth * 3 + rng.normal(size=1000), truth * 0.3 + rng.normal(size=1000)
    choice = choose_score({"default": blunt, "sharp": sharp}, seeds, kinds, default="default")
    assert choice.method == "sharp" and set(choice.seed_auc["sharp"]) == set(SEED_KINDS)
    # winning on the easy kind alone is not enough: the worse kind decides
    easy_only = blunt.copy()
    easy_only[seeds[kinds == 0]] += 10
    assert choose_score({"default": blunt, "easy_only": easy_only}, seeds, kinds, "default").method == "default"
    assert choose_score({"default": sharp, "other": sharp + 1e-9}, seeds, kinds, "default").method == "default"
    some = np.r_[0:MIN_SEEDS - 1, 20:20 + MIN_SEEDS - 1]    # too few of each kind to judge by
    few = choose_score({"default": blunt, "sharp": sharp}, seeds[some], kinds[some], "default")
    assert few.method == "default" and "fewer than" in few.reason


def test_seeded_rows_refuses_ids_outside_the_run_and_repeats():
    indices = np.array([5, 3, 9, 7])
    assert np.array_equal(seeded_rows(indices, np.array([9, 3])), [2, 1])
    with pytest.raises(UserError, match="seeded index 4 is not a sample of this run"):
        seeded_rows(indices, np.array([4]))
    with pytest.raises(UserError, match="repeats an index"):
        seeded_rows(indices, np.array([3, 3]))
    with pytest.raises(UserError, match="1-D sequence"):
        seeded_rows(indices, np.array([1.5]))


def test_rank_with_seeds_marks_them_never_flags_them_and_measures_recall(digits, tmp_path):
    images, true = digits
    rng = np.random.default_rng(1)
    noisy = np.where(rng.random(len(true)) < 0.2, (true + rng.integers(1, 10, len(true))) % 10, true)
    seeds = seed_flips(noisy, rate=0.03, seed=1, features=images)
    x, y = torch.from_numpy(images / 16), torch.from_numpy(seeds.labels)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    recorder = Recorder(len(y), 10, 12)
    for _ in range(12):
        for rows in torch.randperm(len(y), generator=torch.Generator().manual_seed(0)).split(64):
            logits = model(x[rows])
            optimizer.zero_grad()
            F.cross_entropy(logits, y[rows]).backward()
            optimizer.step()
            recorder.update(logits, y[rows], rows)
        recorder.next_epoch()
    recorder.save(tmp_path / "run", true_labels=true)
    table = rank(tmp_path / "run", seeded=seeds)
    assert table["seeded"].sum() == len(seeds.indices)
    assert set(table.loc[table["seeded"], "index"]) == set(seeds.indices)
    assert not table.loc[table["seeded"], "flagged"].any()
    assert table["score"].is_monotonic_decreasing
    info = table.attrs["seeded"]
    assert info["chosen_score"] in table.attrs["metrics"] and 0.5 < info["recall"] <= 1.0
    assert set(info["seeds"]) == set(SEED_KINDS) and sum(info["seeds"].values()) == len(seeds.indices)
    lowest = table.loc[table["flagged"], "score"].min()
    assert sum(info["found"].values()) == (table.loc[table["seeded"], "score"] >= lowest).sum()
    unseeded = ~table["seeded"]
    assert table.loc[unseeded, "flagged"].sum() == table.attrs["estimated_wrong_labels"]["estimate"]
    # bare indices work too (one kind); an index of another run is refused
    assert rank(tmp_path / "run", seeded=seeds.indices).attrs["seeded"]["seeds"]["random"] == len(seeds.indices)
    with pytest.raises(UserError, match="not a sample of this run"):
        rank(tmp_path / "run", seeded=[len(true) + 5])
