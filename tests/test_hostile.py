"""Fault injection, part 1 (issue #15): bad arguments, damaged dynamics files, a full disk.

Every case ends the same way: one line ``error: <problem>; <fix>`` on stderr, exit code 2, no
traceback, and the files that were there before are still there, byte for byte.
"""
from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mislabel.reports.comparison
import runner
import train_detector
from conftest import ROOT, RUN_SUBDIR, TINY, refused, run_sh, snapshot
from mislabel.commands import repair as repair_cli
from data_debug_dm import train as dividemix_cli
from mislabel import rank
from mislabel.commands.compare import main as compare_main
from runner import Runner, RunConfig
from mislabel.core.dynamics import TD_FILE
from mislabel.core.user_input import UserError

DETECTOR = ROOT / "mislabel" / "scoring" / "pretrained" / "default.pth.tar"
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished phase-1 run folder (digits, LeNet-5, 2 epochs)."""
    results = tmp_path_factory.mktemp("results")
    runner.main(["generate_td", *TINY, "--results_dir", str(results)])
    return results / RUN_SUBDIR


# ---------------------------------------------------------------------------------------------
# 1, 2 and the smaller argument cases
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", ["-1", "99999999999999999999999"])
def test_seed_out_of_range_is_one_line(seed, tmp_path):
    args = [*TINY, "--results_dir", str(tmp_path / "r")]
    args[args.index("--seed") + 1] = seed
    refused(lambda: runner.main(["generate_td", *args]), "--seed", "0..4294967295")
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_a_folder_belongs(tmp_path, tiny_run):
    regular = tmp_path / "regular"
    regular.write_text("not a folder\n")
    done = run_sh("generate_td", "unused", "digits", "5", "0.3", "uniform", "lenet", "5", "--num_epochs", "2",
                  env={"RESULTS_DIR": str(regular)})
    refused(done, "is a file, expected a folder", "RESULTS_DIR")
    refused(lambda: runner.main(["generate_td", *TINY, "--results_dir", str(regular / "below")]),
            "is a file, expected a folder")
    refused(lambda: runner.main(["generate_td", "--dataset", "cifar10", "--datadir", str(regular), "--device", "cpu",
                                 "--results_dir", str(tmp_path / "r")]), f"datadir {regular} is a file")
    refused(lambda: compare_main([str(regular)]), f"run folder {regular} is a file, expected a folder")
    refused(lambda: repair_cli.main([str(regular), str(DETECTOR), "0.1"]), "is a file, expected a folder")
    assert regular.read_text() == "not a folder\n" and sorted(p.name for p in tmp_path.iterdir()) == ["regular"]


def test_dataset_name_must_be_one_path_component(tmp_path):
    results = tmp_path / "results"
    args = [*TINY, "--results_dir", str(results)]
    args[args.index("--dataset") + 1] = "../esc"
    refused(lambda: runner.main(["generate_td", *args]), "'../esc' is not a single folder name")
    assert list(tmp_path.iterdir()) == []
    refused(lambda: train_detector.main(["--r", "0.3", "--dataset", "../esc", "--files_path", str(tmp_path)]),
            "not a single folder name")


def test_run_sh_usage_errors_are_one_line():
    done = run_sh("generate_td", "/data", "digits", "1")
    refused(done, "missing argument <noise_ratio>", "./run.sh help")
    refused(run_sh("frobnicate"), "unknown command 'frobnicate'", "./run.sh help")


def test_removal_must_leave_every_class_and_a_batch(tiny_run, tmp_path):
    refused(lambda: runner.main(["denoise", *TINY, "--td_dir", str(tiny_run), "--detector_file", str(DETECTOR),
                                 "--remove_ratio", "0.999", "--results_dir", str(tmp_path)]),
            "fewer than one batch (128)")
    assert list(tmp_path.iterdir()) == []
    trainer = Runner(RunConfig(dataset="digits", seed=5, net_type="lenet", depth=5, device="cpu",
                               results_dir=str(tmp_path)))
    assigned = np.repeat(np.arange(3), 200)
    with pytest.raises(UserError, match="removes every training sample of class 1"):
        trainer._check_retrainable(assigned, assigned != 1, 0.4)


def test_raw_pickle_detector_is_one_line_without_warnings(tiny_run, tmp_path):
    raw = tmp_path / "raw.pth.tar"
    raw.write_bytes(pickle.dumps({"format": "something else", "weights": [1, 2]}, protocol=4))
    refused(run_sh("compare", str(tiny_run), str(raw)), "not a detector")


def test_a_folder_given_as_detector_file_is_named_a_folder(tiny_run, tmp_path):
    refused(lambda: compare_main([str(tiny_run), str(tmp_path), "--device", "cpu"]),
            f"detector file {tmp_path} is a folder, expected a file", unchanged=[tiny_run])


# ---------------------------------------------------------------------------------------------
# 3: damaged dynamics, refused where they are read
# ---------------------------------------------------------------------------------------------

def damage(run: Path, target: Path, how: str) -> Path:
    """A copy of ``run`` whose training_dynamics.npz is damaged ``how``."""
    shutil.copytree(run, target)
    with np.load(target / TD_FILE) as npz:
        arrays = {key: npz[key] for key in npz.files}
    if how == "td_2d":
        arrays["td"] = arrays["td"][:, :, 0]
    elif how == "td_nan":
        arrays["td"][3, 1, 0] = np.nan
    elif how == "margin_nan":
        arrays["margin"][4, 0] = np.nan
    elif how == "labels_misaligned":
        arrays["labels"] = arrays["labels"][1:]
    np.savez(target / TD_FILE, **arrays)
    return target


DAMAGES = {"td_2d": "td is float16", "td_nan": "td holds NaN", "margin_nan": "margin holds NaN",
           "labels_misaligned": "labels is int64"}
COMMANDS = ["compare", "denoise", "repair", "train_dividemix", "train_detector"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("how", list(DAMAGES))
def test_damaged_dynamics_are_refused_by_every_reader(tiny_run, tmp_path, how, command):
    run = damage(tiny_run, tmp_path / "run", how)
    results = str(tmp_path / "results")
    calls = {
        "compare": (compare_main, [str(run), "--device", "cpu"]),
        "denoise": (runner.main, ["denoise", *TINY, "--td_dir", str(run), "--detector_file", str(DETECTOR),
                                  "--remove_ratio", "0.2", "--results_dir", results]),
        "repair": (repair_cli.main, [str(run), str(DETECTOR), "0.1", "--device", "cpu"]),
        "train_dividemix": (dividemix_cli.main, ["--dataset", "digits", "--seed", "5", "--r", "0.3", "--noise_mode",
                                                 "sym", "--net_type", "lenet", "--depth", "5", "--num_epochs", "2",
                                                 "--warm_up", "1",
                                                 "--repair_ratio", "0.1", "--td_dir", str(run), "--detector_file",
                                                 str(DETECTOR), "--device", "cpu", "--results_dir", results]),
        "train_detector": (train_detector.main, ["--r", "0.3", "--dataset", "digits", "--files_path", str(run),
                                                 "--out", str(tmp_path / "d.pth.tar"), "--device", "cpu"]),
    }
    main, argv = calls[command]
    refused(lambda: main(argv), str(run / TD_FILE), DAMAGES[how], "regenerate",
            unchanged=[run, tmp_path / "d.pth.tar"])
    assert not list(Path(results).rglob("*.pth"))


def test_rank_refuses_damaged_dynamics_from_a_folder_or_arrays(tiny_run, tmp_path):
    with pytest.raises(UserError, match="td holds NaN"):
        rank(damage(tiny_run, tmp_path / "nan", "td_nan"), methods=("aum",))
    with np.load(tiny_run / TD_FILE) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["margin"] = arrays["margin"].astype(np.float32)
    arrays["margin"][0, 0] = np.inf
    with pytest.raises(UserError, match="margin holds NaN or infinite"):
        rank(arrays, methods=("aum",))
    arrays["margin"][0, 0] = 0
    arrays["td"] = arrays["td"] + np.float16(1.5)
    with pytest.raises(UserError, match="probabilities lie in"):
        rank(arrays, methods=("aum",))


def test_damaged_dynamics_from_the_shell_have_no_traceback(tiny_run, tmp_path):
    run = damage(tiny_run, tmp_path / "run", "td_2d")
    refused(run_sh("compare", str(run)), "td is float16 [", "expected float [samples, epochs, channels]")


# ---------------------------------------------------------------------------------------------
# 4: a full disk
# ---------------------------------------------------------------------------------------------

def no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_during_compare_leaves_the_previous_set(tiny_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    compare_main([str(run), "--device", "cpu"])
    before = snapshot(run)
    monkeypatch.setattr(mislabel.reports.comparison, "plot_datamap", no_space)  # after the tables, before roc_pr.png
    refused(lambda: compare_main([str(run), str(DETECTOR), "--device", "cpu"]),
            f"no space left on device while writing {run / 'datamap.png'}", "free space or set RESULTS_DIR")
    assert snapshot(run) == before  # the new comparison.md/.csv and scores.csv were not renamed in


def test_full_disk_during_generate_td_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", no_space)
    refused(lambda: runner.main(["generate_td", *TINY, "--results_dir", str(tmp_path)]),
            "no space left on device while writing", "metadata.pth")
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def tmpfs(tmp_path):
    """A tiny tmpfs mounted at tmp_path/fs (root only); the test is skipped where mounting fails."""
    mount = tmp_path / "fs"
    mount.mkdir()

    def mount_with(size_kb: int) -> Path:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        return mount

    yield mount_with
    subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.slow   # generate_td on a small tmpfs until it fills
def test_real_full_disk(tiny_run, tmpfs):
    results = tmpfs(2048)
    shutil.copytree(tiny_run, results / "run")
    assert run_sh("compare", str(results / "run")).returncode == 0
    before = snapshot(results / "run")
    stat = os.statvfs(results)
    (results / "filler").write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - 100 * 1024))
    done = run_sh("compare", str(results / "run"), str(DETECTOR), "--device", "cpu")
    refused(done, "no space left on device while writing", "free space or set RESULTS_DIR")
    assert snapshot(results / "run") == before
    shutil.rmtree(results / "run")
    (results / "filler").unlink()
    stat = os.statvfs(results)  # room for the metadata, not for the first checkpoint
    (results / "filler").write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - 300 * 1024))
    done = run_sh("generate_td", "unused", "digits", "5", "0.3", "uniform", "lenet", "5", "--num_epochs", "2",
                  "--device", "cpu", env={"RESULTS_DIR": str(results)})
    refused(done, "no space left on device while writing", after_progress=True)


@pytest.mark.slow   # whole commands in subprocesses
def test_umask_is_honoured(tmp_path):
    """Results are readable by the group under umask 027 (0640), not private 0600 files."""
    done = subprocess.run([str(ROOT / "run.sh"), "generate_td", "unused", "digits", "5", "0.3", "uniform", "lenet",
                           "5", "--num_epochs", "2", "--device", "cpu"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=sys.executable, RESULTS_DIR=str(tmp_path)),
                          preexec_fn=lambda: os.umask(0o027), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    files = [p for p in (tmp_path / RUN_SUBDIR).iterdir() if p.is_file()]
    assert len(files) >= 8 and {p.name: oct(p.stat().st_mode & 0o777) for p in files} == \
        {p.name: oct(0o640) for p in files}
