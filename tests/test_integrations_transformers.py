"""The Hugging Face integration records what a plain Recorder records for the logits the Trainer
computed, keeps the index through remove_unused_columns and the collator, leaves evaluation out,
and its folder is a run folder rank reads; wrong set-ups are one-line errors. A random-init BERT
from a small config, random token ids: no download, no hub."""
from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")

from mislabel import rank  # noqa: E402  (after the offline switches and the skip, on purpose)
from mislabel.core.dynamics import load_dynamics  # noqa: E402
from mislabel.core.user_input import UserError  # noqa: E402
from mislabel.integrations.transformers import DynamicsCallback, DynamicsTrainer, IndexedDataset  # noqa: E402
from mislabel.training.recorder import Recorder  # noqa: E402

SAMPLES, CLASSES, EPOCHS, TOKENS, VOCAB = 40, 3, 2, 8, 50


def rows() -> list[dict]:
    """Tokenized rows as a datasets.Dataset yields them, with a text column the model does not take."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (SAMPLES, TOKENS), generator=generator)
    labels = torch.randint(0, CLASSES, (SAMPLES,), generator=generator)
    return [{"text": f"row {i}", "input_ids": ids[i], "attention_mask": torch.ones(TOKENS, dtype=torch.int64),
             "labels": int(labels[i])} for i in range(SAMPLES)]


def tiny_bert() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=TOKENS, num_labels=CLASSES)
    return transformers.BertForSequenceClassification(config)


def arguments(folder, **overrides) -> transformers.TrainingArguments:
    options = {"output_dir": str(folder), "num_train_epochs": EPOCHS, "per_device_train_batch_size": 8,
               "per_device_eval_batch_size": 8, "learning_rate": 1e-3, "seed": 0, "use_cpu": True,
               "report_to": "none", "save_strategy": "no", "logging_strategy": "no", "disable_tqdm": True}
    return transformers.TrainingArguments(**{**options, **overrides})


class LoggingTrainer(DynamicsTrainer):
    """Keeps every training batch's logits, labels and indices as compute_loss saw them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        if model.training:
            self.batches.append((outputs["logits"].detach().clone(), inputs["labels"].clone(), inputs["index"].clone()))
        return (loss, outputs) if return_outputs else loss


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
