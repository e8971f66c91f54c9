"""--budget: a tiny budget picks a cheaper recipe from the ladder, a finished run reports its time,
find_issues writes cleaned.csv and relabel.csv, and a log (not a terminal) gets a line per epoch."""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import mislabel.commands.issues_budget as issues_budget
from conftest import PER_CLASS, refused, run_python, run_sh, write_digit_folders
from mislabel.training.budget import Clock
from mislabel.training.plan import LADDER, default_plan
from mislabel.models import NETWORKS

FIRST_DEPTH = {name: depths[0] for name, depths in NETWORKS.items()}
FLAGS = dict(net_type=None, depth=None, num_epochs=None, batch_size=None, lr=None, image_size=None, storage="auto",
             widen_factor=None, device="cpu", seed=0, overwrite=False)


def _plan(tmp_path: Path, monkeypatch, budget: float, **flags):
    """plan_within_budget for 60,000 28 px images with step times faked: LeNet 0.01 s, ResNet-20
    0.2 s, ResNet-32 0.3 s, ResNet-18 1 s (ratios as on a 2-core CPU)."""
    fake = {("lenet", 5): 0.01, ("resnet", 20): 0.2, ("resnet", 32): 0.3, ("resnet", 18): 1.0}
    monkeypatch.setattr(issues_budget, "time_step", lambda net, depth, *rest: fake[(net, depth)])
    args = argparse.Namespace(**{**FLAGS, **flags, "budget": budget})
    full = default_plan(60_000, 28)
    return issues_budget.plan_within_budget(full, 60_000, 6_000, 10, 1e-4, args, FIRST_DEPTH, Clock(),
                                            tmp_path / f"out{budget}")


def test_a_smaller_budget_gives_a_smaller_plan(tmp_path, monkeypatch):
    full = _plan(tmp_path, monkeypatch, 0)
    assert (full.plan.net_type, full.plan.depth, full.plan.epochs) == ("resnet", 32, 20)
    assert full.estimate.per_epoch == pytest.approx(469 * 0.3)
    generous = _plan(tmp_path, monkeypatch, 400)    # the full recipe's ~47 min training fits
    assert generous.plan == full.plan
    medium = _plan(tmp_path, monkeypatch, 20)
    assert (medium.plan.net_type, medium.plan.epochs) == ("lenet", 20)   # capped at the full epochs
    assert medium.estimate.total < 20 * 60
    assert "the full recipe" in medium.lines[0] and "--budget 0" in medium.lines[0]
    tiny = _plan(tmp_path, monkeypatch, 0.1)
    assert (tiny.plan.net_type, tiny.plan.epochs) == (LADDER[0].net_type, LADDER[0].epochs)
    assert any(line.startswith("warning: even the cheapest") for line in tiny.lines)


def test_flags_fix_what_the_budget_may_choose(tmp_path, monkeypatch):
    choice = _plan(tmp_path, monkeypatch, 20, net_type="resnet", depth=20)
    assert (choice.plan.net_type, choice.plan.depth) == ("resnet", 20) and choice.plan.epochs < 20
    fixed = _plan(tmp_path, monkeypatch, 0.1, net_type="lenet", num_epochs=15)
    assert (fixed.plan.net_type, fixed.plan.epochs) == ("lenet", 15)


def test_a_rerun_keeps_the_stored_plan(tmp_path, monkeypatch):
    first = _plan(tmp_path, monkeypatch, 20)
    assert not (tmp_path / "out20").exists()           # nothing is stored before the command is sure to run
    first.save(tmp_path / "out20")
    monkeypatch.setattr(issues_budget, "time_step", lambda *a: pytest.fail("a rerun must not time again"))
    args = argparse.Namespace(**{**FLAGS, "budget": 20})
    again = issues_budget.plan_within_budget(default_plan(60_000, 28), 60_000, 6_000, 10, 1e-4, args, FIRST_DEPTH,
                                             Clock(), tmp_path / "out20")
    assert again.plan == first.plan and "first run" in again.lines[0]


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory) -> tuple[Path, set[str], subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("budget") / "digits"
    moved = write_digit_folders(root, seed=3)
    out = root.parent / "out"
    done = run_sh("find_issues", str(root), "--out", str(out), "--budget", "0.01", "--no_hflip", "--device", "cpu",
                  env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return out, moved, done


def test_a_tiny_budget_runs_the_cheapest_rung_and_reports_its_time(budget_run):
    """8 epochs (the ladder's shortest run) still rank the moved files well: the detector resamples
    any run length to its sequence input."""
    out, moved, done = budget_run
    assert "recipe: lenet5, 8 epochs" in done.stdout and "warning: even the cheapest" in done.stdout
    assert "predicted: " in done.stdout
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("find_issues: ") and " took " in last and last.endswith(" min")
    record = json.loads((out / "find_issues.json").read_text())
    assert record["seconds"] > 0 and record["predicted_seconds"] > 0 and record["plan"]["epochs"] == 8
    assert "predicted" in record["settings"]["time"]
    table = pd.read_csv(out / "suspects.csv", keep_default_na=False)
    assert roc_auc_score(table["path"].isin(moved), table["score"]) >= 0.8


def test_a_log_gets_one_line_per_epoch(budget_run):
    _, _, done = budget_run
    epochs = [line for line in done.stderr.splitlines() if line.startswith("phase 1: epoch")]
    assert [line.split(",")[0] for line in epochs] == [f"phase 1: epoch {e}/8" for e in range(1, 9)]
    assert all("command ETA" in line for line in epochs)
    assert "batch/s" not in done.stderr and "it/s" not in done.stderr


def test_cleaned_and_relabel_lists(budget_run):
    out, _, _ = budget_run
    suspects = pd.read_csv(out / "suspects.csv", keep_default_na=False, dtype={"given_label": str})
    cleaned = pd.read_csv(out / "cleaned.csv", keep_default_na=False, dtype={"label": str})
    relabel = pd.read_csv(out / "relabel.csv", keep_default_na=False,
                          dtype={"given_label": str, "suggested_label": str})
    flagged = suspects[suspects["flagged"] == 1]
    root = out.parent / "digits"
    assert list(cleaned.columns) == ["path", "label"] and len(cleaned) == 10 * PER_CLASS - len(flagged)
    listed = {str(Path(p).relative_to(root)) for p in cleaned["path"]}
    assert listed.isdisjoint(flagged["path"]) and listed | set(flagged["path"]) == set(suspects["path"])
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in cleaned["path"])
    assert all(Path(p).relative_to(root).parts[0] == label for p, label in zip(cleaned["path"], cleaned["label"]))
    assert list(relabel.columns) == ["rank", "path", "given_label", "suggested_label", "probability", "score"]
    assert relabel["path"].tolist() == flagged["path"].tolist() and relabel["rank"].tolist() == flagged["rank"].tolist()
    assert (relabel["suggested_label"] != relabel["given_label"]).all() and relabel["probability"].between(0, 1).all()
    page = (out / "report.html").read_text()
    assert "cleaned.csv" in page and "relabel.csv" in page


def test_budget_must_be_a_number_of_minutes(tmp_path):
    refused(run_sh("find_issues", str(tmp_path), "--budget", "-1"), "--budget")


@pytest.mark.slow   # a whole generate_td command
def test_generate_td_budget_trains_the_epochs_that_fit_and_reports_its_time(tmp_path):
    recipe = ["generate_td", "--dataset", "digits", "--net_type", "lenet", "--depth", "5", "--num_epochs", "400",
              "--device", "cpu", "--results_dir", str(tmp_path)]
    done = run_python("runner.py", *recipe, "--budget", "0.2")
    assert done.returncode == 0, done.stderr[-3000:]
    chosen = int(done.stdout.split(" an epoch here, so ")[1].split(" of 400")[0])
    assert 1 <= chosen < 400 and "took " in done.stdout.splitlines()[-1]
    run = tmp_path / "digits_lenet5_percmislabeled0.2_uniform" / "computation4td_seed0"
    assert json.loads((run / "summary.json").read_text())["epochs"] == chosen
    assert json.loads((run / "budget.json").read_text())["epochs"] == chosen
    refused(run_python("runner.py", *recipe, "--budget", "0"), "--budget")
