"""The Lightning DynamicsCallback records what a plain Recorder records for the same logits, in one
process and in two gloo processes (DDP, with the sampler's padding), and its folder is a run folder
that rank and compare accept; missing indices and a missing framework are one-line errors."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("lightning")

import lightning_fit
from conftest import ROOT
from lightning_fit import CLASSES, EPOCHS, SAMPLES

from mislabel import rank
from mislabel.commands.compare import main as compare_main
from mislabel.core.dynamics import Dynamics, load_dynamics, load_metadata
from mislabel.core.files import torch_load
from mislabel.core.user_input import UserError
from mislabel.training.recorder import Recorder

ARRAYS = ("td", "labels", "margin", "pred", "indices")


def recorded_by_hand(folder, ranks: int, epochs: int = EPOCHS) -> Dynamics:
    """A plain Recorder fed the logits each rank computed (``batches_rank<r>.pt``), in step then rank
    order; a sample seen again in an epoch (the sampler's padding) goes in as row -1 (trained on,
    not recorded), as the callback keeps its first sighting. The Recorder refuses a row twice."""
    logs = [torch_load(folder / f"batches_rank{r}.pt") for r in range(ranks)]
    recorder = Recorder(SAMPLES, CLASSES, epochs)
    for epoch in range(epochs):
        steps = [[batch for batch in log if batch[0] == epoch] for log in logs]
        seen: set[int] = set()
        for step in range(len(steps[0])):
            for rank_steps in steps:
                _, logits, targets, indices = rank_steps[step]
                rows = torch.tensor([-1 if int(i) in seen else int(i) for i in indices])
                seen.update(int(i) for i in indices)
                recorder.update(logits, targets, rows)
        recorder.next_epoch()
    return recorder.dynamics()


def assert_same(saved: Dynamics, reference: Dynamics) -> None:
    for name in ARRAYS:
        assert np.array_equal(getattr(saved, name), getattr(reference, name)), name


def test_one_process_records_what_the_recorder_records_and_rank_and_compare_read_it(tmp_path, capsys):
    true_labels = torch.stack([item["labels"] for item in lightning_fit.dataset(as_dicts=True)])
    true_labels[:5] = (true_labels[:5] + 1) % CLASSES        # five known flips
    callback = lightning_fit.fit(tmp_path, as_dicts=True, true_labels=true_labels)
    assert callback.saved == tmp_path / "training_dynamics.npz"
    saved = load_dynamics(tmp_path)
    assert_same(saved, recorded_by_hand(tmp_path, ranks=1))
    assert saved.td.shape == (SAMPLES, EPOCHS, CLASSES) and saved.flipped.sum() == 5
    assert torch.equal(load_metadata(tmp_path)["true_targets"], true_labels)

    table = rank(tmp_path, methods=("aum", "confidence"))
    assert sorted(table["index"]) == list(range(SAMPLES)) and set(table.attrs["metrics"]) == {"aum", "confidence"}
    compare_main([str(tmp_path), "--device", "cpu"])
    methods = pd.read_csv(tmp_path / "comparison.csv")["method"].tolist()
    assert "aum" in methods and "| aum |" in capsys.readouterr().out


def test_two_gloo_processes_record_what_the_recorder_records(tmp_path):
    """The two ranks are forked from a fresh interpreter with one OpenMP thread: forking this test
    process, whose torch has already run parallel regions, leaves the children's OpenMP pool dead
    (they hang in their first parallel op)."""
    code = ("import sys; from pathlib import Path; sys.path[:0] = sys.argv[2:]; import lightning_fit; "
            "lightning_fit.fit(Path(sys.argv[1]), devices=2, strategy='ddp_fork')")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(Path(__file__).parent), str(ROOT)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    logs = [torch_load(tmp_path / f"batches_rank{r}.pt") for r in range(2)]
    seen = torch.cat([indices for log in logs for epoch, _, _, indices in log if epoch == 0])
    assert len(seen) > SAMPLES and set(seen.tolist()) == set(range(SAMPLES))   # the padding repeats a sample
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "batches_rank0.pt", "batches_rank1.pt", "metadata.pth", "training_dynamics.npz"]  # saved once, no leftovers
    assert_same(load_dynamics(tmp_path), recorded_by_hand(tmp_path, ranks=2))


def test_epochs_cut_by_max_steps_are_left_out(tmp_path, monkeypatch):
    steps_per_epoch = -(-SAMPLES // lightning_fit.BATCH)
    monkeypatch.setattr(lightning_fit, "EPOCHS", 2)
    trainer = lightning_fit.pl.Trainer

    def cut_short(**options):
        return trainer(**options, max_steps=steps_per_epoch + 2)

    monkeypatch.setattr(lightning_fit.pl, "Trainer", cut_short)
    with pytest.warns(UserWarning, match="last epoch .1. trained on 16 of the 45 samples"):
        lightning_fit.fit(tmp_path)
    assert load_dynamics(tmp_path).td.shape == (SAMPLES, 1, CLASSES)
    assert_same(load_dynamics(tmp_path), recorded_by_hand(tmp_path, ranks=1, epochs=1))

    monkeypatch.setattr(lightning_fit.pl, "Trainer", lambda **options: trainer(**options, max_steps=2))
    with pytest.warns(UserWarning, match="no whole epoch was trained, so no dynamics were saved"):
        lightning_fit.fit(tmp_path / "short")
    assert not (tmp_path / "short" / "training_dynamics.npz").exists()


def test_batches_without_indices_or_logits_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(lightning_fit, "IndexedDataset", lambda data: data)
    with pytest.raises(UserError, match="no sample indices.*IndexedDataset"):
        lightning_fit.fit(tmp_path / "no_index")
    monkeypatch.undo()
    monkeypatch.setattr(lightning_fit.TinyClassifier, "training_step",
                        lambda self, batch, batch_idx: torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1]))
    with pytest.raises(UserError, match="training_step must return .'loss': loss, 'logits': logits.*keys .'loss'.$"):
        lightning_fit.fit(tmp_path / "no_logits")
    assert not (tmp_path / "no_logits" / "training_dynamics.npz").exists()


def test_without_lightning_the_import_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "mislabel.integrations.lightning")
    with pytest.raises(ImportError, match=r"pip install 'mislabel-detection\[lightning\]'") as raised:
        importlib.import_module("mislabel.integrations.lightning")
    assert "\n" not in str(raised.value)
