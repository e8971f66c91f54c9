"""Detector variants beyond the paper: readout, bidirectional LSTM, extra features, fixed-length resampling.

Runs on synthetic dynamics written straight to run folders (no classifier training), so the whole
file takes seconds: clean samples learn their label early, flipped ones are memorised late.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mislabel.scoring.features import build_features, resample
from mislabel.scoring.lstm import LSTMDetector, build_detector, detector_config, load_detector, save_detector
from mislabel.scoring.predict import detector_scores
from train_detector import main as train_main
import mislabel
from mislabel.core.dynamics import METADATA_FILE, Dynamics, load_dynamics, save_dynamics
from mislabel.core.user_input import UserError
from mislabel.scoring.detector_training import MIN_PER_CLASS, DetectorRecipe, train_detector


def synthetic_run(folder: Path, epochs: int, seed: int, num_samples: int = 300, noise: float = 0.3,
                  flips: int | None = None) -> Path:
    """A run folder whose flipped samples rise to high probability only in the last third of training;
    ``flips`` flipped samples exactly instead of a ``noise`` share."""
    rng = np.random.default_rng(seed)
    flipped = rng.random(num_samples) < noise
    if flips is not None:
        flipped = np.isin(np.arange(num_samples), rng.permutation(num_samples)[:flips])
    progress = np.linspace(0.0, 1.0, epochs)[None, :]
    onset = np.where(flipped, rng.uniform(0.6, 0.9, num_samples), rng.uniform(0.0, 0.3, num_samples))[:, None]
    prob = 1 / (1 + np.exp(-12 * (progress - onset))) * 0.9 + rng.uniform(0, 0.05, (num_samples, epochs))
    other = (1 - prob) * 0.8
    td = np.stack([prob, other], axis=2).astype(np.float16)
    labels = np.stack([rng.integers(0, 5, num_samples), rng.integers(5, 10, num_samples)], axis=1)
    pred = np.where(prob > other, labels[:, :1], labels[:, 1:]).astype(np.int16)
    margin = (4 * (prob - other)).astype(np.float16)
    folder.mkdir(parents=True)
    save_dynamics(folder, Dynamics(td=td, labels=labels, margin=margin, pred=pred, indices=np.arange(num_samples)))
    torch.save({"assigned_targets": torch.as_tensor(labels[:, 0]), "label_flipped": torch.as_tensor(flipped),
                "true_targets": torch.as_tensor(labels[:, 0])}, folder / METADATA_FILE)
    return folder


def test_resample_interpolates_linearly_and_keeps_the_ends() -> None:
    sequences = np.arange(5, dtype=np.float32)[None, :, None] * np.array([1.0, -2.0], dtype=np.float32)
    out = resample(sequences, 9)
    assert out.shape == (1, 9, 2)
    np.testing.assert_allclose(out[0, :, 0], np.linspace(0, 4, 9), atol=1e-6)
    np.testing.assert_allclose(out[0, :, 1], -2 * np.linspace(0, 4, 9), atol=1e-6)
    np.testing.assert_allclose(resample(sequences, 3)[0, :, 0], [0, 2, 4])
    assert resample(sequences, 5) is sequences
    assert resample(sequences[:, :1], 4).shape == (1, 4, 2)
    with pytest.raises(UserError):
        resample(sequences, 1)


def test_percentile_features_ignore_how_a_run_scales_its_probabilities_and_margins() -> None:
    """An easy and a hard dataset differ in scale, not in which samples lead: a per-epoch monotone
    change of every sample's probability and margin leaves the rank features as they are."""
    rng = np.random.default_rng(0)
    prob = rng.random((50, 6)).astype(np.float16)
    margin = rng.normal(size=(50, 6)).astype(np.float16)
    dyn = Dynamics(td=prob[:, :, None], labels=np.zeros((50, 1), np.int64), margin=margin,
                   pred=np.zeros((50, 6), np.int16), indices=np.arange(50))
    per_epoch_scale = (2.0 ** -np.arange(6)).astype(np.float16)  # powers of two: exact in float16
    squashed = Dynamics(td=(prob * per_epoch_scale)[:, :, None], labels=dyn.labels, margin=margin * per_epoch_scale * 8,
                        pred=dyn.pred, indices=dyn.indices)
    names = ["prob_rank", "margin_rank"]
    ranks = build_features(dyn, names)
    np.testing.assert_array_equal(ranks, build_features(squashed, names))
    assert ranks.min() == 0.0 and ranks.max() == 1.0
    np.testing.assert_allclose(np.sort(ranks[:, 0, 0]), np.linspace(0, 1, 50), atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("readout", ["last", "pool"])
def test_every_architecture_round_trips_through_a_weights_only_file(tmp_path, readout, bidirectional) -> None:
    config = detector_config(["prob", "margin"], 8, 1, 20, readout=readout, bidirectional=bidirectional, seq_len=16)
    model = build_detector(config)
    path = tmp_path / "d.pth.tar"
    save_detector(path, model, config)
    blob = torch.load(path, weights_only=True)
    assert {blob["config"][k] for k in ("readout", "bidirectional", "seq_len")} == {readout, bidirectional, 16}
    loaded, _ = load_detector(path)
    x = torch.rand(3, 11, 2)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_a_file_without_the_new_keys_loads_as_the_papers_variant(tmp_path) -> None:
    old_config = {"arch": "lstm", "features": ["prob"], "hidden_size": 8, "num_layers": 2, "num_epochs_seen": 12}
    model = LSTMDetector(1, 8, 2)
    torch.save({"format": "mislabel-detector/1", "config": old_config, "metrics": {},
                "state_dict": model.state_dict()}, tmp_path / "old.pth.tar")
    loaded, config = load_detector(tmp_path / "old.pth.tar")
    assert loaded.readout == "last" and not loaded.lstm.bidirectional
    x = torch.rand(4, 12, 1)
    torch.testing.assert_close(loaded(x), model.eval()(x))
    dyn = load_dynamics(synthetic_run(tmp_path / "run", 12, seed=0))
    assert detector_scores(loaded, config, dyn).shape == (dyn.num_samples,)


def test_seq_len_pools_runs_of_other_lengths_and_scores_any_length(tmp_path) -> None:
    runs = [synthetic_run(tmp_path / "a", 20, seed=1), synthetic_run(tmp_path / "b", 35, seed=2)]
    out = tmp_path / "pool.pth.tar"
    train_main(["--r", "0.3", "--dataset", "synthetic", "--files_path", *map(str, runs), "--out", str(out),
                "--epochs", "6", "--hidden_size", "16", "--features", "prob,margin,correct", "--readout", "pool",
                "--bidirectional", "--seq_len", "16", "--gate_folds", "0", "--device", "cpu"])
    model, config = load_detector(out)
    assert config["seq_len"] == 16 and config["readout"] == "pool" and config["bidirectional"]
    assert config["num_epochs_seen"] == [20, 35]
    unseen = load_dynamics(synthetic_run(tmp_path / "c", 50, seed=3))
    scores = detector_scores(model, config, unseen)
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(unseen.flipped, scores) > 0.9
    expected = torch.sigmoid(model(torch.from_numpy(resample(build_features(unseen, config["features"]), 16))))
    np.testing.assert_allclose(scores, expected.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_runs_of_other_lengths_without_seq_len_and_a_bad_seq_len_are_refused(tmp_path, capsys) -> None:
    runs = [synthetic_run(tmp_path / "a", 10, seed=1), synthetic_run(tmp_path / "b", 12, seed=2)]
    base = ["--r", "0.3", "--dataset", "s", "--files_path", *map(str, runs), "--epochs", "1", "--device", "cpu"]
    for extra, needle in ((["--seq_len", "0"], "--seq_len"), (["--seq_len", "1"], "--seq_len 1")):
        with pytest.raises(SystemExit) as exit_info:
            train_main(base + ["--out", str(tmp_path / "x.pth.tar"), *extra])
        assert exit_info.value.code == 2
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "x.pth.tar").exists()


def test_the_papers_variant_stays_available_by_flags(tmp_path) -> None:
    run = synthetic_run(tmp_path / "a", 15, seed=4)
    out = tmp_path / "paper.pth.tar"
    train_main(["--r", "0.3", "--dataset", "s", "--files_path", str(run), "--out", str(out), "--epochs", "1",
                "--hidden_size", "8", "--features", "prob", "--readout", "last", "--no-bidirectional",
                "--seq_len", "0", "--device", "cpu"])
    model, config = load_detector(out)
    assert (config["features"], config["readout"], config["bidirectional"], config["seq_len"]) == (["prob"], "last",
                                                                                                 False, None)
    assert model.readout == "last" and not model.lstm.bidirectional and config["num_epochs_seen"] == 15


def test_the_library_call_is_the_command(tmp_path) -> None:
    """``mislabel.train_detector`` trains in memory what the command writes, weight for weight (same
    seed, same flags), and writes nothing unless given ``out``."""
    run = synthetic_run(tmp_path / "a", 12, seed=5)
    recipe = DetectorRecipe(features="prob,correct", hidden_size=8, epochs=2, seq_len=0, seed=3)
    assert recipe.features == ("prob", "correct")
    trained = mislabel.train_detector([run], recipe, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert trained.config["trained_on"] == [str(run)] and trained.metrics["auc"] > 0.9
    out = tmp_path / "cmd.pth.tar"
    train_main(["--r", "0.3", "--dataset", "s", "--files_path", str(run), "--out", str(out), "--features",
                "prob,correct", "--hidden_size", "8", "--epochs", "2", "--seq_len", "0", "--seed", "3",
                "--device", "cpu"])
    model, config = load_detector(out)
    assert config == trained.config
    for name, weights in model.state_dict().items():
        assert torch.equal(weights, trained.model.state_dict()[name])
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        train_detector([run], recipe, out=out, device="cpu")
    with pytest.raises(UserError, match="--epochs 0 must be at least 1"):
        train_detector([run], DetectorRecipe(epochs=0))


@pytest.mark.parametrize("flips", [1, MIN_PER_CLASS - 1])
def test_too_few_flips_for_the_validation_split_are_refused_in_one_line(tmp_path, capsys, flips) -> None:
    """sklearn's stratified split would end in a traceback with one flipped sample, and with fewer
    than MIN_PER_CLASS its 10% validation part can hold no flipped sample to compute an AUC on."""
    run = synthetic_run(tmp_path / "few", 10, seed=6, flips=flips)
    out = tmp_path / "d.pth.tar"
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--r", "0.3", "--dataset", "s", "--files_path", str(run), "--out", str(out), "--epochs", "1",
                    "--device", "cpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{flips} flipped" in err and f"at least {MIN_PER_CLASS} of each" in err
    assert "validation split" in err and not out.exists()
    with pytest.raises(UserError, match=f"at least {MIN_PER_CLASS}"):
        train_detector([run], DetectorRecipe(epochs=1), device="cpu")


def test_the_fewest_flips_allowed_train(tmp_path) -> None:
    """The LSTM alone; the gate's cross-fitting needs that many in each fold's training part
    (tests/test_gate.py)."""
    run = synthetic_run(tmp_path / "six", 10, seed=7, flips=MIN_PER_CLASS)
    trained = train_detector([run], DetectorRecipe(epochs=1, hidden_size=4, gate_folds=0), device="cpu")
    assert 0.0 <= trained.metrics["auc"] <= 1.0


def test_resume_reads_the_detector_through_the_library_loader(tmp_path, capsys) -> None:
    run = synthetic_run(tmp_path / "a", 10, seed=8)
    fake = tmp_path / "fake.pth.tar"
    torch.save({"format": "something else"}, fake)
    with pytest.raises(SystemExit):
        train_main(["--r", "0.3", "--dataset", "s", "--files_path", str(run), "--resume", str(fake),
                    "--out", str(tmp_path / "d.pth.tar"), "--device", "cpu"])
    assert "is not a detector written by train_detector.py" in capsys.readouterr().err
