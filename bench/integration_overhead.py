"""What the framework callbacks cost a training run: epochs with and without them, small models on CPU.

Lightning: the MLP of examples/lightning_digits.py on scikit-learn's digits (1,797 rows, batch 64,
29 steps per epoch). Hugging Face: the random-init small BERT of examples/transformers_tiny.py (600
sequences of 12 tokens, batch 32, 19 steps per epoch). For each, "without" is the plain set-up (the
dataset as is, no callback; for Hugging Face the plain ``Trainer``) and "with" is what a user adds:
``IndexedDataset`` around the training set and the ``DynamicsCallback`` (for Hugging Face on a
``DynamicsTrainer``). The two alternate within each repeat so that load from other jobs hits them
alike. Each epoch is timed twice: CPU time of this process (``time.process_time``; one thread, data
loaded in the main process, so it is the run's whole work, and other jobs on a shared machine
barely move it) and wall time. "epoch ms" is the median over repeats of the mean epoch time, the
first epoch of each fit left out (warm-up); "in callback" is the CPU time inside the callback's
recording calls (timed around each call), per epoch.

    OMP_NUM_THREADS=1 python bench/integration_overhead.py --repeats 5 --epochs 6
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout first: runner.py, the seed names

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = ("without", "with")


def timed(callback_class: type) -> type:
    """``callback_class`` with the CPU seconds spent in its recording calls added up."""

    class Timed(callback_class):
        seconds = 0.0

        def _record(self, *args) -> None:
            started = time.process_time()
            super()._record(*args)
            self.seconds += time.process_time() - started

        def _end_epoch(self) -> None:
            started = time.process_time()
            super()._end_epoch()
            self.seconds += time.process_time() - started

    return Timed


class Clock:
    """(CPU, wall) seconds of each epoch."""

    def __init__(self) -> None:
        self.epochs: list[tuple[float, float]] = []

    def start(self) -> None:
        self.started = (time.process_time(), time.perf_counter())

    def stop(self) -> None:
        self.epochs.append((time.process_time() - self.started[0], time.perf_counter() - self.started[1]))


# --- Lightning ----------------------------------------------------------------------------------------
def lightning_run(variant: str, epochs: int, out: Path) -> tuple[list[tuple[float, float]], float]:
    """(CPU, wall) seconds of each epoch of one fit, and the CPU seconds inside the callback."""
    import lightning.pytorch as pl
    from sklearn.datasets import load_digits
    from torch.utils.data import DataLoader, TensorDataset

    from mislabel.integrations.lightning import DynamicsCallback, IndexedDataset

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))

        def training_step(self, batch, batch_idx):
            logits = self.net(batch[0])
            return {"loss": F.cross_entropy(logits, batch[1]), "logits": logits}

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    class EpochTimer(Clock, pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.start()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.stop()

    digits = load_digits()
    data = TensorDataset(torch.tensor(digits.images, dtype=torch.float32).flatten(1) / 16, torch.tensor(digits.target))
    timer, callbacks = EpochTimer(), []
    if variant == "with":
        data, callbacks = IndexedDataset(data), [timed(DynamicsCallback)(len(data), 10, out=out)]
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", callbacks=[timer, *callbacks], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Classifier(), DataLoader(data, batch_size=64, shuffle=True))
    return timer.epochs, callbacks[0].seconds if callbacks else 0.0


# --- Hugging Face -------------------------------------------------------------------------------------
def transformers_run(variant: str, epochs: int, out: Path) -> tuple[list[tuple[float, float]], float]:
    import transformers

    from mislabel.integrations.transformers import (
        DynamicsCallback,
        DynamicsTrainer,
        IndexedDataset,
    )

    class EpochTimer(Clock, transformers.TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs) -> None:
            self.start()

        def on_epoch_end(self, args, state, control, **kwargs) -> None:
            self.stop()

    samples, length, vocab, classes = 600, 12, 100, 3
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, classes, (samples,), generator=generator)
    tokens = torch.randint(classes + 1, vocab, (samples, length), generator=generator)
    tokens[:, 0] = labels + 1
    rows = [{"input_ids": tokens[i], "attention_mask": torch.ones(length, dtype=torch.int64), "labels": int(labels[i])}
            for i in range(samples)]
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=length, num_labels=classes))
    args = transformers.TrainingArguments(output_dir=str(out / "trainer"), num_train_epochs=epochs,
                                          per_device_train_batch_size=32, learning_rate=1e-3, save_strategy="no",
                                          logging_strategy="no", report_to="none", disable_tqdm=True, seed=0,
                                          use_cpu=True, dataloader_pin_memory=False)
    timer = EpochTimer()
    if variant == "with":
        recording = timed(DynamicsCallback)(samples, classes, out=out)
        trainer = DynamicsTrainer(model=model, args=args, train_dataset=IndexedDataset(rows),
                                  callbacks=[timer, recording])
    else:
        recording = None
        trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=[timer])
    trainer.train()
    return timer.epochs, recording.seconds if recording else 0.0


FRAMEWORKS = {"lightning": lightning_run, "transformers": transformers_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=6, help="per fit; the first is left out as warm-up")
    parser.add_argument("--frameworks", nargs="+", choices=list(FRAMEWORKS), default=list(FRAMEWORKS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| framework | variant | epoch CPU ms (median) | epoch CPU ms (each repeat) | CPU overhead | "
          "epoch wall ms (median) | wall overhead | in callback, CPU ms per epoch |")
    print("|---|---|---|---|---|---|---|---|")
    for framework in args.frameworks:
        cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        wall: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        inside: list[float] = []
        with tempfile.TemporaryDirectory() as scratch:
            for repeat in range(args.repeats):
                for variant in VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]:
                    out = Path(scratch) / f"{variant}{repeat}"
                    epochs, in_callback = FRAMEWORKS[framework](variant, args.epochs, out)
                    cpu[variant].append(1000 * statistics.mean(c for c, _ in epochs[1:]))
                    wall[variant].append(1000 * statistics.mean(w for _, w in epochs[1:]))
                    if variant == "with":
                        inside.append(1000 * in_callback / args.epochs)
        base_cpu, base_wall = statistics.median(cpu["without"]), statistics.median(wall["without"])
        for variant in VARIANTS:
            cpu_ms, wall_ms = statistics.median(cpu[variant]), statistics.median(wall[variant])
            each = ", ".join(f"{value:.0f}" for value in cpu[variant])
            if variant == "without":
                extra = "- | " + f"{wall_ms:.0f} | - | -"
            else:
                extra = (f"{100 * (cpu_ms / base_cpu - 1):+.1f}% | {wall_ms:.0f} | "
                         f"{100 * (wall_ms / base_wall - 1):+.1f}% | {statistics.median(inside):.1f}")
            print(f"| {framework} | {variant} | {cpu_ms:.0f} | {each} | {extra} |", flush=True)

if __name__ == "__main__":
    main()
