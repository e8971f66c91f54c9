"""generate_td --seed_rate: a run that trains on seeded flips, saves them in its own folder, and checks
itself through that folder (rank, compare)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import RUN_SUBDIR, TINY, refused, run_python
from mislabel import compare, rank
from mislabel.core.dynamics import load_dynamics
from mislabel.run_config import RunConfig
from mislabel.scoring.seeding import SEED_KINDS, SEEDS_FILE


def test_a_bad_seed_rate_is_refused_with_the_same_line_by_both_doors(tmp_path):
    api = refused(lambda: RunConfig(seed_rate=0.5, results_dir=str(tmp_path)), "seed rate must be a number in [0, 0.2]")
    command = refused(run_python("runner.py", "generate_td", *TINY, "--seed_rate", "0.5", "--results_dir",
                                 str(tmp_path)), unchanged=[tmp_path])
    assert command == api
    refused(run_python("runner.py", "generate_td", *TINY, "--seed_rate", "lots"), "--seed_rate", "is not a number")


def test_seeds_name_their_own_folder_and_default_to_none():
    assert RunConfig().seed_rate == 0.0 and "seeded" not in RunConfig().td_dir.as_posix()
    assert RunConfig(seed_rate=0.03).experiment_dir.name == "digits_resnet32_percmislabeled0.2_uniform_seeded0.03"


@pytest.mark.slow
def test_generate_td_with_a_seed_rate_checks_itself_through_its_folder(tmp_path):
    """The seeds change only the training rows' noisy labels; rank and compare read them from the folder."""
    seeded_dir = RUN_SUBDIR.parent.with_name(RUN_SUBDIR.parent.name + "_seeded0.05") / RUN_SUBDIR.name
    for flags, results in (([], tmp_path / "plain"), (["--seed_rate", "0.05"], tmp_path / "seeded")):
        done = run_python("runner.py", "generate_td", *TINY, *flags, "--results_dir", str(results))
        assert done.returncode == 0, done.stderr
    plain, folder = tmp_path / "plain" / RUN_SUBDIR, tmp_path / "seeded" / seeded_dir
    assert not (plain / SEEDS_FILE).exists() and (folder / SEEDS_FILE).is_file()
    dyn, noisy = load_dynamics(folder), load_dynamics(plain)
    seeds = np.load(folder / SEEDS_FILE)
    rows = np.searchsorted(dyn.indices, seeds["indices"])
    changed = np.flatnonzero(dyn.assigned != noisy.assigned)
    assert np.array_equal(dyn.indices, noisy.indices) and set(changed) <= set(rows)
    assert np.array_equal(seeds["original"], noisy.assigned[rows]) and (seeds["original"] != dyn.assigned[rows]).all()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["seed_rate"] == 0.05 and summary["num_seeded"] == len(rows) == round(0.05 * dyn.num_samples)

    table = rank(folder)   # seeded=None: the folder's seeds
    check = table.attrs["seeded"]
    assert sum(check["seeds"].values()) == len(rows) and set(check["seeds"]) == set(SEED_KINDS)
    assert set(table.loc[table["seeded"], "index"]) == set(seeds["indices"])
    assert not table.loc[table["seeded"], "flagged"].any()
    real = table["flipped"] & ~table["seeded"]
    lowest = table.loc[table["flagged"], "score"].min()
    assert check["flipped_recall"] == pytest.approx((table.loc[real, "score"] >= lowest).mean())
    assert "seeded" not in rank(plain).attrs

    comparison = compare(folder)
    assert f"{len(rows)} labels were changed on purpose" in comparison.markdown
    with open(folder / "scores.csv") as handle:
        header = handle.readline().strip().split(",")
    marked = np.loadtxt(folder / "scores.csv", delimiter=",", skiprows=1, usecols=[header.index("seeded")])
    assert marked.sum() == len(rows)
    unseeded = np.setdiff1d(np.arange(dyn.num_samples), rows)
    assert f"k = {int(dyn.flipped[unseeded].sum())} flipped labels" in comparison.markdown
