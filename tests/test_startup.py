"""A bad argument is refused before the heavy libraries load: exit 2, one error line, no torch.

Each command runs in a fresh interpreter with ``PYTHONPROFILEIMPORTTIME=1``, which makes Python
report every module it imports on stderr; the remaining stderr lines are the command's own.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, refused

HEAVY = {"torch", "torchvision", "sklearn", "pandas", "scipy", "matplotlib"}


def refuse(command: list[str], tmp_path: Path) -> tuple[str, set[str], float]:
    """Run ``command`` from the repository root; returns its one error line, the heavy modules it
    imported and the seconds it took. Asserts exit code 2 and nothing written to ``tmp_path``."""
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPROFILEIMPORTTIME="1", RESULTS_DIR=str(tmp_path / "results"))
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    seconds = time.perf_counter() - started
    imports = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    own = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    loaded = {line.rsplit("|", 1)[1].strip() for line in imports} & HEAVY
    line = refused(subprocess.CompletedProcess(command, done.returncode, done.stdout, "\n".join(own)))
    assert not (tmp_path / "results").exists()
    return line, loaded, seconds


@pytest.fixture(scope="module")
def torch_import_seconds() -> float:
    """What a refusal is timed against, measured here and now (so a busy machine slows both): a
    fresh interpreter importing torch, the cost a refusal must not pay (a tenth of it, when idle)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, cwd=ROOT, timeout=120)
    return time.perf_counter() - started


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a folder\n")
    return path


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


CASES = {
    "bad noise_ratio": (python("runner.py", "generate_td", "--noise_ratio", "1.5"), "noise_ratio 1.5 is outside"),
    "unknown noise_type": (python("runner.py", "generate_td", "--noise_type", "pairflip"), "unknown noise_type"),
    "unknown net_type": (python("runner.py", "generate_td", "--net_type", "transformer"), "unknown --net_type"),
    "bad depth": (python("runner.py", "crossval", "--depth", "33"), "--depth 33 is not valid for resnet"),
    "datadir is a file": (python("runner.py", "generate_td", "--dataset", "cifar10", "--datadir", "{file}"),
                          "is a file, expected a folder"),
    "missing detector": (python("runner.py", "denoise", "--detector_file", "{tmp}/absent.pth.tar",
                                "--remove_ratio", "0.2"), "detector file"),
    "run.sh denoise_small bad remove_ratio": ([str(ROOT / "run.sh"), "denoise_small", "unused", "digits", "1", "0.2",
                                               "uniform", "{file}", "1.5"], "remove_ratio 1.5 is outside"),
    "find_issues on a missing path": (python("-m", "mislabel.commands.find_issues", "{tmp}/absent"),
                                      "absent does not exist"),
    "run.sh find_issues bad budget": ([str(ROOT / "run.sh"), "find_issues", "{tmp}", "--budget", "-1"], "--budget"),
    "train_detector bad epochs": (python("train_detector.py", "--r", "0.2", "--dataset", "digits", "--files_path",
                                         "{tmp}", "--epochs", "0"), "--epochs 0 must be at least 1"),
    "train_detector missing run": (python("train_detector.py", "--r", "0.2", "--dataset", "digits", "--files_path",
                                          "{tmp}/absent"), "run folder"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_arguments_are_refused_before_torch_loads(name: str, tmp_path: Path, a_file: Path,
                                                     torch_import_seconds: float) -> None:
    command, message = CASES[name]
    command = [arg.format(file=a_file, tmp=tmp_path) for arg in command]
    line, loaded, seconds = refuse(command, tmp_path)
    assert message in line
    assert not loaded, f"{name} imported {sorted(loaded)} before refusing"
    assert seconds < torch_import_seconds, f"{name} took {seconds:.2f} s to refuse; importing torch took " \
        f"{torch_import_seconds:.2f} s"


def test_the_argument_modules_import_no_heavy_library() -> None:
    code = ("import sys, util, mislabel, models, mislabel.commands.cli, mislabel.issue_options, "
            "mislabel.core.run_options; "
            f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_torch_free_copies_agree_with_the_modules_that_use_them() -> None:
    """The command line checks against tables written out without torch; these are the originals."""
    import train_detector
    from mislabel.scoring.lstm import READOUTS
    from mislabel.models.losses import LOSSES
    from mislabel.core.run_options import LOSS_TYPES
    from mislabel.models import NETWORKS
    from mislabel.models.conv4 import CONV4_DEPTHS
    from mislabel.models.densenet import DENSENET_DEPTHS
    from mislabel.models.heads import HEAD_DEPTHS
    from mislabel.models.lenet import LENET_DEPTHS
    from mislabel.models.PreResNet import PRERESNET_DEPTHS
    from mislabel.models.resnet import CIFAR_DEPTHS, IMAGENET_DEPTHS
    from mislabel.models.vgg import VGG_DEPTHS
    from mislabel.models.wide_resnet import WRN_DEPTHS

    assert train_detector.READOUT_CHOICES == READOUTS
    assert LOSS_TYPES == tuple(LOSSES)
    assert NETWORKS == {"conv4": CONV4_DEPTHS, "densenet": DENSENET_DEPTHS, "lenet": LENET_DEPTHS, **HEAD_DEPTHS,
                        "lenet_mnist": LENET_DEPTHS, "preresnet": PRERESNET_DEPTHS,
                        "resnet": CIFAR_DEPTHS + IMAGENET_DEPTHS, "vgg": VGG_DEPTHS, "wide_resnet": WRN_DEPTHS}
