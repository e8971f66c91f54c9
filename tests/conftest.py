"""Shared fixtures: small phase-1 runs on digits, made once per test session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# A recipe small enough for CI yet long enough that noisy labels leave a trace: a CIFAR ResNet-20
# on 8x8 digits takes well under a second per epoch on two CPU cores.
TINY_RECIPE = ["--net_type", "resnet", "--depth", "20", "--num_epochs", "30", "--device", "cpu"]


def run_sh(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ./run.sh with the test interpreter, capturing output."""
    full_env = dict(os.environ, PYTHON=sys.executable, **(env or {}))
    return subprocess.run([str(ROOT / "run.sh"), *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or ROOT, timeout=900)


def run_python(script: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=900)


@pytest.fixture(scope="session")
def uniform30_run(tmp_path_factory) -> Path:
    """Phase 1 on digits with 30% uniform noise (seed 1): the detector's training data."""
    results = tmp_path_factory.mktemp("results")
    done = run_python("runner.py", "generate_td", "--dataset", "digits", "--seed", "1", "--noise_ratio", "0.3",
                      "--noise_type", "uniform", "--results_dir", str(results), *TINY_RECIPE)
    assert done.returncode == 0, done.stderr
    return results / "digits_resnet20_percmislabeled0.3_uniform" / "computation4td_seed1"


@pytest.fixture(scope="session")
def detector_file(uniform30_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("detector") / "digits_0.3_lstm_detector.pth.tar"
    done = run_sh("train_detector", "--r", "0.3", "--dataset", "digits", "--files_path", str(uniform30_run),
                  "--out", str(out), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    return out
