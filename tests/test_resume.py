"""A phase-1 run killed mid-training and started again ends with the files of an uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT
from mislabel.training.checkpoint import CHECKPOINT_FILE
from mislabel.training.recorder import STORE_DIR
from mislabel.core.dynamics import TD_FILE

# LeNet on digits: each epoch takes a fraction of a second, so 8 epochs leave time to kill the run
# after its first checkpoint and before it finishes.
pytestmark = pytest.mark.slow   # kills and resumes real trainings

RECIPE = ["--dataset", "digits", "--seed", "3", "--noise_ratio", "0.2", "--net_type", "lenet", "--depth", "5",
          "--num_epochs", "8", "--device", "cpu"]
RUN = "digits_lenet5_percmislabeled0.2_uniform/computation4td_seed3"
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def generate(results: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "runner.py"), "generate_td", *RECIPE, "--results_dir",
                             str(results), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=ENV)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def assert_same_run(a: Path, b: Path) -> None:
    with np.load(a / TD_FILE) as left, np.load(b / TD_FILE) as right:
        assert left.files == right.files
        for key in left.files:
            assert np.array_equal(left[key], right[key]), key
    for name in ("model.pth", "model.pth.last"):
        left, right = (torch.load(folder / name, weights_only=True) for folder in (a, b))
        assert left.keys() == right.keys()
        assert all(torch.equal(left[key], right[key]) for key in left), name
    logs = [pd.read_csv(folder / "train_log.csv").drop(columns="seconds") for folder in (a, b)]
    pd.testing.assert_frame_equal(*logs)
    for name in ("results_valid.csv", "results_test.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_killed_run_resumes_to_identical_files(tmp_path):
    reference = tmp_path / "reference"
    code, _, err = finish(generate(reference, "--td_store", "ram"))
    assert code == 0, err

    resumed = tmp_path / "resumed"
    folder = resumed / RUN
    process = generate(resumed, "--td_store", "memmap")
    deadline = time.monotonic() + 300
    while not (folder / CHECKPOINT_FILE).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    code, _, err = finish(process)
    assert code == -signal.SIGKILL, f"the run ended before it could be killed: {err[-500:]}"
    assert not (folder / "summary.json").exists() and (folder / CHECKPOINT_FILE).exists()

    code, _, err = finish(generate(resumed, "--td_store", "memmap", "--lr", "0.05"))
    assert code == 2 and "other settings" in err and err.count("\n") == 1, err

    code, out, err = finish(generate(resumed, "--td_store", "memmap"))
    assert code == 0, err
    assert "resuming" in out
    assert not (folder / CHECKPOINT_FILE).exists() and not (folder / STORE_DIR).exists()
    assert_same_run(reference / RUN, folder)
