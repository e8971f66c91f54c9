"""Two processes under torchrun (gloo, CPU) record complete dynamics and write one single-process set of
files: generate_td on digits in memory, and find_issues on image files (streamed or held in memory)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from conftest import ROOT, refused, run_sh, write_digit_folders
from mislabel.core.dynamics import METADATA_FILE, TD_FILE, load_dynamics

# LeNet on digits, 2 epochs: the smallest run that still has several batches per rank and epoch.
# --batch_size 50 with 1,293 training rows leaves a padded last round, so the test also covers
# padding duplicates (trained on, never recorded twice).
pytestmark = pytest.mark.slow   # trains under torchrun with two gloo processes

RECIPE = ["generate_td", "--dataset", "digits", "--seed", "4", "--noise_ratio", "0.2", "--net_type", "lenet",
          "--depth", "5", "--num_epochs", "2", "--batch_size", "50", "--device", "cpu"]
RUN = "digits_lenet5_percmislabeled0.2_uniform/computation4td_seed4"
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_two_gloo_processes_record_every_sample_once_in_the_single_process_format(tmp_path):
    single = subprocess.run([sys.executable, str(ROOT / "runner.py"), *RECIPE, "--results_dir", str(tmp_path / "one")],
                            capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                          str(ROOT / "runner.py"), *RECIPE, "--results_dir", str(tmp_path / "two")],
                         capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    assert files(tmp_path / "two") == files(tmp_path / "one")          # one set of files, nothing left over
    one, two = load_dynamics(tmp_path / "one" / RUN), load_dynamics(tmp_path / "two" / RUN)
    with np.load(tmp_path / "one" / RUN / TD_FILE) as a, np.load(tmp_path / "two" / RUN / TD_FILE) as b:
        assert a.files == b.files
        assert all(a[key].shape == b[key].shape and a[key].dtype == b[key].dtype for key in a.files)
    assert two.td.shape == (1293, 2, 10)
    assert np.array_equal(two.indices, one.indices) and np.array_equal(two.assigned, one.assigned)
    assert np.allclose(two.td.astype(np.float32).sum(axis=2), 1.0, atol=1e-2)   # every sample, every epoch
    assert np.array_equal(np.sort(two.labels, axis=1), np.tile(np.arange(10), (1293, 1)))
    assert np.array_equal(two.margin > 0, two.pred == two.assigned[:, None])
    meta_one, meta_two = (torch.load(folder / RUN / METADATA_FILE, weights_only=True)
                          for folder in (tmp_path / "one", tmp_path / "two"))
    assert meta_one.keys() == meta_two.keys() and all(torch.equal(meta_one[k], meta_two[k]) for k in meta_one)


def test_nproc_runs_runner_under_torchrun():
    done = run_sh("generate_td", "none", "digits", "0", "0.2", "uniform", "lenet", "5",
                  env={"TESTRUN": "1", "NPROC": "2"})
    assert done.returncode == 0, done.stderr
    assert "-m torch.distributed.run --nproc_per_node 2 --standalone " in done.stdout
    assert f"{ROOT / 'runner.py'} generate_td" in done.stdout
    passed = run_sh("denoise_large", "d", "clothing", "0", "det.pth", "0.1",
                    env={"TESTRUN": "1", "NPROC": "4", "TORCHRUN_ARGS": "--nnodes 2 --rdzv_endpoint host:29400"})
    assert "--nproc_per_node 4 --nnodes 2 --rdzv_endpoint host:29400 " in passed.stdout
    bad = run_sh("generate_td", "none", "digits", "0", "0.2", "uniform", "lenet", "5", env={"NPROC": "two"})
    refused(bad, "NPROC")


# find_issues on test_find_issues' digit folders (10% of the files moved to a wrong class, two unreadable
# files, hostile names), with its LeNet recipe; every run takes a few seconds on two CPU cores.
FIND_RECIPE = ["--net_type", "lenet", "--num_epochs", "20", "--no_hflip", "--device", "cpu"]
AUC_TOLERANCE = 0.03   # 1 vs 2 processes: other batch splits and per-process BatchNorm, the same signal


def find_issues(data: Path, out: Path, nproc: int, *extra: str) -> subprocess.CompletedProcess:
    return run_sh("find_issues", str(data), "--out", str(out), *FIND_RECIPE, *extra,
                  env={"OMP_NUM_THREADS": "1", "NPROC": "" if nproc == 1 else str(nproc)})


@pytest.fixture(scope="module")
def digit_folders(tmp_path_factory) -> tuple[Path, set[str]]:
    root = tmp_path_factory.mktemp("ddp_data") / "my digits"
    return root, write_digit_folders(root)


@pytest.mark.parametrize("storage", ["files", "memory"])
def test_find_issues_with_two_processes_ranks_as_well_as_one(digit_folders, tmp_path, storage):
    data, moved = digit_folders
    outs = {nproc: tmp_path / f"nproc{nproc}" for nproc in (1, 2)}
    for nproc, out in outs.items():
        done = find_issues(data, out, nproc, "--storage", storage)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count("recipe: ") == 1 and done.stdout.count("find_issues: ") == 1   # rank 0 speaks
        assert ("streamed from files" if storage == "files" else "in memory") in done.stdout
    assert files(outs[2]) == files(outs[1])                      # the same outputs, nothing half-written
    assert (outs[2] / "skipped.txt").read_text() == (outs[1] / "skipped.txt").read_text() != ""
    one, two = (load_dynamics(next(out.glob("phase1/*_seed0"))) for out in (outs[1], outs[2]))
    assert two.td.shape == one.td.shape == (480, 20, 10)
    assert np.allclose(two.td.astype(np.float32).sum(axis=2), 1.0, atol=1e-2)   # every sample, every epoch
    assert np.array_equal(two.indices, one.indices) and np.array_equal(two.assigned, one.assigned)
    aucs = {}
    for nproc, out in outs.items():
        table = pd.read_csv(out / "suspects.csv", keep_default_na=False)
        assert len(table) == 480
        aucs[nproc] = roc_auc_score(table["path"].isin(moved), table["score"])
    assert aucs[2] >= 0.9 and abs(aucs[2] - aucs[1]) <= AUC_TOLERANCE, aucs


def test_find_issues_refusal_stops_every_process(digit_folders, tmp_path):
    """A refusal decided on rank 0 (a phase-1 folder of other settings) reaches every rank: no rank is
    left waiting for the others, and nothing is trained or overwritten."""
    data, _ = digit_folders
    assert find_issues(data, tmp_path, 2, "--num_epochs", "2").returncode == 0
    started = time.monotonic()
    refused = find_issues(data, tmp_path, 2, "--num_epochs", "3")
    assert refused.returncode != 0 and time.monotonic() - started < 60
    assert refused.stderr.count("error: ") == 2 and "holds a phase-1 run of other plan" in refused.stderr
    assert "phase 1: epoch" not in refused.stderr


def test_nproc_runs_find_issues_under_torchrun():
    done = run_sh("find_issues", "photos", "--budget", "0", env={"TESTRUN": "1", "NPROC": "2"})
    assert done.returncode == 0, done.stderr
    assert "-m torch.distributed.run --nproc_per_node 2 --standalone -m mislabel.commands.find_issues " in done.stdout
    assert "--budget 0" in done.stdout


def test_a_finished_command_waits_for_every_rank_before_leaving_the_group(monkeypatch):
    """Success: barrier, then destroy (a rank that left while rank 0 still wrote was aborted now and then by
    gloo). Failure: leave at once, as the other ranks may never reach a barrier; the error goes on."""
    from mislabel.core import distributed
    calls: list[str] = []
    monkeypatch.setattr(distributed, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(distributed, "stop", lambda: calls.append("stop"))
    with distributed.stopped_after():
        calls.append("work")
    assert calls == ["work", "barrier", "stop"]
    calls.clear()
    with pytest.raises(ValueError, match="bad input"), distributed.stopped_after():
        raise ValueError("bad input")
    assert calls == ["stop"]
