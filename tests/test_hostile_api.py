"""Hostile input to the scoring and recording API (issue 23 A, B, D and G): damaged detector and control
files, dynamics whose class ids or indices are out of range, and Recorder misuse. Each is refused with a
``UserError`` (a ``ValueError``) that names the file or argument and what was expected, before any work,
and leaves the files it read or would have written as they were."""
from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from mislabel.api import rank
from mislabel.core.dynamics import TD_FILE, Dynamics, load_dynamics, save_dynamics
from mislabel.core.user_input import UserError
from mislabel.scoring.control import DEFAULT_CONTROL, load_control
from mislabel.scoring.lstm import DEFAULT_DETECTOR, build_detector, detector_config, load_detector
from mislabel.training import recorder_input
from mislabel.training.recorder import Recorder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def small_run(num_samples: int = 60, epochs: int = 6, classes: int = 10, seed: int = 0) -> Dynamics:
    rng = np.random.default_rng(seed)
    assigned = rng.integers(0, classes, num_samples)
    prob = rng.random((num_samples, epochs)).astype(np.float16)
    pred = np.where(prob > 0.4, assigned[:, None], (assigned[:, None] + 1) % classes).astype(np.int16)
    return Dynamics(td=np.stack([prob, (1 - prob) / 2], axis=2).astype(np.float16),
                    labels=np.stack([assigned, (assigned + 1) % classes], axis=1), margin=(prob * 4 - 2),
                    pred=pred, indices=np.arange(num_samples), num_classes=classes)


# ---------------------------------------------------------------------------------------------
# A: damaged or foreign detector and control files
# ---------------------------------------------------------------------------------------------

def detector_blob() -> dict:
    config = detector_config(["correct", "prob_rank"], 8, 1, 6, readout="pool", bidirectional=True, seq_len=8)
    torch.manual_seed(0)
    state = {key: value.clone() for key, value in build_detector(config).state_dict().items()}
    return {"format": "mislabel-detector/1", "config": config, "state_dict": state, "metrics": {}}


def without(mapping: dict, key: str) -> dict:
    return {k: v for k, v in mapping.items() if k != key}


DETECTOR_DAMAGES = {
    "no hidden_size": (lambda b: dict(b, config=without(b["config"], "hidden_size")), "lacks 'hidden_size'"),
    "no features": (lambda b: dict(b, config=without(b["config"], "features")), "lacks 'features'"),
    "hidden_size a string": (lambda b: dict(b, config=dict(b["config"], hidden_size="8")), "'hidden_size' is '8'"),
    "hidden_size negative": (lambda b: dict(b, config=dict(b["config"], hidden_size=-8)), "'hidden_size' is -8"),
    "hidden_size huge": (lambda b: dict(b, config=dict(b["config"], hidden_size=10**9)), "'hidden_size' is 1000000000"),
    "seq_len -5": (lambda b: dict(b, config=dict(b["config"], seq_len=-5)), "'seq_len' is -5"),
    "readout unknown": (lambda b: dict(b, config=dict(b["config"], readout="mean")), "'readout' is 'mean'"),
    "unknown feature": (lambda b: dict(b, config=dict(b["config"], features=["prob", "loss"])),
                        "unknown features ['loss']"),
    "config a list": (lambda b: dict(b, config=[1, 2]), "config is a list, expected a dict"),
    "state_dict a list": (lambda b: dict(b, state_dict=[1, 2]), "state_dict is not a dict of tensors"),
    "state_dict missing": (lambda b: without(b, "state_dict"), "state_dict is not a dict of tensors"),
    "weights of another size": (lambda b: dict(b, config=dict(b["config"], hidden_size=16)),
                                "do not match the architecture"),
    "a weight missing": (lambda b: dict(b, state_dict=without(b["state_dict"], "head.bias")), "'head.bias'"),
    "NaN weights": (lambda b: dict(b, state_dict={k: torch.full_like(v, float("nan"))
                                                  for k, v in b["state_dict"].items()}),
                    "NaN"),
}


@pytest.mark.parametrize("how", list(DETECTOR_DAMAGES))
def test_damaged_detector_files_are_refused_by_name_before_any_work(tmp_path, how) -> None:
    damage, needle = DETECTOR_DAMAGES[how]
    path = tmp_path / "damaged.pth.tar"
    torch.save(damage(detector_blob()), path)
    with pytest.raises(UserError) as refused:
        load_detector(path)
    assert str(path) in str(refused.value) and needle in str(refused.value)
    run = tmp_path / "run"
    save_dynamics(run, small_run())
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="damaged.pth.tar"):
        rank(run, detector=path, methods=("detector", "aum"))
    assert snapshot(tmp_path) == before


def test_an_intact_detector_file_still_loads(tmp_path) -> None:
    path = tmp_path / "ok.pth.tar"
    torch.save(detector_blob(), path)
    model, config = load_detector(path)
    assert config["hidden_size"] == 8 and not model.training


@pytest.mark.parametrize("key, value, needle", [
    ("coef", None, "coef is not a finite float tensor"),
    ("coef", torch.zeros(3, dtype=torch.float64), "coef is not a finite float tensor of shape [7]"),
    ("intercept", torch.tensor(float("nan"), dtype=torch.float64), "intercept is not a finite"),
    ("scores", ["aum"], "fitted on other scores"),
])
def test_damaged_control_files_are_refused_by_name(tmp_path, key, value, needle) -> None:
    blob = torch.load(DEFAULT_CONTROL, weights_only=True)
    path = tmp_path / "control.pth.tar"
    torch.save(without(blob, key) if value is None else dict(blob, **{key: value}), path)
    with pytest.raises(UserError) as refused:
        load_control(path)
    assert str(path) in str(refused.value) and needle in str(refused.value)


# ---------------------------------------------------------------------------------------------
# B: class ids and indices out of range
# ---------------------------------------------------------------------------------------------

def damaged_run(tmp_path: Path, **changes) -> Path:
    """A run folder whose npz holds ``changes`` in place of the intact arrays."""
    folder = tmp_path / "run"
    save_dynamics(folder, small_run())
    with np.load(folder / TD_FILE) as npz:
        arrays = {key: npz[key] for key in npz.files}
    for key, change in changes.items():
        arrays[key] = change(arrays[key])
    np.savez(folder / TD_FILE, **arrays)
    return folder


def set_at(index: tuple, value: int):
    def change(array: np.ndarray) -> np.ndarray:
        array = array.copy()
        array[index] = value
        return array
    return change


@pytest.mark.parametrize("changes, needle", [
    ({"labels": set_at((3, 0), 99)}, "labels holds class 99, but the run has 10 classes"),
    ({"pred": set_at((2, 1), 30000)}, "pred holds class 30000, but the run has 10 classes"),
    ({"indices": set_at((5,), 7)}, "indices holds 7 more than once"),
    ({"indices": set_at((5,), -3)}, "indices holds -3"),
    ({"num_classes": lambda n: np.array([n, n])}, "num_classes is int64 [2], expected one integer"),
    ({"num_classes": lambda n: np.array(0)}, "num_classes is 0, expected a whole number in [1, 32768]"),
])
def test_out_of_range_class_ids_and_indices_are_refused(tmp_path, changes, needle) -> None:
    folder = damaged_run(tmp_path, **changes)
    before = snapshot(folder)
    for read in (load_dynamics, lambda run: rank(run, methods=("aum",))):
        with pytest.raises(UserError) as refused:
            read(folder)
        assert str(folder / TD_FILE) in str(refused.value) and needle in str(refused.value)
        assert "run.sh" not in str(refused.value)
    assert snapshot(folder) == before


def test_without_a_stored_class_count_ids_are_bounded_and_memory_does_not_grow_with_them(tmp_path) -> None:
    """Files from before num_classes was stored: ids beyond int16's range are refused, and a damaged but
    storable id (30000 in a 10-class run) costs no [E, K, K] matrix (it once took 20 GiB)."""
    dyn = small_run(num_samples=400)
    dyn.num_classes = None
    dyn.pred = dyn.pred.astype(np.int64)
    dyn.pred[7, 2] = 30000
    tracemalloc.start()
    table = rank(dyn, methods=("detector", "aum"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(table) == 400 and peak < 64 * 2**20
    dyn.pred[7, 2] = 40000
    with pytest.raises(UserError, match="pred holds class 40000, but class ids stop at 32767"):
        rank(dyn, methods=("aum",))


def test_the_class_count_travels_from_the_recorder_to_the_file(tmp_path) -> None:
    recorder = Recorder(6, 4, 1)
    recorder.update(torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1]), torch.arange(6))
    recorder.next_epoch()
    recorder.save(tmp_path)
    assert load_dynamics(tmp_path).num_classes == 4 and recorder.dynamics().num_classes == 4


# ---------------------------------------------------------------------------------------------
# D and G: Recorder misuse
# ---------------------------------------------------------------------------------------------

def batch(rows: list[int], targets: list[int] | None = None, classes: int = 3):
    generator = torch.Generator().manual_seed(len(rows))
    return (torch.randn(len(rows), classes, generator=generator),
            torch.tensor(targets if targets is not None else [row % classes for row in rows]), torch.tensor(rows))


@pytest.mark.parametrize("rows, targets, needle", [
    ([0, -2], None, "indices holds -2, but rows lie in [0, num_samples=6)"),
    ([0, 6], None, "indices holds 6, but rows lie in [0, num_samples=6)"),
    ([0, 1, 1], None, "index 1 was recorded twice in epoch 0"),
    ([0, 2], [0, 3], "targets holds 3 (at index 2), but classes lie in [0, num_classes=3)"),
])
def test_update_refuses_bad_rows_before_writing_them(rows, targets, needle) -> None:
    recorder = Recorder(6, 3, 1)
    recorder.update(*batch([3, 4, 5]))
    state = lambda: {"count": recorder._guard.count.clone(), **{k: v.clone() for k, v in recorder._buffers.items()}}  # noqa: E731
    before = state()
    with pytest.raises(UserError) as refused:
        recorder.update(*batch(rows, targets))
    assert needle in str(refused.value)
    after = state()
    assert all(torch.equal(before[name], after[name]) for name in before)
    recorder.update(*batch([0, 1, 2]))  # the refused batch left nothing behind: the epoch completes
    recorder.next_epoch()


def test_a_row_recorded_again_in_a_later_batch_is_refused_naming_it() -> None:
    recorder = Recorder(6, 3, 2)
    recorder.update(*batch([0, 1, 2]))
    with pytest.raises(UserError, match="index 2 was recorded twice in epoch 0"):
        recorder.update(*batch([2, 3]))
    recorder.update(*batch([3, 4, 5, -1, -1]))   # padding (-1) may repeat
    recorder.next_epoch()
    recorder.update(*batch([2, 3]))              # a new epoch: every row may be recorded again


def test_on_an_accelerator_refused_rows_are_reported_by_next_epoch(monkeypatch) -> None:
    """Off the CPU, update does not wait for its checks' verdict; the epoch is refused instead, naming the row."""
    monkeypatch.setattr(recorder_input, "CHECKED_EACH_BATCH", frozenset())
    recorder = Recorder(6, 3, 1)
    recorder.update(*batch([0, 1, 2, 9]))
    recorder.update(*batch([3, 4, 5]))
    with pytest.raises(UserError, match="update refused 1 entries, the first because indices holds 9"):
        recorder.next_epoch()
    recorder = Recorder(6, 3, 1)
    recorder.update(*batch([0, 1, 2, 3, 4, 5, 5]))
    with pytest.raises(UserError, match="index 5 was recorded twice"):
        recorder.next_epoch()


@pytest.mark.parametrize("logits, targets, indices, needle", [
    (torch.randn(4, 5), torch.zeros(4, dtype=torch.int64), torch.arange(4), "logits is torch.float32 [4, 5], expected"),
    (torch.randn(4), torch.zeros(4, dtype=torch.int64), torch.arange(4), "logits is torch.float32 [4]"),
    (torch.randn(4, 3), torch.zeros(3, dtype=torch.int64), torch.arange(4), "targets is torch.int64 [3], expected"),
    (torch.randn(4, 3), torch.zeros(4, dtype=torch.int64), torch.arange(4.0), "indices is torch.float32 [4], expected"),
    (torch.randn(4, 3), [0, 0, 0, 0], torch.arange(4), "targets is list, expected an integer tensor [batch=4]"),
])
def test_update_names_the_misshapen_argument(logits, targets, indices, needle) -> None:
    with pytest.raises(UserError) as refused:
        Recorder(6, 3, 1).update(logits, targets, indices)
    assert needle in str(refused.value)


@pytest.mark.parametrize("kwargs, needle", [
    ({"sample_ids": np.array([0, 1, 2, 1])}, "sample_ids holds 1 more than once"),
    ({"sample_ids": np.array([0, 1, -2, 3])}, "sample_ids holds -2"),
    ({"sample_ids": np.array([0.0, 1, 2, 3])}, "sample_ids is float64 [4]"),
    ({"num_classes": 40000}, "num_classes is 40000, but at most 32768"),
    ({"num_epochs": 0}, "num_epochs is 0, expected a whole number >= 1"),
])
def test_recorder_arguments_are_checked(kwargs, needle) -> None:
    with pytest.raises(UserError) as refused:
        Recorder(**{"num_samples": 4, "num_classes": 3, "num_epochs": 1, **kwargs})
    assert needle in str(refused.value)


def test_save_checks_everything_before_the_first_byte(tmp_path) -> None:
    recorder = Recorder(6, 3, 1)
    with pytest.raises(UserError, match="save: the recorder holds no finished epoch yet"):
        recorder.save(tmp_path / "early")
    with pytest.raises(UserError, match="no finished epoch yet"):
        rank(recorder, methods=("aum",))
    recorder.update(*batch([0, 1, 2, 3, 4, 5]))
    recorder.next_epoch()
    for labels, needle in ((np.zeros(5, dtype=np.int64), "true_labels is int64 [5]"),
                           (np.full(6, 3), "true_labels holds 3, but classes lie in [0, num_classes=3)")):
        with pytest.raises(UserError, match=re.escape(needle)):
            recorder.save(tmp_path / "out", true_labels=labels)
        assert not (tmp_path / "out").exists() and not (tmp_path / "early").exists()
    recorder.save(tmp_path / "out", true_labels=np.zeros(6, dtype=np.int64))
    assert load_dynamics(tmp_path / "out").flipped is not None


def test_shipped_files_pass_the_checks() -> None:
    load_detector(DEFAULT_DETECTOR)
    load_control(DEFAULT_CONTROL)
