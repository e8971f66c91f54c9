"""--budget: a tiny budget picks a cheaper recipe from the ladder, a finished run reports its time,
find_issues writes cleaned.csv and relabel.csv, and a log (not a terminal) gets a line per epoch."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from conftest import PER_CLASS, refused, run_python, run_sh, write_digit_folders
from mislabel.training import budget
from mislabel.training.plan import LADDER, PlanOverrides, candidate_plans, default_plan

FASHION = budget.Workload(num_train=60_000, num_valid=0, num_test=6_000, num_classes=10, in_channels=3, side=32,
                          file_side=28, scored=60_000)


def _plan(minutes: float, **fixed) -> budget.BudgetChoice:
    """plan_within_budget for 60,000 28 px images (Fashion-MNIST's size) on this CPU's cost table."""
    full = default_plan(60_000, 28)
    return budget.plan_within_budget(candidate_plans(full, 60_000, PlanOverrides(**fixed)), FASHION, "cpu", minutes,
                                     budget.scan_seconds(66_000, 28, "cpu"))


def test_a_smaller_budget_gives_a_smaller_plan():
    full = _plan(0)
    assert (full.plan.net_type, full.plan.depth, full.plan.epochs) == ("resnet", 32, 20)
    assert _plan(100_000).plan == full.plan      # a budget the full recipe fits in picks it
    medium = _plan(20)
    assert medium.plan != full.plan and medium.estimate.total <= budget.SAFETY * 20 * 60
    assert "the full recipe" in medium.lines[0] and "--budget 0" in medium.lines[0]
    tiny = _plan(0.1)
    assert (tiny.plan.net_type, tiny.plan.epochs) == (LADDER[0].net_type, LADDER[0].epochs)
    assert any(line.startswith("warning: even the cheapest") for line in tiny.lines)


def test_flags_fix_what_the_budget_may_choose():
    choice = _plan(20, net_type="resnet", depth=20)
    assert (choice.plan.net_type, choice.plan.depth) == ("resnet", 20)
    fixed = _plan(0.1, net_type="lenet", epochs=15)
    assert (fixed.plan.net_type, fixed.plan.epochs) == ("lenet", 15)


def test_the_plan_depends_on_the_data_and_device_not_on_the_load(monkeypatch):
    """The choice comes from counted FLOPs and the cost table: the clock is never read, so a busy
    machine cannot change it."""
    first = _plan(20)
    monkeypatch.setattr(budget.time, "perf_counter", lambda: pytest.fail("the plan must not time anything"))
    monkeypatch.setattr(budget.time, "monotonic", lambda: pytest.fail("the plan must not read the clock"))
    again = _plan(20)
    assert json.dumps(again.record, sort_keys=True) == json.dumps(first.record, sort_keys=True)
    assert again.lines == first.lines


def test_a_deeper_network_costs_more_and_the_table_is_exact():
    small = budget.predict("resnet", 20, 128, 1, True, FASHION, "cpu")
    deep = budget.predict("resnet", 32, 128, 1, True, FASHION, "cpu")
    assert deep.per_epoch > 1.5 * small.per_epoch
    assert budget.training_flops("resnet", 32, 10, 3, 32) == budget.training_flops("resnet", 32, 10, 3, 32) > 0


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


def test_cleaned_weights_and_relabel_lists(budget_run):
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
    # weights.csv keeps every image: weight 1, or below 1 for the flagged ones (their label's mean probability)
    weighted = pd.read_csv(out / "weights.csv", keep_default_na=False, dtype={"label": str})
    assert list(weighted.columns) == ["path", "label", "weight"] and len(weighted) == 10 * PER_CLASS
    down = {str(Path(p).relative_to(root)) for p in weighted.loc[weighted["weight"] < 1, "path"]}
    assert down == set(flagged["path"]) and weighted["weight"].between(0, 1).all()
    assert weighted.drop(columns="weight")[weighted["weight"] == 1].reset_index(drop=True).equals(cleaned)
    page = (out / "report.html").read_text()
    assert "cleaned.csv" in page and "relabel.csv" in page and "weights.csv" in page


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
    refused(run_python("runner.py", *recipe, "--budget", "-1"), "--budget")


def test_the_same_command_under_load_plans_and_ranks_the_same(budget_run):
    """Issue 24 §4: a rerun on a busy machine gets the same plan and the same suspects."""
    out, _, done = budget_run
    again = out.parent / "again"
    hog = subprocess.Popen(["python3", "-c", "while True: pass"])
    try:
        rerun = run_sh("find_issues", str(out.parent / "digits"), "--out", str(again), "--budget", "0.01", "--no_hflip",
                       "--device", "cpu", env={"OMP_NUM_THREADS": "1"})
    finally:
        hog.kill()
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    first, second = (json.loads((folder / "budget_plan.json").read_text()) for folder in (out, again))
    assert first == second
    assert (again / "suspects.csv").read_bytes() == (out / "suspects.csv").read_bytes()
