"""DivideMix and label repair (data_debug_dm/): the GMM split, repair files, bad input, end-to-end runs.

The phase-1 run folder here is built directly (metadata from the Runner's own noise draw plus
random dynamics) and the detector is an untrained LSTM: repair only needs *a* ranking, and
building a real one would cost a phase-1 training run.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import refused, run_sh, write_class_folders, write_cub
from mislabel.commands import repair as repair_cli
from data_debug_dm import train as train_cli
from data_debug_dm.dividemix import clean_probability
from mislabel.core.user_input import UserError
from mislabel.scoring.repair import read_repair, repair_paths
from mislabel.scoring.lstm import LSTMDetector, detector_config, load_detector, save_detector
from mislabel.scoring.predict import get_order
from runner import Runner, RunConfig
from mislabel.core.dynamics import METADATA_FILE, Dynamics, load_dynamics, save_dynamics
from mislabel.core.files import atomic_torch_save

TINY = ["--net_type", "conv4", "--depth", "4", "--num_epochs", "2", "--warm_up", "1", "--batch_size", "128",
        "--device", "cpu"]
EPOCHS = 4


def make_run_folder(folder, seed: int = 0, noise_ratio: str = "0.4", with_truth: bool = True):
    """A generate_td-shaped folder for digits: the Runner's labels, random dynamics."""
    runner = Runner(RunConfig(dataset="digits", seed=seed, noise_ratio=noise_ratio, net_type="conv4", depth=4))
    rows = runner.train_indices
    num_classes = runner.data.num_classes
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(num_classes), size=(len(rows), EPOCHS))
    others = np.array([[c for c in range(num_classes) if c != a] for a in runner.assigned_labels[rows]])
    labels = np.concatenate([runner.assigned_labels[rows][:, None], others], axis=1)
    save_dynamics(folder, Dynamics(td=np.take_along_axis(probs, labels[:, None, :], axis=2),
                                   labels=labels, margin=rng.normal(size=(len(rows), EPOCHS)),
                                   pred=probs.argmax(axis=2), indices=rows))
    metadata = {"train_indices": torch.as_tensor(rows), "valid_indices": torch.as_tensor(runner.valid_indices),
                "assigned_targets": torch.as_tensor(runner.assigned_labels)}
    if with_truth:
        metadata.update(true_targets=torch.as_tensor(runner.true_labels),
                        label_flipped=torch.as_tensor(runner.assigned_labels != runner.true_labels))
    atomic_torch_save(metadata, folder / METADATA_FILE)
    return runner


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("detector") / "tiny.pth.tar"
    save_detector(path, LSTMDetector(1, 8, 1), detector_config(["prob"], 8, 1, EPOCHS))
    return path


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("td") / "computation4td_seed0"
    folder.mkdir()
    make_run_folder(folder)
    return folder


def test_gmm_split_puts_flipped_samples_on_the_noisy_side():
    rng = np.random.default_rng(0)
    flipped = rng.random(2000) < 0.3
    losses = np.where(flipped, rng.normal(2.5, 0.5, 2000), rng.gamma(2.0, 0.15, 2000)).clip(0)
    prob = clean_probability(losses, seed=0)
    assert (prob[flipped] < 0.5).mean() > 0.95
    assert (prob[~flipped] > 0.5).mean() > 0.95
    assert np.array_equal(clean_probability(np.full(5, 0.7)), np.ones(5))


def _expected_selection(run_folder, detector, ratio):
    dyn = load_dynamics(run_folder)
    model, config = load_detector(detector)
    order = get_order(model, config, dyn).order
    return dyn, order[:int(round(ratio * dyn.num_samples))]


def test_repair_file_changes_exactly_the_chosen_indices(run_folder, tiny_detector):
    done = run_sh("repair", str(run_folder), str(tiny_detector), "0.10")
    assert done.returncode == 0, done.stderr
    labels_path, meta_path = repair_paths(run_folder, 0.1)
    assert labels_path.name == "repair0.1.json"
    labels, meta = np.array(json.loads(labels_path.read_text())), json.loads(meta_path.read_text())
    stored = torch.load(run_folder / METADATA_FILE, weights_only=True)
    assigned, truth = stored["assigned_targets"].numpy(), stored["true_targets"].numpy()
    dyn, chosen_rows = _expected_selection(run_folder, tiny_detector, 0.1)
    chosen = dyn.indices[chosen_rows]
    assert len(labels) == len(assigned) and meta["rule"] == "true_label"
    assert meta["selected_indices"] == chosen.tolist()
    assert np.array_equal(labels[chosen], truth[chosen])
    unchosen = np.setdiff1d(np.arange(len(assigned)), chosen)
    assert np.array_equal(labels[unchosen], assigned[unchosen])
    assert meta["changed_indices"] == np.flatnonzero(labels != assigned).tolist()
    assert meta["num_changed"] == int((assigned[chosen] != truth[chosen]).sum()) > 0


def test_repair_without_ground_truth_uses_last_epoch_prediction(tmp_path, tiny_detector):
    make_run_folder(tmp_path, with_truth=False)
    done = run_sh("repair", str(tmp_path), str(tiny_detector), "0.2")
    assert done.returncode == 0, done.stderr
    labels = np.array(json.loads((tmp_path / "repair0.2.json").read_text()))
    meta = json.loads((tmp_path / "repair0.2.meta.json").read_text())
    dyn, chosen_rows = _expected_selection(tmp_path, tiny_detector, 0.2)
    assert meta["rule"] == "last_epoch_prediction" and meta["flipped_share_of_selected"] is None
    assert np.array_equal(labels[dyn.indices[chosen_rows]], dyn.pred[chosen_rows, -1])


@pytest.mark.parametrize("args, message", [
    (["missing_folder", "DETECTOR", "0.1"], "does not exist"),
    (["RUN", "DETECTOR", "1.5"], "outside [0, 1]"),
    (["RUN", "DETECTOR", "half"], "not a number"),
    (["RUN", "missing.pth.tar", "0.3"], "detector file"),
])
def test_repair_bad_input_exits_2_in_one_line(args, message, run_folder, tiny_detector, tmp_path):
    args = [{"RUN": str(run_folder), "DETECTOR": str(tiny_detector),
             "missing_folder": str(tmp_path / "nope")}.get(a, a) for a in args]
    assert message in refused(lambda: repair_cli.main(args))


def test_repair_refuses_to_overwrite(tmp_path, tiny_detector):
    make_run_folder(tmp_path)
    args = [str(tmp_path), str(tiny_detector), "0.05"]
    repair_cli.main(args)
    path = tmp_path / "repair0.05.json"
    path.write_text("[]\n")  # a stand-in for the user's edits, which must survive
    assert "--overwrite" in refused(lambda: repair_cli.main(args)) and path.read_text() == "[]\n"
    repair_cli.main([*args, "--overwrite"])
    assert len(json.loads(path.read_text())) > 0


def test_trainer_bad_repair_arguments_exit_2(tmp_path, tiny_detector):
    base = ["--dataset", "digits", "--results_dir", str(tmp_path), *TINY]
    cases = [(["--repair_ratio", "0.1", "--detector_file", str(tiny_detector)], "--td_dir"),
             (["--repair_file", str(tmp_path / "none.json")], "does not exist"),
             (["--repair_ratio", "0.1", "--repair_file", "x.json"], "not both"),
             (["--r", "1.2"], "outside [0, 1)")]
    for extra, message in cases:
        assert message in refused(lambda: train_cli.main([*base, *extra])), extra
    assert not any(tmp_path.rglob("summary.json"))


@pytest.mark.slow   # DivideMix training, twice
def test_dividemix_on_digits_with_and_without_repair(run_folder, tiny_detector, tmp_path):
    common = ["--dataset", "digits", "--r", "0.4", "--noise_mode", "sym", "--results_dir", str(tmp_path), *TINY]
    out = tmp_path / "digits_conv44_percmislabeled0.4_uniform" / "dividemix_seed0"
    assert train_cli.run(common) == out / "norepair"
    plain = json.loads((out / "norepair" / "summary.json").read_text())
    assert 0.0 <= plain["test_accuracy"] <= 1.0 and plain["repair"] is None
    log = (out / "norepair" / "train_log.csv").read_text().splitlines()
    assert len(log) == 3 and ",warm-up," in log[1] and ",dividemix," in log[2]
    assert set(torch.load(out / "norepair" / "model.pth", weights_only=True)) == {"net1", "net2"}

    train_cli.run([*common, "--repair_ratio", "0.1", "--td_dir", str(run_folder), "--detector_file",
                   str(tiny_detector)])
    repaired = json.loads((out / "repair0.1" / "summary.json").read_text())
    assert repaired["repair"]["num_changed"] > 0 and repaired["repair"]["rule"] == "true_label"
    assert repaired["repair"]["num_now_correct"] == repaired["repair"]["num_changed"]
    assert repaired["training_labels_correct"] > plain["training_labels_correct"]

    assert "--overwrite" in refused(lambda: train_cli.main(common))
    other_noise = [*common[:3], "0.2", *common[4:], "--repair_file", str(run_folder / "repair0.1.json")]
    assert "other noisy labels" in refused(lambda: train_cli.main(other_noise))


@pytest.mark.parametrize("preset, write", [("cub", write_cub), ("webvision", write_class_folders)])
def test_presets_run_on_file_datasets(preset, write, tmp_path):
    datadir = tmp_path / "data"
    if preset == "cub":
        write(datadir)
    else:
        write(datadir, "webvision50", per_class=6)
    folder = train_cli.run(["--data_path", str(datadir), "--image_size", "8", "--results_dir", str(tmp_path / "out"),
                            *TINY, "--batch_size", "4"], preset)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["preset"] == preset and summary["image_size"] == 8
    assert summary["dataset"] == {"cub": "cub_200_2011", "webvision": "webvision50"}[preset]


def test_run_sh_forwards_the_dividemix_commands():
    for command, script in (("train_dividemix", "train.py"), ("train_cub", "Train_cub.py"),
                            ("train_webvision", "Train_webvision.py")):
        done = run_sh(command, "--r", "0.2", "--repair_ratio", "0.05", env={"TESTRUN": "1"})
        assert done.returncode == 0 and f"data_debug_dm/{script}" in done.stdout
        assert "--r 0.2 --repair_ratio 0.05" in done.stdout
    assert run_sh("repair", "only_a_folder", env={"TESTRUN": "1"}).returncode == 2


def test_a_damaged_repair_sidecar_is_one_line_naming_it(tmp_path):
    """The meta file beside a repair list is read as every record is (``read_record``)."""
    labels, meta = tmp_path / "repair0.1.json", tmp_path / "repair0.1.meta.json"
    labels.write_text("[0, 1, 2]\n")
    meta.write_text("{not json")
    with pytest.raises(UserError, match=f"{meta} is damaged"):
        read_repair(labels, num_train=3, num_classes=3)
