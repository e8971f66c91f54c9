"""Hostile inputs, round 3, at the commands (issue 23 §E-§G): read-only outputs, non-finite settings,
a loss that turns non-finite, abbreviated flags, a missing interpreter, formula cells in the CSVs
made for spreadsheets, and an --out inside the data. Each: one line, exit 2, nothing written."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from conftest import refused, run_python, run_sh
from mislabel.commands import cli
from mislabel.commands.find_issues import main as find_issues_main
from mislabel.core.user_input import UserError, exit_on_user_error
from mislabel.data.image_files import quote_cell, read_csv_list, unquote_cell
from mislabel.reports.suspects import spreadsheet_safe
from mislabel.run_config import RunConfig

DIGITS = ["generate_td", "--dataset", "digits", "--net_type", "lenet", "--depth", "5", "--device", "cpu"]


def _class_folder(root: Path, count: int = 6) -> Path:
    for label in range(2):
        for number in range(count):
            (root / f"c{label}").mkdir(parents=True, exist_ok=True)
            Image.new("L", (8, 8), 40 * number + 100 * label).save(root / f"c{label}" / f"{number}.png")
    return root


# --- E: where output cannot be written -------------------------------------------------------------

def test_a_read_only_results_folder_is_refused_before_training(tmp_path, monkeypatch):
    """A read-only mount cannot be made without privileges here, so the access check is denied."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path else real_access(path, mode))
    with pytest.raises(UserError, match="cannot write to .*read-only file system or permission denied"):
        RunConfig(results_dir=str(tmp_path / "results"))
    refused(lambda: cli.main([*DIGITS, "--results_dir", str(tmp_path / "results")]), "cannot write to", "RESULTS_DIR")
    data = _class_folder(tmp_path.parent / f"{tmp_path.name}_data")
    refused(lambda: find_issues_main([str(data), "--out", str(tmp_path / "out")]), "cannot write to", "--out")
    assert not (tmp_path / "results").exists() and not (tmp_path / "out").exists()


def test_a_folder_turning_read_only_later_ends_in_one_line():
    def writes_to_a_read_only_mount() -> None:
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/results/summary.json")

    refused(lambda: exit_on_user_error(lambda: writes_to_a_read_only_mount())(),
            "cannot use /mnt/ro/results/summary.json: read-only file system", "RESULTS_DIR")


# --- F: settings that train garbage ------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--lr", "--momentum", "--wd"])
def test_non_finite_settings_are_refused(flag, tmp_path):
    refused(lambda: cli.main([*DIGITS, flag, "nan", "--results_dir", str(tmp_path)]), flag, "not a finite number")
    data = _class_folder(tmp_path / "data")
    refused(lambda: find_issues_main([str(data), "--out", str(tmp_path / "out"), flag, "inf"]), flag)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == [tmp_path / "data"]


def test_a_loss_that_turns_non_finite_stops_the_run_unfinished(tmp_path):
    done = run_python("runner.py", *DIGITS, "--num_epochs", "3", "--lr", "1e30", "--results_dir", str(tmp_path))
    refused(done, "the training loss became", "in epoch 1", "--lr", after_progress=True)
    run = tmp_path / "digits_lenet5_percmislabeled0.2_uniform" / "computation4td_seed0"
    assert not (run / "summary.json").exists() and not (run / "training_dynamics.npz").exists()


# --- G: smaller --------------------------------------------------------------------------------------

def test_abbreviated_flags_are_refused(tmp_path):
    refused(lambda: cli.main([*DIGITS, "--num_epoch", "2", "--results_dir", str(tmp_path)]), "--num_epoch")
    refused(lambda: find_issues_main([str(tmp_path), "--budg", "3"]), "--budg")


def test_a_missing_interpreter_is_named(tmp_path):
    done = run_sh("generate_td", "x", "digits", "0", "0.2", "uniform", "lenet", "5", env={"PYTHON": "/nonexistent/py"})
    refused(done, "PYTHON=/nonexistent/py", "no such interpreter")


def test_formula_cells_are_quoted_and_read_back(tmp_path):
    cells = ["=HYPERLINK(\"x\")", "+1+1", "-cmd", "@SUM(A1)", "-1", "3.5", "cat", "'=kept"]
    quoted = [quote_cell(cell) for cell in cells]
    assert quoted[:4] == ["'" + cell for cell in cells[:4]] and quoted[4:] == cells[4:]
    assert [unquote_cell(cell) for cell in quoted] == cells[:7] + ["=kept"]
    frame = spreadsheet_safe(pd.DataFrame({"path": ["=a.png", "b.png"], "label": ["@x", "y"], "score": [0.5, -1.0]}))
    assert frame["path"].tolist() == ["'=a.png", "b.png"] and frame["label"].tolist() == ["'@x", "y"]
    assert frame["score"].tolist() == [0.5, -1.0]
    for name in ("=a.png", "b.png", "c.png", "d.png"):
        Image.new("L", (8, 8)).save(tmp_path / name)
    frame = pd.DataFrame({"path": ["=a.png", "b.png", "c.png", "d.png"], "label": ["@x", "@x", "y", "y"]})
    spreadsheet_safe(frame).to_csv(tmp_path / "cleaned.csv", index=False)
    listed = read_csv_list(tmp_path / "cleaned.csv", seed=0)
    assert listed.class_names == ["@x", "y"]
    assert sorted(Path(f).name for f in listed.train_files + listed.test_files)[0] == "=a.png"


def test_out_inside_the_data_is_refused_at_once(tmp_path):
    data = _class_folder(tmp_path / "data")
    refused(lambda: find_issues_main([str(data), "--out", str(data / "_out")]), "inside the data folder",
            unchanged=[data])


def test_a_full_disk_at_the_first_write_names_the_file(tmp_path, monkeypatch):
    """The lock is the first file a run writes; os.write's OSError names no file, so the lock does."""
    from mislabel.core import run_lock

    def no_space(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_lock.os, "write", no_space)
    with pytest.raises(UserError, match=r"no space left on device while writing .*\.lock"):
        with run_lock.folder_lock(tmp_path / "run"):
            pass
    assert [p.name for p in (tmp_path / "run").iterdir()] == []
