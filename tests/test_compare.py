"""compare and crossval_probs on a small digits run: every method is reported, the numbers agree
with an independent computation, the plots are PNGs, and runs without known flips still work."""
from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import runner
from conftest import run_python, run_sh
from mislabel.scoring.baselines import BASELINES
from mislabel.scoring.control import DEFAULT_CONTROL
from mislabel.scoring.lstm import LSTMDetector, detector_config, save_detector
import mislabel
from mislabel.commands.compare import main as compare_main
from mislabel.training.crossval import fold_assignment
from mislabel.core.user_input import UserError
from mislabel.core.dynamics import load_dynamics, save_dynamics

CONTROL = ["control"] if DEFAULT_CONTROL.is_file() else []  # the shipped learned control's row

# LeNet-5 for 8 epochs: a few seconds per run on two cores, and noisy labels still stand out.
SMALL_RECIPE = ["--net_type", "lenet", "--depth", "5", "--num_epochs", "8", "--batch_size", "64", "--lr", "0.05",
                "--device", "cpu"]
RUN_ARGS = ["--dataset", "digits", "--seed", "3", "--noise_ratio", "0.2", "--noise_type", "uniform"]
RUN_SUBDIR = Path("digits_lenet5_percmislabeled0.2_uniform") / "computation4td_seed3"
OUTPUTS = ["comparison.csv", "comparison.md", "scores.csv", "roc_pr.png", "datamap.png"]


@pytest.fixture(scope="session")
def small_results(tmp_path_factory) -> Path:
    """The results root of one small phase-1 run; tests copy its run folder before changing it."""
    results = tmp_path_factory.mktemp("compare_results")
    done = run_python("runner.py", "generate_td", *RUN_ARGS, "--results_dir", str(results), *SMALL_RECIPE)
    assert done.returncode == 0, done.stderr
    return results


@pytest.fixture()
def run_copy(small_results, tmp_path) -> Path:
    copy = tmp_path / "run"
    made_later = shutil.ignore_patterns("pred_probs_cv.*", "comparison.*", "scores.csv", "*.png")
    shutil.copytree(small_results / RUN_SUBDIR, copy, ignore=made_later)
    return copy


@pytest.fixture()
def detector(tmp_path) -> Path:
    """An untrained LSTM detector: compare must list it whatever its quality."""
    torch.manual_seed(0)
    path = tmp_path / "tiny_0.2_lstm_detector.pth.tar"
    save_detector(path, LSTMDetector(1, 8, 1), detector_config(["prob"], 8, 1, 8))
    return path


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= 300


def test_compare_lists_every_method_and_matches_sklearn(run_copy, detector, capsys) -> None:
    compare_main([str(run_copy), str(detector), "--device", "cpu"])
    printed = capsys.readouterr().out
    table = pd.read_csv(run_copy / "comparison.csv")
    methods = [*BASELINES, *CONTROL, "lstm:tiny_0.2_lstm_detector"]
    assert table["method"].tolist() == methods
    assert all(f"| {name} |" in printed for name in methods)
    assert "cleanlab" not in table["method"].tolist()
    # The hint to get cleanlab's input replays generate_td's arguments, recipe flags included.
    assert ("./run.sh crossval_probs <datadir> digits 3 0.2 uniform lenet 5 --num_epochs 8 --batch_size 64 "
            "--lr 0.05 --device cpu") in printed
    # An independent computation straight from the files generate_td wrote.
    with np.load(run_copy / "training_dynamics.npz") as npz:
        mean_prob = npz["td"][:, :, 0].astype(np.float64).mean(axis=1)
        rows = torch.as_tensor(npz["indices"])
    metadata = torch.load(run_copy / "metadata.pth", weights_only=True)
    flipped = metadata["label_flipped"][rows].numpy()
    confidence_auc = table.set_index("method").loc["confidence", "auc"]
    assert confidence_auc == pytest.approx(roc_auc_score(flipped, -mean_prob), abs=1e-12)
    assert (table["k"] == flipped.sum()).all()
    scores = pd.read_csv(run_copy / "scores.csv")
    assert list(scores.columns) == ["index", "given_label", "true_label", "flipped", *methods]
    np.testing.assert_array_equal(scores["index"], rows.numpy())
    assert (run_copy / "comparison.md").read_text().strip() in printed
    for name in ("roc_pr.png", "datamap.png"):
        assert_png(run_copy / name)


def assert_user_error(capsys, expected: str, *argv: str) -> None:
    """runner.py in-process (no interpreter start-up): exit 2 and one line naming ``expected``."""
    with pytest.raises(SystemExit) as exited:
        runner.main(list(argv))
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and expected in err, err


def test_crossval_probs_feeds_cleanlab(small_results, capsys) -> None:
    folder = small_results / RUN_SUBDIR
    args = ["-", "digits", "3", "0.2", "uniform", "lenet", "5", *SMALL_RECIPE[4:], "--num_epochs", "2",
            "--folds", "2"]
    done = run_sh("crossval_probs", *args, env={"RESULTS_DIR": str(small_results)})
    assert done.returncode == 0, done.stderr
    probs = np.load(folder / "pred_probs_cv.npy")
    dyn = load_dynamics(folder)
    assert probs.dtype == np.float32 and probs.shape == (dyn.num_samples, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs >= 0).all()
    assert_user_error(capsys, "--overwrite", "crossval", *RUN_ARGS, "--results_dir", str(small_results),
                      *SMALL_RECIPE, "--folds", "2")
    done = run_sh("compare", str(folder))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(folder / "comparison.csv")
    assert "cleanlab" in table["method"].tolist()
    assert "2-fold cross-validated probabilities, which cost 2 extra training runs of 2 epochs" in done.stdout
    assert "| cleanlab |" in done.stdout


def test_crossval_needs_generate_td_first(small_results, capsys) -> None:
    other_seed = [*RUN_ARGS[:3], "4", *RUN_ARGS[4:]]
    assert_user_error(capsys, "generate_td", "crossval", *other_seed, "--results_dir", str(small_results),
                      *SMALL_RECIPE)


def test_compare_without_known_flips(run_copy, capsys) -> None:
    metadata = torch.load(run_copy / "metadata.pth", weights_only=True)
    del metadata["label_flipped"], metadata["true_targets"]
    torch.save(metadata, run_copy / "metadata.pth")
    compare_main([str(run_copy), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "need known flips" in printed
    table = pd.read_csv(run_copy / "comparison.csv")
    assert table["auc"].isna().all() and table["method"].tolist() == [*BASELINES, *CONTROL]
    scores = pd.read_csv(run_copy / "scores.csv")
    assert list(scores.columns) == ["index", "given_label", *BASELINES, *CONTROL]
    assert_png(run_copy / "datamap.png")
    assert not (run_copy / "roc_pr.png").exists()


def test_compare_notes_top_k_dynamics(run_copy, capsys) -> None:
    dyn = load_dynamics(run_copy)
    dyn.td, dyn.labels = dyn.td[:, :, :3], dyn.labels[:, :3]
    save_dynamics(run_copy, dyn)
    compare_main([str(run_copy), "--device", "cpu"])
    assert "td stores 3 of 10 classes" in capsys.readouterr().out
    notes = pd.read_csv(run_copy / "comparison.csv").set_index("method")["note"]
    assert "2 strongest competitors" in notes["confidence_tracking"]


def test_bad_input_writes_nothing(run_copy, tmp_path) -> None:
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"not a detector")
    with pytest.raises(UserError, match="not a detector"):
        mislabel.compare(run_copy, [junk], device="cpu")
    with pytest.raises(UserError, match="is a folder, expected a file"):
        mislabel.compare(run_copy, [tmp_path], device="cpu")
    np.save(run_copy / "pred_probs_cv.npy", np.ones((3, 10), dtype=np.float32))
    with pytest.raises(UserError, match="shape"):
        mislabel.compare(run_copy, device="cpu")
    assert not any((run_copy / name).exists() for name in OUTPUTS)


def test_the_library_call_returns_what_it_wrote(run_copy, capsys) -> None:
    comparison = mislabel.compare(run_copy, device="cpu")
    assert capsys.readouterr().out == ""   # printing is the command's
    assert [r.name for r in comparison.results] == [*BASELINES, *CONTROL]
    assert (run_copy / "comparison.md").read_text() == comparison.markdown
    assert sorted(p.name for p in comparison.written) == sorted(OUTPUTS)


def test_folds_are_stratified_and_seeded() -> None:
    assigned = np.repeat(np.arange(3), [40, 20, 12])
    fold = fold_assignment(assigned, 4, seed=5)
    np.testing.assert_array_equal(fold, fold_assignment(assigned, 4, seed=5))
    for label, count in zip(range(3), [40, 20, 12]):
        np.testing.assert_array_equal(np.bincount(fold[assigned == label], minlength=4), [count // 4] * 4)
    with pytest.raises(UserError, match="--folds"):
        fold_assignment(assigned, 1, seed=0)
