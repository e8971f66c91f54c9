"""Fault injection, part 2 (issue #15): nothing already written is lost or silently replaced.

Two commands on one run folder, a second find_issues into a finished --out, Recorder.save onto a
finished run, and data whose listing could multiply or mislabel images (symlink loops, duplicate
or escaping CSV rows).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import runner
from conftest import ROOT, RUN_SUBDIR, TINY, refused, snapshot, write_image
from mislabel import Recorder
from mislabel.commands.find_issues import main as find_issues_main
from mislabel.data.image_files import read_csv_list
from mislabel.core.run_lock import LOCK_FILE
from mislabel.data.user_data import list_data
from mislabel.core.dynamics import TD_FILE
from mislabel.core.user_input import UserError

# ---------------------------------------------------------------------------------------------
# 7: one command per run folder
# ---------------------------------------------------------------------------------------------


def test_a_live_lock_refuses_and_a_stale_one_is_taken_over(tmp_path):
    folder = tmp_path / RUN_SUBDIR
    folder.mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "120"])
    try:
        (folder / LOCK_FILE).write_text(f"{holder.pid} {socket.gethostname()}\n")
        refused(lambda: runner.main(["generate_td", *TINY, "--results_dir", str(tmp_path)]),
                f"is in use by another command (PID {holder.pid}", unchanged=[tmp_path])
    finally:
        holder.kill()
        holder.wait()
    runner.main(["generate_td", *TINY, "--results_dir", str(tmp_path)])  # the holder is gone: stale
    assert (folder / "summary.json").is_file() and not (folder / LOCK_FILE).exists()


@pytest.mark.slow   # a long generate_td in a subprocess
def test_two_generate_td_at_once_the_second_is_refused(tmp_path):
    """The first command (long) holds the lock; the second, with another --lr, names its PID and
    writes nothing; once the first is killed its stale lock does not block the folder."""
    folder = tmp_path / RUN_SUBDIR
    long_run = list(TINY)
    long_run[long_run.index("--num_epochs") + 1] = "400"
    first = subprocess.Popen([sys.executable, str(ROOT / "runner.py"), "generate_td", *long_run,
                              "--results_dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (folder / LOCK_FILE).exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first command ended before the second could start"
        pid = int((folder / LOCK_FILE).read_text().split()[0])
        assert pid == first.pid
        refused(lambda: runner.main(["generate_td", *TINY, "--lr", "0.05", "--results_dir", str(tmp_path)]),
                f"PID {pid}")
        assert first.poll() is None and not (folder / "summary.json").exists()
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert (folder / LOCK_FILE).exists()  # killed: the lock stays, stale
    runner.main(["generate_td", *TINY, "--lr", "0.05", "--overwrite", "--results_dir", str(tmp_path)])
    assert (folder / "summary.json").is_file() and not (folder / LOCK_FILE).exists()
    assert json.loads((folder / "summary.json").read_text())["epochs"] == 2


# ---------------------------------------------------------------------------------------------
# 8: Recorder.save onto a finished run folder
# ---------------------------------------------------------------------------------------------

def test_recorder_save_refuses_a_finished_run_folder(tmp_path):
    def recorded(seed: int) -> Recorder:
        generator = torch.Generator().manual_seed(seed)
        recorder = Recorder(12, num_classes=3, num_epochs=2)
        for _ in range(2):
            recorder.update(torch.randn(12, 3, generator=generator), torch.arange(12) % 3, torch.arange(12))
            recorder.next_epoch()
        return recorder

    folder = tmp_path / "run"
    recorded(0).save(folder)
    (folder / "summary.json").write_text("{}\n")
    before = snapshot(folder)
    with pytest.raises(UserError, match="holds a finished run .*overwrite=True"):
        recorded(1).save(folder)
    assert snapshot(folder) == before
    recorded(1).save(folder, overwrite=True)
    assert not (folder / "summary.json").exists() and (folder / TD_FILE).read_bytes() != before[TD_FILE]


# ---------------------------------------------------------------------------------------------
# 5, and the CSV cases: listings that would multiply, mislabel or escape
# ---------------------------------------------------------------------------------------------

def class_tree(root: Path, classes: int = 3, per_class: int = 12) -> Path:
    for label in range(classes):
        for index in range(per_class):
            write_image(root / f"class{label}" / f"img{index:02d}.png", label)
    return root


def test_symlink_loops_are_followed_once_and_reported(tmp_path, capsys):
    data = class_tree(tmp_path / "data")
    (data / "class0" / "loop").symlink_to("..")               # the whole tree again, ~40 levels deep
    (data / "class1" / "again").symlink_to(".")               # itself
    (data / "class1" / "theirs").symlink_to("../class2")      # another class's images
    write_image(tmp_path / "elsewhere" / "extra.png", 2)
    (data / "class2" / "more").symlink_to(tmp_path / "elsewhere")  # outside the data: followed once
    (data / "class2" / "more_again").symlink_to(tmp_path / "elsewhere")
    listing = list_data(data, seed=0)
    files = listing.train_files
    assert len(files) == 3 * 12 + 1 and len(set(map(os.path.realpath, files))) == len(files)
    assert np.bincount(listing.train_labels).tolist() == [12, 12, 13]
    warning = capsys.readouterr().err
    assert "skipped 4 linked folders" in warning and str(data / "class0" / "loop") in warning


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("path,label\n" + "".join(row + "\n" for row in rows))
    return path


def test_csv_refuses_an_image_listed_under_two_labels_naming_both_lines(tmp_path, capsys):
    class_tree(tmp_path)
    rows = [f"class{c}/img{i:02d}.png,{c}" for c in range(3) for i in range(12)]
    rows.insert(7, "./class0/img02.png,1")  # the same image as line 4, with another label
    with pytest.raises(UserError, match=r"img02.png under two labels \(lines 4 and 9\)"):
        read_csv_list(write_csv(tmp_path / "list.csv", rows), seed=0)
    rows[7] = "./class0/img02.png,0"  # the same row twice: kept, but said
    assert len(read_csv_list(write_csv(tmp_path / "list.csv", rows), seed=0).train_files) > 0
    assert "repeats 1 earlier row(s) as they are (first at line 9" in capsys.readouterr().err


def test_csv_symlinks_are_resolved_before_the_outside_check(tmp_path):
    class_tree(tmp_path / "outside")
    inside = tmp_path / "inside"
    inside.mkdir()
    (inside / "images").symlink_to(tmp_path / "outside")
    rows = [f"images/class{c}/img{i:02d}.png,{c}" for c in range(3) for i in range(12)]
    csv = write_csv(inside / "list.csv", rows)
    with pytest.raises(UserError, match=r"36 paths outside .* \(symlinks resolved\)"):
        read_csv_list(csv, seed=0)
    assert len(read_csv_list(csv, seed=0, allow_outside=True).train_files) > 0
    refused(lambda: find_issues_main([str(csv), "--out", str(tmp_path / "out")]), "--allow_outside")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# 6: a second find_issues into a finished --out
# ---------------------------------------------------------------------------------------------

RECIPE = ["--net_type", "lenet", "--depth", "5", "--num_epochs", "2", "--device", "cpu"]


@pytest.mark.slow   # whole find_issues runs
def test_find_issues_keeps_another_commands_results(tmp_path):
    class_tree(tmp_path / "images")
    rows = [f"images/class{c}/img{i:02d}.png,{c}" for c in range(3) for i in range(12)]
    first, second = write_csv(tmp_path / "a.csv", rows), write_csv(tmp_path / "b.csv", rows[::2])
    out = tmp_path / "out"
    find_issues_main([str(first), "--out", str(out), *RECIPE])
    finished = snapshot(out)
    assert {"suspects.csv", "report.html", "find_issues.json", "datamap.png"} <= finished.keys()
    refused(lambda: find_issues_main([str(second), "--out", str(out), *RECIPE]),
            f"already holds the finished results of find_issues on {first}", "--overwrite")
    refused(lambda: find_issues_main([str(first), "--out", str(out), *RECIPE[4:]]),
            "of another phase-1 run", "--overwrite")
    assert snapshot(out) == finished
    find_issues_main([str(first), "--out", str(out), *RECIPE])  # the same command: scores again
    assert (out / "suspects.csv").read_bytes() == finished["suspects.csv"]
    find_issues_main([str(second), "--out", str(out), *RECIPE, "--overwrite"])
    assert "b.csv" in (out / "find_issues.json").read_text()
