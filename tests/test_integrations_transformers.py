"""The Hugging Face integration records what a plain Recorder records for the logits the Trainer
computed, in one process and in two gloo processes under torchrun, keeps the index through
remove_unused_columns and the collator, leaves evaluation out, and its folder is a run folder rank
reads; wrong set-ups are one-line errors. A random-init BERT from a small config, random token ids:
no download, no hub (tests/transformers_fit.py)."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")

from conftest import ROOT  # noqa: E402  (after the offline switches and the skip, on purpose)
from mislabel import rank  # noqa: E402
from mislabel.core.dynamics import load_dynamics  # noqa: E402
from mislabel.core.files import torch_load  # noqa: E402
from mislabel.core.user_input import UserError  # noqa: E402
from mislabel.integrations.transformers import DynamicsCallback, DynamicsTrainer, IndexedDataset  # noqa: E402
from mislabel.training.recorder import Recorder  # noqa: E402
from transformers_fit import (CLASSES, EPOCHS, SAMPLES, LoggingTrainer, arguments, rows,  # noqa: E402
                              tiny_bert)


def test_records_what_the_recorder_records_and_rank_reads_it(tmp_path):
    train = rows()
    trainer = LoggingTrainer(model=tiny_bert(), args=arguments(tmp_path / "hf", eval_strategy="epoch"),
                             train_dataset=IndexedDataset(train), eval_dataset=IndexedDataset(train[:10]),
                             callbacks=[DynamicsCallback(SAMPLES, CLASSES, out=tmp_path / "run")])
    trainer.train()

    reference, recorded = Recorder(SAMPLES, CLASSES, EPOCHS), 0
    for logits, labels, indices in trainer.batches:   # training batches only: the evaluation ones are not logged
        reference.update(logits, labels, indices)
        recorded += len(indices)
        if recorded % SAMPLES == 0:
            reference.next_epoch()
    assert recorded == EPOCHS * SAMPLES
    saved, expected = load_dynamics(tmp_path / "run"), reference.dynamics()
    for name in ("td", "labels", "margin", "pred", "indices"):
        assert np.array_equal(getattr(saved, name), getattr(expected, name)), name
    assert np.array_equal(saved.assigned, [row["labels"] for row in train])
    assert sorted(rank(tmp_path / "run", methods=("aum",))["index"]) == list(range(SAMPLES))


def test_wrong_set_ups_are_one_line_errors(tmp_path):
    callback = DynamicsCallback(SAMPLES, CLASSES, out=tmp_path / "run")
    set_ups = [
        (DynamicsTrainer, rows(), [callback], "no sample indices.*IndexedDataset"),
        (transformers.Trainer, IndexedDataset(rows()), [callback], "DynamicsTrainer in place of Trainer"),
        (DynamicsTrainer, IndexedDataset(rows()), [], r"pass callbacks=\[DynamicsCallback"),
    ]
    for trainer_class, train, callbacks, message in set_ups:
        trainer = trainer_class(model=tiny_bert(), args=arguments(tmp_path / "hf", max_steps=1), train_dataset=train,
                                callbacks=callbacks)
        with pytest.raises(UserError, match=message) as raised:
            trainer.train()
        assert "\n" not in str(raised.value)
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="num_samples 0 must be a positive whole number"):
        DynamicsCallback(0, CLASSES, out=tmp_path / "run")


def test_without_transformers_the_import_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "mislabel.integrations.transformers")
    with pytest.raises(ImportError, match=r"pip install 'mislabel-detection\[transformers\]'") as raised:
        importlib.import_module("mislabel.integrations.transformers")
    assert "\n" not in str(raised.value)


def test_two_gloo_processes_under_torchrun_record_what_the_recorder_records(tmp_path):
    """Each rank logs its batches; fed to one Recorder in step then rank order (the sampler's padding,
    if any, as row -1 after its first sighting) they give the very file rank 0 saved."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                           str(Path(__file__).parent / "transformers_fit.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = [torch_load(tmp_path / f"batches_rank{r}.pt") for r in range(2)]
    steps = len(logs[0])
    assert steps == len(logs[1]) and steps % EPOCHS == 0
    reference = Recorder(SAMPLES, CLASSES, EPOCHS)
    for epoch in range(EPOCHS):
        seen: set[int] = set()
        for step in range(epoch * steps // EPOCHS, (epoch + 1) * steps // EPOCHS):
            for log in logs:
                logits, labels, indices = log[step]
                kept = torch.tensor([-1 if int(i) in seen else int(i) for i in indices])
                seen.update(int(i) for i in indices)
                reference.update(logits, labels, kept)
        assert seen == set(range(SAMPLES))
        reference.next_epoch()
    saved, expected = load_dynamics(tmp_path / "run"), reference.dynamics()
    for name in ("td", "labels", "margin", "pred", "indices"):
        assert np.array_equal(getattr(saved, name), getattr(expected, name)), name
