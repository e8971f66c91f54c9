"""Hostile inputs, round 4 (issue 33): a refused find_issues writes nothing, the Python API refuses what
the command line refuses (every setting, both doors, the same words), and the newer surfaces (Recorder,
the callbacks' recording, train_detector, the Datalab export, class folders) keep the promise: one line,
exit 2 (a ``UserError`` from Python), no traceback, the files that were there byte for byte."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import mislabel
import train_detector
from conftest import refused, snapshot
from mislabel.commands.compare import main as compare_main
from mislabel.commands.find_issues import main as find_issues_main
from mislabel.core.dynamics import Dynamics, save_dynamics, write_metadata
from mislabel.core.files import write_record
from mislabel.data.user_data import list_data
from mislabel.integrations.recording import DynamicsRecording
from mislabel.reports.datalab import datalab_table, to_datalab
from mislabel.reports.issues_actions import action_writes
from mislabel.training import recorder_input
from mislabel.training.crossval import PRED_PROBS_FILE, load_pred_probs
from mislabel.training.recorder import Recorder


def class_folders(root: Path, classes: int = 2, count: int = 10) -> Path:
    for label in range(classes):
        (root / f"c{label}").mkdir(parents=True, exist_ok=True)
        for number in range(count):
            Image.new("L", (8, 8), 20 * number + 100 * label).save(root / f"c{label}" / f"{number}.png")
    return root


def run_folder(folder: Path, samples: int = 40, epochs: int = 4, classes: int = 10) -> Dynamics:
    """A small valid run folder (dynamics only), as rank and compare read it."""
    rng = np.random.default_rng(0)
    assigned = rng.integers(0, classes, samples)
    prob = rng.random((samples, epochs)).astype(np.float16)
    dyn = Dynamics(td=np.stack([prob, (1 - prob) / 2], axis=2).astype(np.float16),
                   labels=np.stack([assigned, (assigned + 1) % classes], axis=1), margin=prob * 4 - 2,
                   pred=np.where(prob > 0.4, assigned[:, None], (assigned[:, None] + 1) % classes).astype(np.int16),
                   indices=np.arange(samples), num_classes=classes)
    folder.mkdir(parents=True, exist_ok=True)
    save_dynamics(folder, dyn)
    return dyn


# --- A: a refused find_issues writes nothing -------------------------------------------------------

QUICK = ["--net_type", "lenet", "--depth", "5", "--num_epochs", "2", "--budget", "1", "--device", "cpu"]


@pytest.mark.slow   # one whole find_issues run
def test_a_rerun_with_another_recipe_changes_no_file(tmp_path):
    data, out = class_folders(tmp_path / "imgs"), tmp_path / "out"
    find_issues_main([str(data), "--out", str(out), *QUICK])
    finished = snapshot(out)
    other = [*QUICK[:5], "3", *QUICK[6:]]
    refused(lambda: find_issues_main([str(data), "--out", str(out), *other]), "holds a phase-1 run of other plan",
            unchanged=[out])
    refused(lambda: mislabel.find_issues(data, out=out, net_type="lenet", num_epochs=2, budget=1, device="cpu",
                                         no_hflip=True), "other hflip", unchanged=[out])
    assert snapshot(out) == finished


def test_a_refused_api_call_creates_no_output_folder(tmp_path):
    data, out = class_folders(tmp_path / "imgs"), tmp_path / "new"
    refused(lambda: mislabel.find_issues(data, out=out, budget=1, num_epochs=2.5), "num_epochs=2.5",
            "is not an integer", unchanged=[out, data])


def test_a_foreign_pretrained_file_found_when_the_model_is_built_leaves_no_file(tmp_path):
    data, out = class_folders(tmp_path / "imgs"), tmp_path / "new"
    (tmp_path / "weights.pt").write_bytes(b"not a state dict")
    refused(lambda: find_issues_main([str(data), "--out", str(out), "--net_type", "lenet", "--device", "cpu",
                                      "--pretrained_path", str(tmp_path / "weights.pt")]), "weights.pt",
            unchanged=[out, data], after_progress=True)


# --- B: both doors refuse the same values with the same words --------------------------------------
# setting -> (a value of the wrong type for the API, what argparse cannot parse or None for a switch,
# an out-of-range value as the API passes it, the same as typed, and a word of the refusal)

SETTINGS = {
    "out": (5, None, "FILE", "FILE", "is a file, expected a folder"),
    "detector_files": ("x.pth.tar", None, ["missing.pth.tar"], "missing.pth.tar", "does not exist"),
    "allow_outside": ("no", None, None, None, ""),
    "report_top": ("10", "ten", 0, "0", "--report_top 0 must be at least 1"),
    "budget": (True, "five", -1, "-1", "--budget -1 is not a number of minutes"),
    "storage": (5, None, "memroy", "memroy", "unknown --storage 'memroy'"),
    "no_hflip": ("no", None, None, None, ""),
    "seed": (1.5, "1.5", 2**40, str(2**40), "--seed 1099511627776 is outside 0..4294967295"),
    "image_size": ("32", "x", 100000, "100000", "--image_size 100000 is outside 8..1024"),
    "num_workers": ("2", "x", 10**6, str(10**6), "--num_workers 1000000 is outside 0..256"),
    "net_type": (5, None, "transformer", "transformer", "unknown --net_type 'transformer'"),
    "depth": ("5", "x", 7, "7", "--depth 7 is not valid for resnet"),
    "widen_factor": ("2", "x", 0, "0", "--widen_factor applies only to wide_resnet"),
    "pretrained_path": (5, None, "missing.pt", "missing.pt", "--pretrained_path missing.pt does not exist"),
    "num_epochs": (2.5, "2.5", 10**9, str(10**9), "--num_epochs 1000000000 is outside 1..10000"),
    "batch_size": ("8", "x", 1, "1", "--batch_size 1 is outside 2..65536"),
    "lr": ("fast", "fast", float("inf"), "inf", "--lr inf is not a finite number"),
    "momentum": ("x", "x", 1.5, "1.5", "--momentum 1.5 is outside [0, 1)"),
    "wd": ("x", "x", -1, "-1", "--wd -1.0 is negative"),
    "loss_type": (5, None, "mse", "mse", "unknown --loss_type 'mse'"),
    "td_mode": (5, None, "test", "test", "unknown --td_mode 'test'"),
    "td_store": (5, None, "disk", "disk", "unknown --td_store 'disk'"),
    "td_topk": ("2", "x", 0, "0", "--td_topk 0 must be at least 1"),
    "device": (5, None, None, None, ""),
    "amp": ("yes", None, None, None, ""),
    "compile": ("yes", None, None, None, ""),
    "results_dir": (5, None, "FILE", "FILE", "is a file, expected a folder"),
    "overwrite": ("yes", None, None, None, ""),
    "seed_rate": ("0.1", "x", 0.5, "0.5", "seed rate must be a number in [0, 0.2]"),
    "backbone": (5, None, "alexnet", "alexnet", "unknown --backbone 'alexnet'"),
    "mode": (5, None, "train", "train", "--mode applies only with --backbone"),
    "backbone_weights": (5, None, "missing.pt", "missing.pt", "--backbone_weights applies only with --backbone"),
}


def test_every_setting_is_walked():
    from mislabel.issue_options import issues_parser

    flags = {action.dest for action in issues_parser()._actions} - {"help", "data"}
    assert flags == set(SETTINGS)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_both_doors_refuse_a_wrong_type_and_an_out_of_range_value(name, tmp_path, monkeypatch):
    wrong_type, unparsable, out_of_range, typed, words = SETTINGS[name]
    data, out = class_folders(tmp_path / "imgs"), tmp_path / "out"
    (tmp_path / "FILE").write_text("a file\n")
    monkeypatch.chdir(tmp_path)  # relative names (FILE, missing.pt) resolve here
    line = refused(lambda: mislabel.find_issues(data, **{"out": out, name: wrong_type}),
                   f"{name}={wrong_type!r} is not", unchanged=[tmp_path])
    kind = line.split(" is not ")[1].split(" (")[0]
    if unparsable is not None:
        refused(lambda: find_issues_main([str(data), "--out", str(out), f"--{name}", unparsable]), f"--{name}",
                f"is not {kind}", unchanged=[tmp_path])
    if out_of_range is not None:
        api = refused(lambda: mislabel.find_issues(data, **{"out": out, name: out_of_range}), words,
                      unchanged=[tmp_path])
        flag = [f"--{name}", *([typed] if isinstance(typed, str) else typed)]
        command = refused(lambda: find_issues_main([str(data), *(["--out", str(out)] if name != "out" else []),
                                                    *flag]), unchanged=[tmp_path])
        assert command == api  # the same words from both doors


@pytest.mark.parametrize("value", [None, 5, {"path": "x"}])
def test_data_of_the_wrong_type_is_refused(value):
    refused(lambda: mislabel.find_issues(value), "data=", "is not a path or name")


def test_a_path_as_out_is_accepted_as_the_flag_would_be(tmp_path):
    from mislabel.issue_options import issue_options

    (tmp_path / "d").write_bytes(b"")  # only its existence is checked here
    options = issue_options(class_folders(tmp_path / "imgs"), out=tmp_path / "out", detector_files=[tmp_path / "d"])
    assert options.out == str(tmp_path / "out") and options.detector_files == [str(tmp_path / "d")]
    assert isinstance(options.arguments()["out"], str)


def test_rank_refuses_a_string_of_methods(tmp_path):
    run_folder(tmp_path / "run")
    refused(lambda: mislabel.rank(tmp_path / "run", methods="aum"), "methods='aum' is not a list", "['aum']")


# --- C: the Recorder and the callbacks' recording ----------------------------------------------------

def test_non_finite_logits_are_refused_naming_the_batch(tmp_path, monkeypatch):
    recorder = Recorder(4, 3, 1)
    recorder.update(torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([0, 1]))
    logits = torch.tensor([[0.0, 1.0, 2.0], [float("nan"), 0.0, 0.0]])
    refused(lambda: recorder.update(logits, torch.tensor([0, 1]), torch.tensor([2, 3])), "batch 2 of epoch 0",
            "NaN or inf", "at index 3")
    monkeypatch.setattr(recorder_input, "CHECKED_EACH_BATCH", frozenset())  # as on a GPU: told when the epoch closes
    deferred = Recorder(2, 3, 1)
    deferred.update(torch.full((2, 3), float("inf")), torch.tensor([0, 1]), torch.tensor([0, 1]))
    refused(deferred.next_epoch, "epoch 0: update refused 2 entries", "batch 1 of epoch 0 hold NaN or inf")


def test_a_file_in_the_folders_place_is_refused_before_training(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("mine\n")
    recorder = Recorder(2, 3, 1)
    recorder.update(torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([0, 1]))
    recorder.next_epoch()
    refused(lambda: recorder.save(taken), f"folder {taken} is a file, expected a folder", unchanged=[taken])
    refused(lambda: DynamicsRecording(2, 3, taken), f"out {taken} is a file", unchanged=[taken])
    refused(lambda: Recorder(2, 3, 1, path=taken / "below"), "lies below", unchanged=[taken])


def test_an_index_beyond_num_samples_reaches_the_recorders_refusal(tmp_path):
    recording = DynamicsRecording(4, 3, tmp_path / "run", num_epochs=1)
    recording._start(None, "max_epochs")
    refused(lambda: recording._record(torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([1, 7])),
            "indices holds 7", "num_samples=4", unchanged=[tmp_path])


def test_a_recorder_larger_than_memory_is_refused_with_its_size():
    refused(lambda: Recorder(10**13, 3, 2), "GiB, more than this machine's", "store='memmap'")


def test_minus_one_is_padding_and_other_negative_indices_are_refused():
    recorder = Recorder(2, 3, 1)
    recorder.update(torch.zeros(3, 3), torch.tensor([0, 1, 2]), torch.tensor([0, 1, -1]))
    recorder.next_epoch()  # the padding row is not recorded: both rows once
    refused(lambda: recorder.update(torch.zeros(1, 3), torch.tensor([0]), torch.tensor([-2])), "indices holds -2")


# --- D: train_detector ---------------------------------------------------------------------------------

def detector_job(tmp_path: Path) -> list[str]:
    return ["--r", "0.3", "--dataset", "digits", "--files_path", str(tmp_path / "run"), "--out",
            str(tmp_path / "d.pth.tar")]


@pytest.mark.parametrize("flags,words", [(["--gate_folds", "1000000"], "--gate_folds 1000000 must be 0"),
                                         (["--lr", "inf"], "--lr inf must be a positive finite number")])
def test_train_detector_settings_are_refused_at_once(tmp_path, flags, words):
    run_folder(tmp_path / "run")
    refused(lambda: train_detector.main([*detector_job(tmp_path), *flags]), words, unchanged=[tmp_path])


def test_an_unwritable_control_out_is_refused_before_the_detector_is_written(tmp_path, monkeypatch):
    run_folder(tmp_path / "run")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == locked else real_access(path, mode))
    refused(lambda: train_detector.main([*detector_job(tmp_path), "--control_out", str(locked / "c.pth.tar")]),
            "cannot write to", "--control_out", unchanged=[tmp_path])


# --- E: other commands -----------------------------------------------------------------------------------

def test_image_size_beyond_the_bound_is_refused(tmp_path):
    data = class_folders(tmp_path / "imgs")
    refused(lambda: find_issues_main([str(data), "--out", str(tmp_path / "out"), "--image_size", "100000"]),
            "--image_size 100000 is outside 8..1024", unchanged=[tmp_path])


def test_pred_probs_of_another_class_count_are_refused_by_name(tmp_path):
    folder = tmp_path / "run"
    dyn = run_folder(folder)
    np.save(folder / PRED_PROBS_FILE, np.full((dyn.num_samples, 12), 1 / 12, dtype=np.float32))
    refused(lambda: load_pred_probs(folder, dyn), f"{folder / PRED_PROBS_FILE} has shape (40, 12)", "10 classes")
    refused(lambda: compare_main([str(folder)]), PRED_PROBS_FILE, "10 classes", unchanged=[folder])


def test_to_datalab_refuses_what_would_export_wrong_rows():
    table = pd.DataFrame({"index": [0, 1, 2], "given_label": [0, 1, 1], "predicted_label": [0, 1, 0],
                          "flagged": [0, 0, 1], "detector": [0.1, 0.2, 0.9]})
    assert to_datalab(table)["label_score"].between(0, 1).all()
    for damaged, words in ((table.assign(detector=[0.1, np.nan, 0.9]), "NaN or infinite"),
                           (table.assign(detector=[0.1, 1.5, 0.9]), "outside [0, 1]"),
                           (table.assign(index=[0, 0, 0]), "negative or repeated"),
                           (table.assign(given_label=[0.0, np.nan, 1.0]), "given_label holds a missing value")):
        refused(lambda: to_datalab(damaged), words)
    for value in (None, {"detector": [0.5]}):
        refused(lambda: to_datalab(value), "expected the DataFrame mislabel.rank returns")
    refused(lambda: datalab_table([0], [0], [np.inf], [True]), "NaN or infinite")


def test_a_class_folder_linking_to_another_is_refused(tmp_path):
    data = class_folders(tmp_path / "imgs")
    (data / "c2").symlink_to("c0")
    refused(lambda: find_issues_main([str(data), "--out", str(tmp_path / "out")]), f"class folder {data / 'c2'}",
            "two classes", unchanged=[tmp_path])
    (data / "c2").unlink()
    (data / "c2").symlink_to(class_folders(tmp_path / "elsewhere", classes=1) / "c0")  # outside: followed
    assert len(list_data(str(data), 0, False).class_names) == 3


# --- the smaller ones ------------------------------------------------------------------------------------

def test_images_in_formats_not_read_are_named(tmp_path, capsys):
    data = class_folders(tmp_path / "imgs")
    Image.new("L", (8, 8)).save(data / "c0" / "anim.gif")
    listing = list_data(str(data), 0, False)
    assert not any(f.endswith(".gif") for f in listing.train_files + listing.test_files)
    assert "left out 1 images in formats not read" in capsys.readouterr().err


def test_a_rerun_removes_the_temporary_files_of_a_killed_writer(tmp_path):
    host = socket.gethostname()
    dead = tmp_path / f".record.json.{2**22 + 12345}@{host}.abcd1234.tmp"   # above Linux's default pid_max
    live = tmp_path / f".record.json.{os.getpid()}@{host}.efgh5678.tmp"
    dead.write_text("torn")
    live.write_text("being written")
    write_record(tmp_path / "record.json", {"a": 1})
    assert not dead.exists() and live.exists()


def test_the_report_says_when_cleaned_csv_empties_a_class(tmp_path):
    weighted = pd.DataFrame({"path": ["a", "b", "c"], "label": ["cat", "dog", "dog"], "weight": [1.0, 0.5, 1.0]})
    cleaned = weighted.iloc[[0, 2]].drop(columns="weight")
    _, notes = action_writes(tmp_path, cleaned, weighted, pd.DataFrame())
    assert "no training image of" not in notes["cleaned.csv"]
    _, notes = action_writes(tmp_path, weighted.iloc[[1, 2]].drop(columns="weight"), weighted, pd.DataFrame())
    assert "holds no training image of cat (all flagged)" in notes["cleaned.csv"]


def test_metadata_labels_must_match_the_dynamics(tmp_path):
    folder = tmp_path / "run"
    dyn = run_folder(folder)
    other = dyn.assigned.copy()
    other[5] = (other[5] + 1) % 10
    write_metadata(folder, dyn.indices, np.zeros(0, dtype=np.int64), other, dyn.assigned)
    refused(lambda: mislabel.rank(folder, methods=["aum"]), "gives 1 samples other labels", "index 5",
            unchanged=[folder])
    refused(lambda: compare_main([str(folder)]), "different runs", unchanged=[folder])


def test_a_labels_row_naming_a_class_twice_is_refused(tmp_path):
    folder = tmp_path / "run"
    dyn = run_folder(folder)
    labels = dyn.labels.copy()
    labels[3, 1] = labels[3, 0]
    refused(lambda: mislabel.rank({"td": dyn.td, "labels": labels, "margin": dyn.margin, "pred": dyn.pred},
                                  methods=["aum"]), "labels row 3 names a class twice")
