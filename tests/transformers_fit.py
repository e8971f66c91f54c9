"""A tiny Hugging Face Trainer fit with the DynamicsCallback, for tests/test_integrations_transformers.py.

The test runs it in-process, and as two gloo processes under torchrun (``python
tests/transformers_fit.py OUT``), where each rank saves every training batch's logits, labels and
indices as compute_loss saw them (``batches_rank<r>.pt``), so the test can feed the very same
values to a plain Recorder. A random-init BERT from a small config, random token ids: no download.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch
import transformers

from mislabel.integrations.transformers import DynamicsCallback, DynamicsTrainer, IndexedDataset

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


def distributed_fit(out: Path) -> None:
    """One rank of the torchrun test: train, save this rank's batches; rank 0's callback saves the run."""
    trainer = LoggingTrainer(model=tiny_bert(), args=arguments(out / "hf"), train_dataset=IndexedDataset(rows()),
                             callbacks=[DynamicsCallback(SAMPLES, CLASSES, out=out / "run")])
    trainer.train()
    torch.save(trainer.batches, out / f"batches_rank{trainer.args.process_index}.pt")


if __name__ == "__main__":
    distributed_fit(Path(sys.argv[1]))
