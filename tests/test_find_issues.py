"""find_issues on a practitioner-style class folder: digits with 10% of the files moved into a
wrong class folder, one corrupt file, one truncated file and hostile file and class names."""
from __future__ import annotations

import html.parser
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from conftest import HOSTILE_CLASS, HOSTILE_FILE, PER_CLASS, ROOT, refused, run_sh, write_digit_folders
from mislabel.scoring.lstm import LSTMDetector, detector_config, save_detector
from mislabel.scoring.baselines import BASELINES
from mislabel.api import DEFAULT_CONTROL, DEFAULT_DETECTOR
from mislabel.training.checkpoint import CHECKPOINT_FILE
import mislabel.issue_finder as find_issues_module
from mislabel.issue_finder import RECORD_FILE
from mislabel.commands.find_issues import main
from mislabel.training.plan import default_plan
from mislabel.data.user_data import list_data
from mislabel.core.user_input import UserError

# LeNet for speed on a shared 2-core CPU (the default recipe, a ResNet-20, takes minutes here);
# no flips, as mirrored digits are other glyphs.
RECIPE = ["--net_type", "lenet", "--num_epochs", "20", "--no_hflip", "--device", "cpu", "--report_top", "600"]
ENV = {"OMP_NUM_THREADS": "1"}


def find_issues(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_sh("find_issues", str(data), "--out", str(out), *extra, env=ENV)


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory) -> tuple[Path, set[str]]:
    root = tmp_path_factory.mktemp("own_data") / "my digits"
    return root, write_digit_folders(root)


@pytest.fixture(scope="session")
def finished(digits_folder, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("find_issues") / "out"
    done = find_issues(digits_folder[0], out, *RECIPE)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_ranks_the_moved_files_high(digits_folder, finished):
    out, done = finished
    table = pd.read_csv(out / "suspects.csv", keep_default_na=False)
    expected = ["rank", "path", "given_label", "predicted_label", "score", "flagged"]
    assert DEFAULT_DETECTOR.is_file() and DEFAULT_CONTROL.is_file()   # both ship with the package
    assert list(table.columns) == expected + ["lstm:default", "control"] + list(BASELINES) + ["seeded"]
    assert len(table) == 10 * PER_CLASS and table["rank"].tolist() == list(range(1, len(table) + 1))
    moved = table["path"].isin(digits_folder[1])
    assert moved.sum() == len(digits_folder[1])
    assert roc_auc_score(moved, table["score"]) >= 0.9 and roc_auc_score(moved, table["aum"]) >= 0.9
    assert table["score"].is_monotonic_decreasing
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"find_issues: {len(table)} samples scored, {table['flagged'].sum()} flagged")
    assert str(out / "report.html") in last
    assert (out / "datamap.png").stat().st_size > 0
    assert "recipe: lenet5, 20 epochs, batch 32" in done.stdout
    datalab = pd.read_csv(out / "datalab_issues.csv", keep_default_na=False, dtype={"given_label": str})
    assert list(datalab.columns) == ["index", "is_label_issue", "label_score", "given_label", "predicted_label", "path"]
    assert datalab["index"].tolist() == list(range(len(table)))
    assert datalab["is_label_issue"].sum() == table["flagged"].sum()
    assert sorted(datalab["path"]) == sorted(table["path"])
    # the flags are the run's estimated count, which the report and the record state with its ranges
    record = json.loads((out / RECORD_FILE).read_text())
    count = record["estimated_wrong_labels"]
    assert count["estimate"] == table.loc[table["seeded"] == 0, "flagged"].sum()
    assert table["flagged"].sum() == record["flagged"]
    assert count["likely"][0] <= count["estimate"] <= count["likely"][1]
    assert record["advice"].startswith(f"About {count['estimate']:,} of the {len(table):,} labels")
    report = (out / "report.html").read_text()
    assert "<h2>What to do</h2>" in report and "train on weights.csv" in report


def test_seeded_flips_check_the_run_and_every_output_keeps_the_users_labels(digits_folder, finished):
    out, done = finished
    table = pd.read_csv(out / "suspects.csv", keep_default_na=False, dtype={"given_label": str})
    folder_label = table["path"].str.split("/").str[0]
    assert (table["given_label"] == folder_label).all()      # seeded rows show the user's label, not ours
    seeded = table["seeded"] == 1
    assert seeded.sum() == round(0.03 * len(table))
    # judged among themselves for the user's labels: spread over the ranking, not piled on top
    assert table.loc[seeded, "rank"].min() < len(table) / 4 and table.loc[seeded, "rank"].max() > len(table) * 3 / 4
    record = json.loads((out / RECORD_FILE).read_text())
    check = record["seeded_check"]
    assert sum(check["seeds"].values()) == seeded.sum() and 0 <= check["recall"] <= 1
    assert "labels changed on purpose" in done.stdout.strip().splitlines()[-1]
    assert "labels changed on purpose" in (out / "report.html").read_text()
    for name in ("cleaned.csv", "weights.csv"):
        written = pd.read_csv(out / name, keep_default_na=False, dtype={"label": str})
        folders = written["path"].str.slice(len(str(digits_folder[0])) + 1).str.split("/").str[0]
        assert (written["label"] == folders).all(), name
    datalab = pd.read_csv(out / "datalab_issues.csv", keep_default_na=False, dtype={"given_label": str})
    assert (datalab["given_label"] == datalab["path"].str.split("/").str[0]).all()
    phase1 = out / record["phase1"]
    key = json.loads((phase1 / "find_issues_key.json").read_text())
    assert key["seed_rate"] == 0.03 and (phase1 / "seeded_flips.npz").is_file()


def test_corrupt_files_are_skipped_and_listed(finished):
    out, done = finished
    skipped = (out / "skipped.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in skipped) == ["0/corrupt.png", "1/truncated.png"]
    assert "skipping 2 unreadable images" in done.stderr


class _Collector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def test_report_is_valid_self_contained_and_escaped(finished):
    out, _ = finished
    page = (out / "report.html").read_text()
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert "script" not in parser.tags and parser.tags.count("img") >= 10 * PER_CLASS
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert "<script" not in page and "<img src=x" not in page
    text = "".join(parser.text)
    assert HOSTILE_FILE in text and HOSTILE_CLASS in text   # shown as text, escaped in the markup
    assert "Content-Security-Policy" in page


def test_rerun_of_a_finished_run_rescores_identically(digits_folder, finished, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(finished[0], out)
    main([str(digits_folder[0]), "--out", str(out), *RECIPE[:-2]])   # default --report_top 100
    assert "already finished" in capsys.readouterr().out
    assert (out / "suspects.csv").read_bytes() == (finished[0] / "suspects.csv").read_bytes()
    assert (out / "report.html").read_text().count('class="card"') == 100
    with pytest.raises(SystemExit) as exited:
        main([str(digits_folder[0]), "--out", str(out), *RECIPE, "--num_epochs", "5"])
    assert exited.value.code == 2 and "phase-1 run of other plan" in capsys.readouterr().err


def test_detector_scores_and_threshold(digits_folder, finished, tmp_path, capsys):
    """An (untrained) detector file takes over the score; the baselines stay as columns."""
    out = tmp_path / "copy"
    shutil.copytree(finished[0], out)
    torch.manual_seed(0)
    save_detector(tmp_path / "tiny.pth.tar", LSTMDetector(1, 4, 1), detector_config(["prob"], 4, 1, 20))
    tiny = str(tmp_path / "tiny.pth.tar")
    main([str(digits_folder[0]), "--out", str(out), *RECIPE, "--detector_files", tiny, tiny])
    table = pd.read_csv(out / "suspects.csv", keep_default_na=False)
    assert table["lstm:tiny"].equals(table["lstm:tiny#2"])
    assert table["score"].equals(table["lstm:tiny"]) and table["score"].between(0, 1).all()
    flagged = int(table["flagged"].sum())   # the run's estimated count: the top rows of the sorted table
    assert 0 < flagged < len(table) and table["flagged"].tolist() == [1] * flagged + [0] * (len(table) - flagged)
    assert f"{flagged} flagged (the {flagged:,} highest scores)" in capsys.readouterr().out.splitlines()[-1]


def test_killed_run_resumes_to_the_same_suspects(digits_folder, finished, tmp_path):
    out = tmp_path / "resumed"
    command = [str(ROOT / "run.sh"), "find_issues", str(digits_folder[0]), "--out", str(out), *RECIPE]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHON=sys.executable, **ENV), start_new_session=True)
    deadline = time.monotonic() + 300
    while (not list(out.glob(f"phase1/*/{CHECKPOINT_FILE}")) and process.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    assert not (out / "suspects.csv").exists(), "the run ended before it could be killed"
    done = find_issues(digits_folder[0], out, *RECIPE)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stdout
    assert (out / "suspects.csv").read_bytes() == (finished[0] / "suspects.csv").read_bytes()


def test_without_a_detector_the_baselines_rank_and_say_so(digits_folder, finished, tmp_path, capsys, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(finished[0], out)
    monkeypatch.setattr(find_issues_module, "DEFAULT_DETECTOR", tmp_path / "absent.pth.tar")
    main([str(digits_folder[0]), "--out", str(out), *RECIPE])
    table = pd.read_csv(out / "suspects.csv", keep_default_na=False)
    assert table["score"].equals(table["aum"]) and not any(c.startswith("lstm:") for c in table.columns)
    flagged = int(table["flagged"].sum())   # the same estimated count, on AUM's ranking
    assert 0 < flagged and table["flagged"].tolist() == [1] * flagged + [0] * (len(table) - flagged)
    assert "baselines only" in capsys.readouterr().out.splitlines()[-1]
    assert "baselines only" in (out / "report.html").read_text()


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written
# ---------------------------------------------------------------------------------------------

def _image(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), value).save(path)


def test_empty_class_is_refused(tmp_path):
    _image(tmp_path / "data" / "cat" / "a.png")
    (tmp_path / "data" / "dog").mkdir()
    refused(lambda: main([str(tmp_path / "data"), "--out", str(tmp_path / "out")]), "holds no images",
            unchanged=[tmp_path / "out"])


def test_single_class_is_refused(tmp_path):
    _image(tmp_path / "data" / "cat" / "a.png")
    refused(lambda: main([str(tmp_path / "data"), "--out", str(tmp_path / "out")]), "at least 2",
            unchanged=[tmp_path / "out"])


def test_csv_without_label_column_is_refused(tmp_path):
    _image(tmp_path / "a.png")
    (tmp_path / "list.csv").write_text("path,klass\na.png,cat\n")
    refused(lambda: main([str(tmp_path / "list.csv"), "--out", str(tmp_path / "out")]), "lacks column(s) label",
            unchanged=[tmp_path / "out"])


def test_csv_with_an_empty_class_index_is_refused(tmp_path):
    for name in ("a.png", "b.png", "c.png", "d.png"):
        _image(tmp_path / name)
    (tmp_path / "list.csv").write_text("path,label\na.png,0\nb.png,0\nc.png,2\nd.png,2\n")
    refused(lambda: main([str(tmp_path / "list.csv"), "--out", str(tmp_path / "out")]),
            "class '1' has no training images", unchanged=[tmp_path / "out"])


def test_csv_paths_outside_its_folder_need_allow_outside(tmp_path):
    for name, value in (("a.png", 0), ("b.png", 255)):
        _image(tmp_path / name, value)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "list.csv").write_text("path,label\n" + "../a.png,cat\n../b.png,dog\n" * 3)
    refused(lambda: main([str(tmp_path / "lists" / "list.csv"), "--out", str(tmp_path / "out")]), "--allow_outside",
            unchanged=[tmp_path / "out"])
    listing = list_data(tmp_path / "lists" / "list.csv", seed=0, allow_outside=True)
    assert len(listing.train_files) == 6 and listing.class_names == ["cat", "dog"] and not listing.held_out


def test_a_file_that_is_not_a_detector_is_refused(tmp_path):
    for name, value in (("cat/a.png", 0), ("dog/b.png", 255)):
        _image(tmp_path / "data" / name, value)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "model.pth")
    refused(lambda: find_issues(tmp_path / "data", tmp_path / "out", "--detector_files", str(tmp_path / "model.pth")),
            "is not a detector", unchanged=[tmp_path / "out"])


def test_every_image_unreadable_in_a_class_is_refused(tmp_path):
    _image(tmp_path / "data" / "cat" / "a.png")
    _image(tmp_path / "data" / "cat" / "b.png")
    (tmp_path / "data" / "dog").mkdir()
    (tmp_path / "data" / "dog" / "c.png").write_bytes(b"broken")
    refused(lambda: main([str(tmp_path / "data"), "--out", str(tmp_path / "out")]), "class 'dog' has no readable",
            "dog/c.png", unchanged=[tmp_path / "out"], after_progress=True)   # after the scan's progress bar


def test_bare_tree_scores_everything_and_default_plan_scales(tmp_path):
    for c in range(2):
        for i in range(10):
            _image(tmp_path / "data" / str(c) / f"{i}.png", 100 * c)
    listing = list_data(tmp_path / "data", seed=0)
    assert len(listing.train_files) == 20 and len(listing.test_files) == 2 and not listing.held_out
    assert set(listing.test_files) <= set(listing.train_files)
    small, photos = default_plan(500, 16), default_plan(200_000, 400)
    assert (small.net_type, small.depth, small.image_size, small.batch_size, small.in_memory) == \
        ("resnet", 20, 16, 32, True)
    assert (photos.depth, photos.image_size, photos.epochs, photos.in_memory) == (18, 224, 12, False)
    with pytest.raises(UserError, match="does not exist"):
        list_data(tmp_path / "nowhere", seed=0)


def test_the_python_api_is_the_same_pipeline(digits_folder, finished, tmp_path):
    """mislabel.find_issues takes the flags by name, checks them as the command does and returns
    the suspects table the command writes (here a finished copy: it only scores again)."""
    import mislabel

    out = tmp_path / "copy"
    shutil.copytree(finished[0], out)
    table = mislabel.find_issues(digits_folder[0], out=str(out), net_type="lenet", num_epochs=20, no_hflip=True,
                                 device="cpu", report_top=600)
    written = pd.read_csv(out / "suspects.csv", keep_default_na=False)
    assert table.attrs["out"] == str(out) and table.attrs["summary"].startswith("find_issues: ")
    assert list(table.columns) == list(written.columns) and table["path"].tolist() == written["path"].tolist()
    assert (out / "suspects.csv").read_bytes() == (finished[0] / "suspects.csv").read_bytes()
    with pytest.raises(ValueError, match="unknown find_issues settings \\['num_epoch'\\]"):
        mislabel.find_issues(digits_folder[0], out=str(out), num_epoch=3)
    with pytest.raises(ValueError, match="--lr"):
        mislabel.find_issues(digits_folder[0], out=str(out), lr=float("nan"))
