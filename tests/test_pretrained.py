"""The shipped detectors load with weights_only=True and reproduce their cards' held-out numbers.

Each card (mislabel/scoring/pretrained/<name>.json) states AUC and mAP on stored samples of held-out
Fashion-MNIST runs (heldout_<noise>.npz); recomputing them here checks the weights, the feature
pipeline (resampling included) and the metrics together. Regenerate with bench/pretrain_detectors.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mislabel.scoring.lstm import DETECTOR_FORMAT, load_detector
from mislabel.scoring.metrics import detection_metrics
from mislabel.scoring.predict import detector_scores
from mislabel.api import DEFAULT_DETECTOR, rank
from mislabel.core.dynamics import Dynamics

PRETRAINED = Path(__file__).resolve().parents[1] / "mislabel" / "scoring" / "pretrained"
CARDS = sorted(PRETRAINED.glob("*.json"))


def stored_sample(path: Path) -> Dynamics:
    with np.load(path, allow_pickle=False) as arrays:
        return Dynamics(**{key: arrays[key] for key in ("td", "labels", "margin", "pred", "indices")},
                        flipped=arrays["flipped"].astype(bool))


def test_a_uniform_a_flip_and_a_default_detector_are_shipped() -> None:
    names = {card.stem for card in CARDS}
    assert {"fashion_mnist_uniform", "fashion_mnist_flip", "default"} <= names
    assert DEFAULT_DETECTOR == PRETRAINED / "default.pth.tar" and DEFAULT_DETECTOR.is_file()


def test_regeneration_writes_where_the_library_reads() -> None:
    """bench/pretrain_detectors.py's target, asked of the script itself (tests import nothing from bench/)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "bench" / "pretrain_detectors.py"), "--print_target"],
                          capture_output=True, text=True, cwd=root, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()) == DEFAULT_DETECTOR.parent == PRETRAINED


@pytest.mark.parametrize("card_path", CARDS, ids=[card.stem for card in CARDS])
def test_detector_loads_weights_only_and_reproduces_its_card(card_path: Path) -> None:
    card = json.loads(card_path.read_text())
    detector = PRETRAINED / card["detector"]
    assert detector.stat().st_size < 1_000_000
    blob = torch.load(detector, map_location="cpu", weights_only=True)
    assert blob["format"] == DETECTOR_FORMAT
    assert {key: blob["config"][key] for key in card["architecture"]} == card["architecture"]
    assert blob["config"]["seq_len"], "shipped detectors must resample, so they apply to runs of any length"
    model, config = load_detector(detector)
    for noise, stated in card["heldout_runs"].items():
        dyn = stored_sample(PRETRAINED / f"heldout_{noise}.npz")
        metrics = detection_metrics(detector_scores(model, config, dyn), dyn.flipped)
        assert dyn.num_samples == stated["num_samples"] and int(dyn.flipped.sum()) == stated["num_flipped"]
        assert metrics["auc"] == pytest.approx(stated["auc"], abs=2e-6), noise
        assert metrics["map"] == pytest.approx(stated["map"], abs=2e-6), noise


def test_rank_uses_the_shipped_default_on_a_run_of_another_length() -> None:
    dyn = stored_sample(PRETRAINED / "heldout_flip.npz")
    half = {"td": dyn.td[:, ::2], "labels": dyn.labels, "margin": dyn.margin[:, ::2], "pred": dyn.pred[:, ::2],
            "flipped": dyn.flipped}
    table = rank(half, methods=("detector",), device="cpu")
    assert table.attrs["metrics"]["detector"]["auc"] > 0.8


def test_learned_control_ships_beside_the_default_and_reproduces_its_card() -> None:
    from mislabel.scoring.control import DEFAULT_CONTROL, control_scores, load_control

    stated = json.loads((PRETRAINED / "default.json").read_text())["learned_control"]
    assert DEFAULT_CONTROL == PRETRAINED / stated["file"]
    control = load_control(DEFAULT_CONTROL)                       # weights_only=True inside
    assert [round(float(c), 6) for c in control["coef"]] == stated["coef"]
    for noise, numbers in stated["heldout_runs"].items():
        dyn = stored_sample(PRETRAINED / f"heldout_{noise}.npz")
        metrics = detection_metrics(control_scores(control, dyn), dyn.flipped)
        assert metrics["auc"] == pytest.approx(numbers["auc"], abs=2e-6), noise
        assert metrics["map"] == pytest.approx(numbers["map"], abs=2e-6), noise
