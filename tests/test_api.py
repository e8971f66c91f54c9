"""The library API: a hand-written loop records what generate_td records, and rank flags flips."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mislabel.api
from mislabel.scoring.lstm import load_detector
from mislabel.scoring.predict import get_order
from mislabel import Recorder, rank
from mislabel.training.loop import Recipe
from runner import RunConfig, Runner
from mislabel.core.user_input import UserError
from mislabel.core.dynamics import load_dynamics, load_metadata


def own_loop(runner: Runner, folder) -> None:
    """A plain training loop using only the API for recording; the data, model and recipe are
    those generate_td uses, so that the two recordings can be compared value for value."""
    recipe = runner.config.recipe
    model = runner.build_model()
    labels = torch.as_tensor(runner.assigned_labels)
    batches = runner.batches(runner.train_indices, labels, train=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                                weight_decay=recipe.weight_decay)
    milestones = sorted({max(1, round(f * recipe.epochs)) for f in recipe.lr_milestones})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=recipe.lr_gamma)
    recorder = Recorder(len(runner.train_indices), runner.data.num_classes, recipe.epochs,
                        sample_ids=runner.train_indices)
    for epoch in range(recipe.epochs):
        model.train()
        batches.set_epoch(epoch)
        for images, targets, rows in batches:
            logits = model(images)
            loss = F.cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            recorder.update(logits, targets, rows)
        scheduler.step()
        recorder.next_epoch()
    recorder.save(folder, true_labels=runner.true_labels[runner.train_indices])


def test_own_loop_records_what_generate_td_records(tmp_path):
    config = RunConfig(dataset="digits", seed=4, noise_ratio="0.3", net_type="lenet", depth=5, device="cpu",
                       results_dir=str(tmp_path / "results"), recipe=Recipe(epochs=6))
    runner = Runner(config)
    generated = runner.train_for_td_computation()
    own_loop(runner, tmp_path / "own")
    ours, theirs = load_dynamics(tmp_path / "own"), load_dynamics(generated)
    for name in ("td", "labels", "margin", "pred", "indices", "flipped", "true_labels"):
        assert np.array_equal(getattr(ours, name), getattr(theirs, name)), name
    # generate_td also knows the held-out validation rows, which a training loop never sees
    meta, reference = load_metadata(tmp_path / "own"), load_metadata(generated)
    rows = torch.as_tensor(runner.train_indices)
    assert torch.equal(meta["train_indices"], reference["train_indices"])
    for key in ("assigned_targets", "true_targets", "label_flipped"):
        assert torch.equal(meta[key][rows], reference[key][rows]), key


def test_rank_flags_flips_with_a_trained_detector(uniform30_run, detector_file, monkeypatch):
    table = rank(uniform30_run, detector=detector_file, methods=("detector", "aum", "confidence"))
    dyn = load_dynamics(uniform30_run)
    assert len(table) == dyn.num_samples and list(table.columns[-3:]) == ["detector", "aum", "confidence"]
    assert table["detector"].is_monotonic_decreasing
    metrics = table.attrs["metrics"]
    assert metrics["detector"]["auc"] > 0.9 and metrics["aum"]["auc"] > 0.9, metrics
    ranking = get_order(*load_detector(detector_file), dyn)
    assert np.allclose(table["detector"], ranking.scores[ranking.order])
    arrays = {"td": dyn.td, "labels": dyn.labels, "margin": dyn.margin, "pred": dyn.pred, "flipped": dyn.flipped}
    assert np.array_equal(rank(arrays, methods=("aum",))["aum"], table["aum"].sort_values(ascending=False))
    monkeypatch.setattr(mislabel.api, "DEFAULT_DETECTOR", uniform30_run / "no_such_detector.pth.tar")
    with pytest.raises(UserError, match="pass detector="):
        rank(uniform30_run)
    with pytest.raises(UserError, match="unknown ranking methods"):
        rank(uniform30_run, methods=("aum", "magic"))
