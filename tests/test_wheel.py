"""`pip install .` gives the library alone: built as a wheel, installed into a fresh virtual
environment that reuses this environment's torch, it runs examples/own_loop.py from another
directory, ranks with the shipped detector (package data), gives the `mislabel` command
(`mislabel rank`, `mislabel find-issues`) and installs no generic top-level module names (util,
models, losses, ...) into site-packages."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow   # builds and installs the wheel into a fresh virtual environment

ROOT = Path(__file__).resolve().parents[1]
SEED_NAMES = {"util", "util.py", "losses", "losses.py", "models", "detector_model", "data_debug_dm", "runner.py",
              "train_detector.py", "tests", "bench", "examples"}


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command[:4]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


def test_wheel_installs_the_library_alone(tmp_path: Path) -> None:
    # a clean copy to build from, so setuptools' build/ and egg-info never land in the checkout
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "mislabel", source / "mislabel", ignore=shutil.ignore_patterns("__pycache__"))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # run.sh sets it to the checkout
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w",
         str(tmp_path / "dist"), str(source)], cwd=tmp_path, env=env)
    wheel = next((tmp_path / "dist").glob("mislabel_detection-*.whl"))

    target = tmp_path / "venv"
    venv.create(target, with_pip=False)
    site = Path(subprocess.run([str(target / "bin" / "python"), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True,
                               check=True).stdout.strip())
    # torch, numpy, pandas ... come from this environment: a .pth file appends its package folders
    reused = [entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")]
    (site / "reuse_test_environment.pth").write_text("\n".join(reused) + "\n")
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        cwd=tmp_path, env=env)
    installed = {path.name for path in site.iterdir()} - {"reuse_test_environment.pth", "bin"}  # bin/: `mislabel`
    assert "mislabel" in installed and not installed & SEED_NAMES, sorted(installed)
    assert all(name == "mislabel" or name.startswith("mislabel_detection-") for name in installed), sorted(installed)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    python = str(target / "bin" / "python")
    done = run([python, str(ROOT / "examples" / "own_loop.py")], cwd=elsewhere, env=env)
    assert "aum" in done.stdout and (elsewhere / "own_loop_run" / "training_dynamics.npz").is_file()
    check = ("import mislabel, sys; from mislabel import Recorder, rank; "
             "table = rank('own_loop_run'); "
             "print(mislabel.__file__); print(list(table.columns)); print(sorted(table.attrs['metrics']))")
    done = run([python, "-c", check], cwd=elsewhere, env=env)
    module_file, columns, metrics = done.stdout.strip().splitlines()[-3:]
    assert module_file.startswith(str(site)), module_file  # the installed copy, not the checkout
    assert "detector" in columns and "'detector'" in metrics

    # the console command, as pip installed it (run by the venv's python: --target keeps the
    # installing interpreter in its shebang)
    script = site / "bin" / "mislabel"
    assert script.is_file(), sorted(path.name for path in site.iterdir())
    done = run([python, str(script), "--help"], cwd=elsewhere, env=env)
    assert "find-issues" in done.stdout and "train-detector" in done.stdout
    done = run([python, str(script), "rank", "own_loop_run", "--methods", "aum", "detector"], cwd=elsewhere, env=env)
    ranked = (elsewhere / "own_loop_run" / "ranked.csv").read_text().splitlines()
    assert "ranked " in done.stdout and ranked[0].split(",")[:3] == ["index", "given_label", "predicted_label"]
    images = elsewhere / "images"
    for label in range(2):
        for number in range(12):
            (images / str(label)).mkdir(parents=True, exist_ok=True)
            pixels = bytes([255 * label ^ (number * 7 % 64)] * 64)
            Image.frombytes("L", (8, 8), pixels).save(images / str(label) / f"{number}.png")
    done = run([python, str(script), "find-issues", "images", "--out", "audit", "--net_type", "lenet", "--num_epochs",
                "2", "--no_hflip", "--device", "cpu"], cwd=elsewhere, env={**env, "OMP_NUM_THREADS": "1"})
    assert "find_issues: 24 samples scored" in done.stdout and (elsewhere / "audit" / "suspects.csv").is_file()
