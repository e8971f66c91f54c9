"""The gated score (mislabel/scoring/gate.py): concentration, cross-fitting, the detector file.

Synthetic dynamics written straight to run folders (no classifier training): clean samples are
predicted as their label from early on, flipped ones as their true class until late in training.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import refused
from mislabel.core.dynamics import METADATA_FILE, Dynamics, load_dynamics, save_dynamics
from mislabel.core.user_input import UserError
from mislabel.scoring.detector_training import DetectorRecipe, train_detector
from mislabel.scoring.lstm import load_detector, save_detector
from mislabel.scoring.metrics import detection_metrics
from mislabel.scoring.predict import detector_scores, sequence_scores
from mislabel.scoring.features import build_features, percentile
from mislabel.scoring.gate import CENTRES, GATE_OBJECTIVES, STEEPNESS, check_gate, fit_gate, gate_weight, gated_scores
from mislabel.scoring.summary import concentration, summarize
from mislabel.scoring.count import estimate_noisy_count
from train_detector import main as train_main

CLASSES = 5
TINY = dict(hidden_size=4, epochs=2, seq_len=8)


def synthetic_dynamics(seed: int, pair: bool, num_samples: int = 240, epochs: int = 12, noise: float = 0.3) -> Dynamics:
    """Flipped samples' true class is the next class (``pair``) or any other class; the model predicts
    it until it memorises the wrong label in the last quarter of training."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, CLASSES, num_samples)
    flipped = rng.random(num_samples) < noise
    shift = np.ones(num_samples, np.int64) if pair else rng.integers(1, CLASSES, num_samples)
    assigned = np.where(flipped, (true + shift) % CLASSES, true)
    progress = np.linspace(0.0, 1.0, epochs)[None, :]
    onset = np.where(flipped, rng.uniform(0.7, 0.95, num_samples), rng.uniform(0.0, 0.3, num_samples))[:, None]
    prob = 0.9 / (1 + np.exp(-12 * (progress - onset))) + rng.uniform(0, 0.05, (num_samples, epochs))
    other = (1 - prob) * 0.9
    pred = np.where(prob > other, assigned[:, None], true[:, None]).astype(np.int16)
    return Dynamics(td=np.stack([prob, other], axis=2).astype(np.float16),
                    labels=np.stack([assigned, np.where(flipped, true, (true + 1) % CLASSES)], axis=1),
                    margin=(4 * (prob - other)).astype(np.float16),
                    pred=pred, indices=np.arange(num_samples), flipped=flipped, true_labels=true)


def write_run(folder: Path, dyn: Dynamics) -> Path:
    folder.mkdir(parents=True)
    save_dynamics(folder, replace(dyn, flipped=None, true_labels=None))
    torch.save({"assigned_targets": torch.as_tensor(dyn.assigned), "label_flipped": torch.as_tensor(dyn.flipped),
                "true_targets": torch.as_tensor(dyn.true_labels)}, folder / METADATA_FILE)
    return folder


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("stack_runs")
    return [write_run(root / f"run{seed}", synthetic_dynamics(seed, pair=seed % 2 == 0)) for seed in range(3)]


def test_concentration_tells_class_structured_mistakes_from_scattered_ones() -> None:
    assert concentration(synthetic_dynamics(0, pair=True)) == pytest.approx(1.0)
    assert concentration(synthetic_dynamics(0, pair=False)) < 0.6
    fully_fit = synthetic_dynamics(1, pair=True)
    always_right = np.repeat(fully_fit.assigned[:, None], fully_fit.num_epochs, axis=1).astype(np.int16)
    fully_fit = replace(fully_fit, pred=always_right)
    assert concentration(fully_fit) == 1.0


def test_the_fitted_gate_trusts_the_lstm_where_it_ranks_better() -> None:
    """Runs whose mistakes are concentrated get a useful LSTM and a useless AUM, scattered runs the
    reverse: the fitted gate sends each kind to its better input."""
    rng = np.random.default_rng(0)
    lstm, aum_scores, spreads, flips = [], [], [], []
    for run in range(8):
        truth = rng.random(300) < 0.3
        good, bad = truth + rng.normal(0, 0.3, 300), rng.normal(0, 1, 300)
        structured = run % 2 == 0
        lstm.append(good if structured else bad)
        aum_scores.append(bad if structured else good)
        spreads.append(0.8 if structured else 0.2)
        flips.append(truth)
    gate = fit_gate(lstm, aum_scores, spreads, flips, names=["a"])
    assert gate["centre"] in CENTRES and gate["steepness"] in STEEPNESS and gate["trained_on"] == ["a"]
    assert 0.2 < gate["centre"] < 0.8
    assert gate_weight(gate, 0.8) > 0.9 and gate_weight(gate, 0.2) < 0.1
    assert check_gate(gate, "test") is gate


def test_the_worst_run_objective_trades_mean_regret_for_the_worst_runs() -> None:
    """Eight runs where the gate's usual rule holds and one scattered run that sits among the structured
    ones: the mean fit sacrifices that run, ``objective="worst"`` softens the gate for it."""
    rng = np.random.default_rng(1)
    lstm, aum_scores, spreads, flips = [], [], [], []
    for run in range(9):
        truth = rng.random(300) < 0.3
        good, bad = truth + rng.normal(0, 0.3, 300), truth + rng.normal(0, 1.5, 300)
        structured = run % 2 == 0 and run < 8
        lstm.append(good if structured else bad)
        aum_scores.append(bad if structured else good)
        spreads.append(0.6 if structured or run == 8 else 0.3)
        flips.append(truth)
    mean, worst = (fit_gate(lstm, aum_scores, spreads, flips, objective=objective) for objective in GATE_OBJECTIVES)
    assert (mean["centre"], mean["steepness"]) != (worst["centre"], worst["steepness"])
    assert worst["worst_regret"] < mean["worst_regret"] and mean["mean_regret"] < worst["mean_regret"]
    with pytest.raises(ValueError, match="objective 'median'"):
        fit_gate(lstm, aum_scores, spreads, flips, objective="median")


def test_gated_scores_put_the_estimated_count_above_one_half() -> None:
    dyn = synthetic_dynamics(2, pair=False)
    lstm = np.linspace(0.0, 1.0, dyn.num_samples)
    gate = {"format": "mislabel-gate/1", "base": "aum", "centre": 0.4, "steepness": 10.0}
    scores = gated_scores(gate, lstm, summarize(dyn))
    count = estimate_noisy_count(summarize(dyn)).estimate
    assert 0 < count != np.count_nonzero(lstm >= 0.5)  # the run's count, not the LSTM's own
    assert np.count_nonzero(scores >= 0.5) == count
    assert scores.min() >= 0.0 and scores.max() == 1.0 and len(np.unique(scores)) == dyn.num_samples


def test_the_gate_rides_in_the_detector_file_and_leaves_the_lstm_as_it_was(three_runs, tmp_path) -> None:
    """Cross-fitting by run (three runs, three folds) adds a checked ``gate`` to the config; the LSTM's
    weights are those the plain recipe trains, and scoring returns the gated score, not the LSTM's."""
    gated = train_detector(three_runs, DetectorRecipe(**TINY, gate_folds=3), device="cpu")
    plain = train_detector(three_runs, DetectorRecipe(**TINY, gate_folds=0), device="cpu")
    assert "gate" not in plain.config
    gate = check_gate(gated.config["gate"], "test")
    assert gate["trained_on"] == [str(p) for p in three_runs]
    for name, weights in plain.model.state_dict().items():
        assert torch.equal(weights, gated.model.state_dict()[name])
    out = tmp_path / "gated.pth.tar"
    save_detector(out, gated.model, gated.config, gated.metrics)
    model, config = load_detector(out)
    unseen = synthetic_dynamics(7, pair=True)
    scores = detector_scores(model, config, unseen)
    lstm = sequence_scores(model, build_features(unseen, config["features"], config["seq_len"]))
    np.testing.assert_allclose(scores, gated_scores(config["gate"], lstm, summarize(unseen)))
    assert not np.allclose(scores, lstm)
    assert detection_metrics(scores, unseen.flipped)["auc"] > 0.95


def test_one_run_is_cross_fitted_by_sample(three_runs) -> None:
    trained = train_detector(three_runs[:1], DetectorRecipe(**TINY, gate_folds=2), device="cpu")
    assert trained.config["gate"]["trained_on"] == [str(three_runs[0])]
    scores = detector_scores(trained.model, trained.config, load_dynamics(three_runs[0]))
    assert np.isfinite(scores).all() and scores.shape == (240,)


def test_a_damaged_or_foreign_gate_is_refused_by_file_name(three_runs, tmp_path) -> None:
    trained = train_detector(three_runs, DetectorRecipe(**TINY, gate_folds=3), device="cpu")
    for damage in ({"centre": float("nan")}, {"steepness": "10"}, {"base": "loss"}, {"format": "other"}):
        out = tmp_path / f"bad{len(list(tmp_path.iterdir()))}.pth.tar"
        save_detector(out, trained.model, dict(trained.config, gate={**trained.config["gate"], **damage}))
        with pytest.raises(UserError, match=str(out.name)):
            load_detector(out)


def test_gate_folds_are_checked_before_any_run_is_read(three_runs, tmp_path) -> None:
    with pytest.raises(UserError, match="--gate_folds 1 must be 0"):
        DetectorRecipe(gate_folds=1).validate()
    out = tmp_path / "d.pth.tar"
    refused(lambda: train_main(["--r", "0.3", "--dataset", "s", "--files_path", str(three_runs[0]), "--out", str(out),
                                "--gate_folds", "1", "--device", "cpu"]), "--gate_folds 1", unchanged=[tmp_path])


def test_too_few_flips_for_the_folds_name_the_way_out(tmp_path) -> None:
    dyn = synthetic_dynamics(3, pair=True, noise=0.0)
    flipped = np.zeros(dyn.num_samples, bool)
    flipped[:8] = True
    run = write_run(tmp_path / "few", replace(dyn, flipped=flipped))
    with pytest.raises(UserError, match="pass --gate_folds 0"):
        train_detector([run], DetectorRecipe(**TINY, gate_folds=3), device="cpu")
    assert "gate" not in train_detector([run], DetectorRecipe(**TINY, gate_folds=0), device="cpu").config


def test_the_base_weighs_each_epoch_by_the_agreement_above_chance() -> None:
    dyn = synthetic_dynamics(3, pair=False, epochs=6)
    dyn.pred[:, 0] = (dyn.assigned + 1) % CLASSES     # epoch 0: agrees with no label, below chance: no say
    dyn.margin[:, 0] = np.random.default_rng(0).normal(0, 5, dyn.num_samples)   # a random ranking there
    agreement = (dyn.pred == dyn.assigned[:, None]).mean(axis=0)
    weights = np.clip(agreement - 1 / CLASSES, 0, None)
    assert weights[0] == 0 and (weights[1:] > 0).all()
    expected = -(dyn.margin.astype(np.float64) * weights).sum(axis=1) / weights.sum()
    summary = summarize(dyn)
    np.testing.assert_allclose(summary.weighted_aum, expected, rtol=1e-5, atol=1e-6)   # summed in float32
    assert not np.allclose(summary.weighted_aum, summary.aum)
    # a run cut at its memorisation onset keeps plain AUM: there the agreement climbs by memorising
    np.testing.assert_array_equal(summarize(dyn, onset=5).weighted_aum, summary.aum)


def test_a_gate_fitted_over_plain_aum_keeps_scoring_with_it() -> None:
    """Detector files from before the weighting name "aum" as their base and score exactly as before."""
    dyn = synthetic_dynamics(4, pair=False)
    dyn.pred[:, :3] = (dyn.assigned[:, None] + 1) % CLASSES
    summary = summarize(dyn)
    lstm = np.linspace(0.0, 1.0, dyn.num_samples)
    gate = {"format": "mislabel-gate/1", "centre": 0.9, "steepness": 40.0}   # the base all but alone
    old = gated_scores(check_gate({**gate, "base": "aum"}, "test"), lstm, summary, count=50)
    new = gated_scores(check_gate({**gate, "base": "weighted_aum"}, "test"), lstm, summary, count=50)
    weight = gate_weight(gate, summary.concentration)
    for scores, base in ((old, summary.aum), (new, summary.weighted_aum)):
        expected = weight * percentile(lstm) + (1 - weight) * percentile(base)
        assert np.array_equal(np.argsort(-scores, kind="stable"), np.argsort(-expected, kind="stable"))
    assert not np.array_equal(old, new)
