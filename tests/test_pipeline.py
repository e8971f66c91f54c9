"""Phase 1 → detector → denoise on digits, through run.sh as a user would call it."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from conftest import TINY_RECIPE, refused, run_python, run_sh
from mislabel.scoring.lstm import load_detector
from mislabel.scoring.predict import get_order
from mislabel.core.dynamics import load_dynamics
from mislabel.scoring.cleaning import RECOMMENDED_ACTION

pytestmark = pytest.mark.slow   # every test runs whole commands (phase 1, the detector, phase 3)

FAST = ["--net_type", "lenet", "--depth", "5", "--num_epochs", "3", "--device", "cpu", "--num_valid", "50"]


def test_phase1_files_and_npz_format(uniform30_run):
    expected = {"model.pth", "model.pth.last", "train_log.csv", "results_valid.csv", "results_test.csv",
                "metadata.pth", "training_dynamics.npz", "summary.json", "cmd.txt"}
    assert expected <= {p.name for p in uniform30_run.iterdir()}
    meta = torch.load(uniform30_run / "metadata.pth", weights_only=True)
    assert set(meta) == {"train_indices", "valid_indices", "true_targets", "assigned_targets", "label_flipped"}
    assert all(isinstance(value, torch.Tensor) for value in meta.values())
    assert torch.equal(meta["label_flipped"], meta["assigned_targets"] != meta["true_targets"])
    assert len(np.intersect1d(meta["train_indices"], meta["valid_indices"])) == 0
    flip_rate = meta["label_flipped"].float().mean().item()
    assert 0.25 < flip_rate < 0.35

    npz = np.load(uniform30_run / "training_dynamics.npz")
    td, labels, margin, pred = npz["td"], npz["labels"], npz["margin"], npz["pred"]
    num_train, epochs = len(meta["train_indices"]), 30
    assert td.shape == (num_train, epochs, 10) and td.dtype == np.float16
    assert labels.shape == (num_train, 10) and margin.shape == (num_train, epochs) and pred.dtype == np.int16
    assert np.array_equal(npz["indices"], meta["train_indices"].numpy())
    assert np.array_equal(labels[:, 0], meta["assigned_targets"][npz["indices"]].numpy())
    assert np.allclose(td.astype(np.float32).sum(axis=2), 1.0, atol=2e-2)
    others = td[:, :, 1:].astype(np.float32).mean(axis=1)
    assert np.all(np.diff(others, axis=1) <= 2e-3)
    argmax_class = np.take_along_axis(labels, td.astype(np.float32).argmax(axis=2), axis=1)
    agree = argmax_class == pred
    assert agree.mean() > 0.99                          # fp16 ties aside, pred is the argmax of td
    assert np.array_equal(margin > 0, pred == labels[:, :1])

    with open(uniform30_run / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == epochs
    assert {"epoch", "train_error", "train_loss", "valid_error", "valid_top5_error", "valid_loss"} <= set(rows[0])
    summary = json.loads((uniform30_run / "summary.json").read_text())
    assert summary["selected_on_validation"] and summary["test_accuracy"] > 0.8


def test_detector_finds_uniform_noise(uniform30_run, detector_file):
    blob = torch.load(detector_file, weights_only=True)
    assert blob["config"]["features"] == ["correct", "prob_rank", "margin_rank", "confusion", "class_error"]
    assert blob["config"]["num_epochs_seen"] == 30
    assert blob["config"]["readout"] == "pool" and blob["config"]["seq_len"] == 32
    assert blob["metrics"]["auc"] > 0.9
    model, config = load_detector(detector_file)
    ranking = get_order(model, config, load_dynamics(uniform30_run))
    assert ranking.auc > 0.9 and ranking.map > 0.8


def test_denoise_small_transfers_to_flip_noise(tmp_path, detector_file):
    env = {"RESULTS_DIR": str(tmp_path)}
    done = run_sh("generate_td", "unused", "digits", "2", "0.2", "flip", "resnet", "20", *TINY_RECIPE[4:], env=env)
    assert done.returncode == 0, done.stderr
    done = run_sh("denoise_small", "unused", "digits", "2", "0.2", "flip", str(detector_file), "0.2",
                  *TINY_RECIPE, env=env)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "digits_resnet20_percmislabeled0.2_flip" / "prune4retrain_seed2" / "remove0.2"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["detection"]["auc"] > 0.9
    assert summary["num_removed"] == round(0.2 * summary["num_ranked"])
    assert "detection AUC" in done.stdout and "after removal" in done.stdout
    with open(folder / "suspects.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["rank", "index", "given_label", "predicted_label", "score", "flagged", "true_label"]
    scores = [float(row["score"]) for row in rows]
    assert scores == sorted(scores, reverse=True) and len(rows) == summary["num_ranked"]


def test_denoise_large_without_ground_truth_says_so(tmp_path, detector_file):
    env = {"RESULTS_DIR": str(tmp_path)}
    done = run_sh("generate_td", "unused", "digits", "3", "0", "uniform", "lenet", "5", *FAST, env=env)
    assert done.returncode == 0, done.stderr
    td_dir = tmp_path / "digits_lenet5_percmislabeled0_uniform" / "computation4td_seed3"
    assert td_dir.is_dir()
    done = run_sh("denoise_large", "unused", "digits", "3", str(detector_file), "0.1", *FAST,
                  "--td_dir", str(td_dir), env=env)
    assert done.returncode == 0, done.stderr
    assert "unavailable" in done.stdout
    folder = tmp_path / "digits_lenet5" / "prune4retrain_seed3" / "remove0.1"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["detection"] is None and summary["num_removed"] == round(0.1 * summary["num_ranked"])


def test_finished_run_is_not_overwritten(tmp_path):
    env = {"RESULTS_DIR": str(tmp_path)}
    args = ("generate_td", "unused", "digits", "4", "0.2", "uniform", "lenet", "5", *FAST)
    assert run_sh(*args, env=env).returncode == 0
    model = tmp_path / "digits_lenet5_percmislabeled0.2_uniform" / "computation4td_seed4" / "model.pth"
    refused(lambda: run_sh(*args, env=env), "--overwrite", unchanged=[model])
    assert run_sh(*args, "--overwrite", env=env).returncode == 0


def test_same_command_same_results_on_cpu(tmp_path):
    outputs = []
    for name in ("a", "b"):
        done = run_python("runner.py", "generate_td", "--dataset", "digits", "--seed", "5", "--noise_ratio", "0.2",
                          "--results_dir", str(tmp_path / name), *FAST)
        assert done.returncode == 0, done.stderr
        outputs.append(np.load(next((tmp_path / name).glob("*/*/training_dynamics.npz")))["td"])
    assert np.array_equal(outputs[0], outputs[1])


def test_demo_end_to_end_at_tiny_size(tmp_path):
    """conv4 learns digits in 4 epochs (a LeNet-5 stays near chance there: every ranking is then
    noise, and a 30% removal may empty a class, which phase 3 refuses)."""
    env = {"RESULTS_DIR": str(tmp_path), "DEMO_NET": "conv4", "DEMO_DEPTH": "4", "DEMO_EPOCHS": "4",
           "DEMO_DETECTOR_EPOCHS": "3"}
    done = run_sh("demo", "--device", "cpu", env=env)
    assert done.returncode == 0, done.stderr
    stages = tmp_path / "demo" / "digits_conv44_percmislabeled0.3_flip_seeded0.03" / "prune4retrain_seed2"
    summary = json.loads((stages / "remove0.3" / "summary.json").read_text())
    assert summary["detection"]["auc"] > 0.5 and summary["noisy_test_accuracy"] is not None
    oracle = json.loads((stages / "oracle" / "summary.json").read_text())
    recommended = json.loads((stages / f"{RECOMMENDED_ACTION}auto" / "summary.json").read_text())
    flipped = int(load_dynamics(stages.parent / "computation4td_seed2").flipped.sum())   # the seeds among them
    assert oracle["num_removed"] == flipped and recommended["action"] == RECOMMENDED_ACTION
    seeds = round(0.03 * 1293)
    assert sum(recommended["seeded_check"]["seeds"].values()) == seeds
    table = done.stdout[done.stdout.index("| wrong labels, true (injected) |"):]
    for row in (f"| wrong labels, true (injected) | {flipped:,} of 1,293 (after {seeds} were changed on purpose) |",
                f"| recall at the flagged line, measured on seeded flips | of the {seeds} labels changed on purpose, ",
                "| recall at the flagged line, true (the injected flips) | ",
                f"| wrong labels, estimated | ~{recommended['estimated_wrong_labels']['estimate']:,} wrong labels",
                "| test accuracy, trained on the noisy labels |", "| test accuracy, remove the top 30% (the seed's",
                f"| test accuracy, {RECOMMENDED_ACTION} the ~",
                f"| test accuracy, oracle: without exactly the {flipped:,}",
                "| test set | 360 images: 1 image = 0.28 points |"):
        assert row in table, row
    assert "on these 360 test images" in table.splitlines()[-1]


def test_denoise_auto_acts_on_the_estimated_count_with_the_chosen_action(tmp_path, detector_file):
    """remove_ratio auto takes the run's estimated number of wrong labels; --action hybrid relabels the
    suspects the network preferred another class for and removes the rest; a bad action is refused."""
    env = {"RESULTS_DIR": str(tmp_path)}
    noise = ["unused", "digits", "4", "0.3", "uniform"]
    done = run_sh("generate_td", *noise, "lenet", "5", *FAST[4:], env=env)
    assert done.returncode == 0, done.stderr
    done = run_sh("denoise_small", *noise, str(detector_file), "auto", *FAST, "--action", "hybrid", env=env)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "digits_lenet5_percmislabeled0.3_uniform" / "prune4retrain_seed4" / "hybridauto"
    summary = json.loads((folder / "summary.json").read_text())
    count = summary["estimated_wrong_labels"]
    assert summary["action"] == "hybrid" and summary["remove_ratio"] == "auto"
    assert 0 < count["estimate"] == summary["num_suspects"] == summary["num_removed"] + summary["num_relabelled"]
    assert count["likely"][0] <= count["estimate"] <= count["likely"][1]
    assert f"remove_ratio auto: ~{count['estimate']:,} wrong labels" in done.stdout
    with open(folder / "suspects.csv") as handle:
        assert sum(int(row["flagged"]) for row in csv.DictReader(handle)) == summary["num_suspects"]
    refused(run_sh("denoise_small", *noise, str(detector_file), "auto", *FAST, "--action", "burn", env=env),
            "--action")
    weighted = folder.parent / "downweightauto"
    refused(lambda: run_sh("denoise_small", *noise, str(detector_file), "auto", *FAST, "--action", "downweight",
                           "--loss_type", "reed_soft", env=env),
            "--loss_type cross_entropy", unchanged=[weighted, folder])
