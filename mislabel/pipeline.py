"""The Runner: the pipeline's phases over the library, as one object.

    generate_td:  load data -> inject noise -> build model -> train while recording dynamics -> save
    denoise:      rank samples with a detector -> drop the most suspicious -> retrain -> report
    oracle:       retrain without exactly the flipped labels (the yardstick of denoise)
    crossval:     retrain K times, each without one fold -> held-out probabilities for cleanlab

A ``RunConfig`` (``mislabel/run_config.py``) says what to run. The commands (``runner.py``,
``find_issues``, crossval, DivideMix, the bench scripts) build one and call the Runner; nothing
in the library below imports this module.
"""
from __future__ import annotations

import json
import time
import zlib
from contextlib import contextmanager
from functools import cached_property
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from mislabel.core import distributed
from mislabel.core.dynamics import Dynamics, load_dynamics, write_metadata
from mislabel.core.dynamics import SUMMARY_FILE
from mislabel.core.files import atomic_torch_save, atomic_write, write_command_file
from mislabel.core.device import pick_device, seed_everything
from mislabel.core.run_lock import folder_lock
from mislabel.core.run_options import Recipe, check_weighted_loss
from mislabel.core.user_input import UserError
from mislabel.data.datasets import ImageData, TensorBatches, load_dataset
from mislabel.data.noise import canonical_noise_type, corrupt_labels, pooled_pixels
from mislabel.models import build_model
from mislabel.reports.summary import denoise_table, format_metric, read_summary, write_summary
from mislabel.run_config import RunConfig, valid_count
from mislabel.scoring.cleaning import DEFAULT_ACTION, CleanedLabels, clean_labels, oracle_labels
from mislabel.scoring.seeding import (SeededLabels, Seeds, acted_on_check, load_seeds, save_seeds, seed_flips,
                                      seeded_rows)
from mislabel.scoring.summary import summarize
from mislabel.training.accel import Acceleration
from mislabel.training.checkpoint import CHECKPOINT_FILE, Checkpoint
from mislabel.training.crossval import crossval_probs, predict_probs
from mislabel.training.loop import Recording, evaluate, fit
from mislabel.training.recorder import Recorder

if TYPE_CHECKING:  # imported where used: in-memory phase 1 needs neither (torchvision, sklearn.metrics)
    from mislabel.data.file_batches import FileBatches
    from mislabel.scoring.scores import Suspects

__all__ = ["Runner", "RunConfig", "write_suspects_csv"]


class Runner:
    """Phase 1 (``train_for_td_computation``) and phase 3 (``subset`` + ``denoise``) on one dataset."""

    def __init__(self, config: RunConfig, data: ImageData | None = None, device: torch.device | None = None) -> None:
        """``data`` replaces loading ``config.dataset`` (find_issues brings a user's own images);
        ``device``: the caller has already joined torchrun's process group on it."""
        self.config = config  # checked when it was made, and never changed here
        self.device = device if device is not None else distributed.start(pick_device(config.device))
        self.accel = Acceleration.resolve(self.device, config.amp, config.compile)
        self.data: ImageData = data if data is not None else load_dataset(config.dataset, config.datadir, config.seed,
                                                                          config.dataset_image_size)
        if self.data.real_noise and config.ratio > 0:
            raise UserError(f"{config.dataset} carries real-world noise; drop noise_ratio (no synthetic noise is "
                            "added)")
        self.true_labels = self.data.train_labels.numpy()
        images = None if self.data.train_images is None else self.data.train_images.numpy()
        self.assigned_labels = corrupt_labels(self.true_labels, self.data.num_classes, config.ratio,
                                              canonical_noise_type(config.noise_type), config.seed, config.dataset,
                                              images=images)
        self.train_indices, self.valid_indices = self._split()
        self.seeds = self._seed(images)  # after the noise, before a backbone replaces the pixels
        self.recorded: Dynamics | None = None  # phase 1's dynamics, kept in memory on request
        self.backbone_side = self._through_backbone()
        self.build_model()  # fail fast on a bad --net_type/--depth, before anything is written

    # --- pipeline steps -----------------------------------------------------------------------
    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        """Hold out ``num_valid`` training samples (with their noisy labels, as a user would have)."""
        count = self.data.num_train
        num_valid = valid_count(self.config.num_valid, count)
        if not 0 <= num_valid < count:
            raise UserError(f"--num_valid {num_valid} must be between 0 and {count - 1} for {self.config.dataset}")
        rng = np.random.default_rng([self.config.seed, zlib.crc32(f"{self.config.dataset}|valid".encode())])
        order = rng.permutation(count)
        return np.sort(order[num_valid:]), np.sort(order[:num_valid])

    def _seed(self, images: np.ndarray | None) -> Seeds | None:
        """Change ``seed_rate`` of the training rows' noisy labels on purpose (``mislabel.scoring.seeding``;
        look-alike classes from the pooled pixels when in memory, else random seeds): every phase trains on
        them, phase 1 saves them, so the run measures its recall. The seeds and the labels they replaced."""
        if not self.config.seed_rate:
            return None
        rows = self.train_indices
        noisy = self.assigned_labels[rows]
        drawn = seed_flips(noisy, self.config.seed_rate, self.config.seed, num_classes=self.data.num_classes,
                           features=None if images is None else pooled_pixels(images[rows]))
        self.assigned_labels = self.assigned_labels.copy()
        self.assigned_labels[rows] = drawn.labels
        return SeededLabels(self.assigned_labels, rows[drawn.indices], drawn.kinds), noisy[drawn.indices]

    def _through_backbone(self) -> int | None:
        """With --backbone: in probe mode replace the images by their features (extracted once, cached
        beside the run folder), in finetune mode scale them for ``BackboneClassifier``; the side the
        backbone sees (None without one). After the noise, which may read the pixels."""
        c = self.config
        if c.backbone is None:
            return None
        from mislabel.training.probe import backbone_side, finetune_data, probe_data

        side = backbone_side(c.backbone, self.data.image_size, c.image_size)
        if c.mode == "finetune":
            self.data = finetune_data(self.data, side)
        else:
            self.data = probe_data(self.data, c.backbone, side, c.backbone_weights, c.td_dir.parent, self.device)
        return side

    def build_model(self) -> torch.nn.Module:
        seed_everything(self.config.seed)
        if self.config.mode == "finetune":
            from mislabel.models.backbones import BackboneClassifier

            return BackboneClassifier(self.config.backbone, self.data.num_classes, self.backbone_side,
                                      self.config.backbone_weights)
        return build_model(self.config.net_type, self.config.depth, self.data.num_classes,
                           in_channels=self.data.in_channels, image_size=self.data.image_size,
                           widen_factor=self.config.widen_factor, pretrained_path=self.config.pretrained_path)

    def batches(self, indices: np.ndarray, labels: np.ndarray | torch.Tensor, train: bool = False,
                test: bool = False, shard: bool = False) -> TensorBatches | FileBatches | None:
        """Batches over ``indices``, in memory or decoded from image files; with ``shard`` under
        torchrun, this rank's share of each epoch at ``--batch_size / NPROC`` per rank, so the global
        batch stays the recipe's."""
        if len(indices) == 0:
            return None
        world, batch_size = distributed.world_size(), self.config.recipe.batch_size
        sharded = shard and world > 1
        if sharded and batch_size // world < 2:
            raise UserError(f"--batch_size {batch_size} over {world} processes leaves under 2 samples per process; "
                            f"pass --batch_size {2 * world} or more")
        split = (distributed.rank(), world) if sharded else None
        per_rank = batch_size // world if sharded else batch_size
        images = self.data.test_images if test else self.data.train_images
        rows = torch.as_tensor(indices)
        if images is None:
            from mislabel.data.file_batches import FileBatches

            files = np.asarray(self.data.test_files if test else self.data.train_files, dtype=object)[indices]
            return FileBatches(files, torch.as_tensor(labels)[rows], self.data.mean, self.data.std, per_rank,
                               self.device, image_size=self.data.image_size, train=train, seed=self.config.seed,
                               workers=self.config.num_workers, shard=split)
        return TensorBatches(images[rows], torch.as_tensor(labels)[rows], self.data.mean, self.data.std, per_rank,
                             self.device, augment=self.data.augment if train else None, shuffle=train,
                             seed=self.config.seed, shard=split)

    @cached_property
    def valid_batches(self) -> TensorBatches | FileBatches | None:
        """The held-out rows with their noisy labels (as a user would have them): built once, read
        by every training of this Runner to select its model."""
        return self.batches(self.valid_indices, self.assigned_labels)

    def fit_rows(self, rows: np.ndarray, recipe: Recipe, description: str) -> torch.nn.Module:
        """A fresh model trained on ``rows`` (noisy labels) by ``recipe`` and selected on validation;
        nothing is written (cross-validation's folds)."""
        model = self.build_model().to(self.device)
        result = fit(model, self.batches(rows, self.assigned_labels, train=True), self.valid_batches, recipe,
                     description=description, accel=self.accel)
        model.load_state_dict(result.best_state)
        return model

    def predict_rows(self, model: torch.nn.Module, rows: np.ndarray) -> np.ndarray:
        """``model``'s class probabilities for ``rows``, in their order."""
        return predict_probs(model, self.batches(rows, torch.as_tensor(self.assigned_labels)))

    def crossval(self, folds: int, epochs: int | None = None) -> Path:
        """Held-out probabilities for cleanlab (``mislabel.training.crossval``) with phase 1's labels,
        split and recipe: K extra trainings, each without one fold of the training rows."""
        return crossval_probs(self.config, self.train_indices, self.assigned_labels, self.fit_rows, self.predict_rows,
                              folds, epochs)

    def refuse_finished(self, folder: Path) -> None:
        if read_summary(folder) is not None and not self.config.overwrite:
            raise UserError(f"{folder} already holds finished results; pass --overwrite to redo it "
                            "or set RESULTS_DIR to write elsewhere")

    @contextmanager
    def claimed(self, folder: Path) -> Iterator[None]:
        """Write ``folder`` inside this block: it must not hold finished results (unless --overwrite),
        and rank 0 holds its lock, so a second command started on it is refused, not interleaved."""
        self.refuse_finished(folder)
        if not distributed.is_main():
            yield
            return
        with folder_lock(folder):
            self.refuse_finished(folder)  # again: a command may have finished it while we started
            (folder / SUMMARY_FILE).unlink(missing_ok=True)
            write_command_file(folder)
            yield

    def _train_and_save(self, folder: Path, train_indices: np.ndarray, recorder: Recorder | None,
                        description: str, after_training: float = 0.0, labels: np.ndarray | None = None,
                        weights: np.ndarray | None = None) -> dict:
        """Fit on ``train_indices`` with the noisy labels (or ``labels``, one per dataset index, and loss
        ``weights``, one per row of ``train_indices``), select on validation, write models and results."""
        model = self.build_model().to(self.device)
        labels = torch.as_tensor(self.assigned_labels if labels is None else labels)
        # validation selects the model rank 0 saves, so under torchrun only rank 0 evaluates it (as the
        # test set below): the other ranks would decode and compute the same pass for nothing
        valid = self.valid_batches if distributed.is_main() else None
        started = time.perf_counter()
        checkpoint = self._checkpoint(folder, train_indices, recorder, description)
        # the un-augmented pass over the training set is only for recording in eval mode; building it
        # otherwise would hold a second device copy of the training images for nothing
        recording = None
        if recorder is not None:
            eval_pass = self.batches(train_indices, labels, shard=True) if self.config.td_mode == "eval" else None
            recording = Recording(recorder, self.config.td_mode, eval_pass)
        result = fit(model, self.batches(train_indices, labels, train=True, shard=True), valid, self.config.recipe,
                     recording=recording, log_path=folder / "train_log.csv", description=description,
                     checkpoint=checkpoint, accel=self.accel, after_training=after_training, sample_weights=weights)
        if not distributed.is_main():
            return {}
        checkpoint.remove()
        atomic_torch_save(result.best_state, folder / "model.pth")
        atomic_torch_save(result.last_state, folder / "model.pth.last")
        if not result.selected_on_validation:
            print("note: --num_valid 0, so model.pth is the final epoch's model (no early stopping)")
        model.load_state_dict(result.best_state)
        if valid is not None:
            evaluate(model, valid).write_csv(folder / "results_valid.csv", self.valid_indices)
        test_indices = np.arange(len(self.data.test_labels))
        test = evaluate(model, self.batches(test_indices, self.data.test_labels, test=True))
        test.write_csv(folder / "results_test.csv", test_indices)
        return {"test_accuracy": 1.0 - test.error, "best_epoch": result.best_epoch,
                "selected_on_validation": result.selected_on_validation,
                "train_seconds": round(time.perf_counter() - started, 2), "acceleration": self.accel.describe()}

    def _checkpoint(self, folder: Path, train_indices: np.ndarray, recorder: Recorder | None,
                    description: str) -> Checkpoint:
        """Per-epoch checkpoint of this run; one left by an unfinished run with the same settings is
        continued, one with other settings is refused (or dropped under --overwrite)."""
        key = json.dumps({**self._describe(), "stage": description, "recipe": asdict(self.config.recipe),
                          "train_rows": int(len(train_indices)),
                          "recording": None if recorder is None else recorder.describe(),
                          # bf16 changes the arithmetic, so such a run resumes only as one; float32 keys stay as before
                          **({"amp": "bf16"} if self.accel.amp else {})}, sort_keys=True)
        checkpoint = Checkpoint(folder / CHECKPOINT_FILE, key)
        # rank 0 alone drops the checkpoint, so only it loads the file to compare keys
        if self.config.overwrite and distributed.is_main() and not checkpoint.matches():
            checkpoint.remove()
        distributed.barrier()  # no rank may read a checkpoint that rank 0 is about to drop
        return checkpoint

    def _describe(self) -> dict:
        c = self.config
        return {"dataset": c.dataset, "seed": c.seed, "noise_ratio": c.ratio, "noise_type": c.noise_type,
                **({"seed_rate": c.seed_rate} if c.seed_rate else {}),  # unseeded: checkpoint keys as before
                "net_type": c.net_type, "depth": c.depth, "image_size": self.data.image_size,
                "epochs": c.recipe.epochs, "td_mode": c.td_mode,
                "num_train": int(len(self.train_indices)), "num_valid": int(len(self.valid_indices)),
                **({} if c.backbone is None else {"backbone": c.backbone, "mode": c.mode, "side": self.backbone_side,
                                                  "backbone_weights": c.backbone_weights})}

    def train_for_td_computation(self, after_training: float = 0.0, keep_dynamics: bool = False) -> Path:
        """Phase 1: train on the noisy labels, recording every training sample's dynamics.
        ``after_training``: what the command runs afterwards, in seconds (for the progress ETA);
        ``keep_dynamics``: also keep them in memory as ``recorded`` (rank 0), so a caller that
        scores them next does not read back the file just written."""
        folder = self.config.td_dir
        with self.claimed(folder):
            flipped = self.assigned_labels != self.true_labels
            if distributed.is_main():
                write_metadata(folder, self.train_indices, self.valid_indices, self.assigned_labels,
                               None if self.data.real_noise else self.true_labels)
                if self.seeds is not None:
                    save_seeds(folder, *self.seeds)
            recorder = Recorder(len(self.train_indices), self.data.num_classes, self.config.recipe.epochs,
                                sample_ids=self.train_indices, path=folder, store=self.config.td_store,
                                topk=self.config.td_topk)
            if distributed.is_main():
                print(recorder.describe())
            summary = self._describe()
            summary.update(self._train_and_save(folder, self.train_indices, recorder, "phase 1", after_training))
            if not distributed.is_main():
                return folder
            recorder.save(folder, metadata=False)
            if keep_dynamics:
                self.recorded = replace(recorder.dynamics(), true_labels=None if self.data.real_noise else
                                        self.true_labels[self.train_indices], flipped=None if self.data.real_noise
                                        else flipped[self.train_indices])
            recorder.cleanup()
            summary["num_flipped"] = (int(flipped[self.train_indices].sum())
                                      if not self.data.real_noise else None)
            if self.seeds is not None:  # among the flipped when the true labels are known: wrong labels trained on
                summary["num_seeded"] = len(self.seeds[0].indices)
            write_summary(folder, summary)
        print(f"test accuracy {format_metric(summary['test_accuracy'], percent=True)}; results in {folder}")
        return folder

    def suspects(self, detector_file: str, remove_ratio: float | str, td_dir: Path) -> tuple[Dynamics, Suspects]:
        """Rank phase 1's training samples with the detector and take its top ``remove_ratio``
        (``"auto"``: the run's estimated number of wrong labels, ``mislabel.scoring.count``; from the
        run's cross-validated probabilities when ``crossval`` wrote them, else from its dynamics)."""
        if remove_ratio != "auto" and not 0.0 <= remove_ratio < 1.0:
            raise UserError(f"remove_ratio {remove_ratio} is outside [0, 1); pass e.g. 0.2 to drop the top 20%")
        from mislabel.scoring.scores import top_suspects
        from mislabel.training.crossval import load_pred_probs

        dyn = self._matching_dynamics(td_dir)
        held_out = load_pred_probs(td_dir, dyn) if remove_ratio == "auto" \
            else None
        return dyn, top_suspects(detector_file, dyn, remove_ratio, self.device,
                                 pred_probs=None if held_out is None else held_out[0])

    def _matching_dynamics(self, td_dir: Path) -> Dynamics:
        """Phase 1's dynamics in ``td_dir``, refused when recorded with other labels than this run's."""
        dyn = load_dynamics(td_dir)
        if not np.array_equal(dyn.assigned, self.assigned_labels[dyn.indices]):
            raise UserError(f"the dynamics in {td_dir} were recorded with other labels than these arguments give; "
                            "pass the seed/noise arguments of that run or point --td_dir at the matching run")
        return dyn

    def _check_retrainable(self, assigned: np.ndarray, keep: np.ndarray, remove_ratio: float | str) -> None:
        """A removal that empties a class or leaves less than one batch would retrain on nearly nothing."""
        batch_size, left = self.config.recipe.batch_size, int(keep.sum())
        if left < batch_size:
            raise UserError(f"remove_ratio {remove_ratio} leaves {left} of {len(keep)} training samples, fewer than "
                            f"one batch ({batch_size}); pass a smaller remove_ratio (or --batch_size)")
        emptied = np.setdiff1d(assigned, assigned[keep])
        if len(emptied):
            raise UserError(f"remove_ratio {remove_ratio} removes every training sample of class {emptied[0]} "
                            f"({len(emptied)} classes emptied); pass a smaller remove_ratio")

    def denoise(self, detector_file: str, remove_ratio: float | str, td_dir: Path | None = None,
                action: str = DEFAULT_ACTION) -> Path:
        """Phase 3: act on the suspects (``suspects``; ``action`` of ``mislabel.scoring.cleaning``:
        remove them, the seed's phase 3, or relabel, both, down-weight) and retrain; report detection
        and accuracy. The seed calls this step ``Runner.train``, kept as its alias."""
        if action == "downweight":
            check_weighted_loss(self.config.recipe.loss_type)
        td_dir = Path(td_dir) if td_dir else self.config.td_dir
        folder = self.config.denoise_dir(action, remove_ratio)
        self.refuse_finished(folder)
        dyn, chosen = self.suspects(detector_file, remove_ratio, td_dir)
        cleaned = clean_labels(chosen.summary, chosen.rows, action)  # refuses an unknown action, before any write
        self._check_retrainable(cleaned.labels, cleaned.keep, remove_ratio)
        with self.claimed(folder):
            if distributed.is_main():
                write_suspects_csv(folder / "suspects.csv", dyn, chosen)
            ranking = chosen.ranking
            auc, ap = format_metric(ranking.auc), format_metric(ranking.map)
            print(f"detection AUC {auc}  mAP {ap}" if ranking.metrics else
                  "detection AUC/mAP unavailable: no known flipped labels in this run")
            if chosen.count is not None:
                print(f"remove_ratio auto: {chosen.count.describe()}")
            summary = self._describe()
            summary.update({"num_ranked": int(dyn.num_samples), "num_suspects": len(chosen.rows),
                            "remove_ratio": remove_ratio, **cleaned.describe(), "detection": ranking.metrics,
                            "estimated_wrong_labels": None if chosen.count is None else asdict(chosen.count),
                            "detector_file": str(detector_file), "td_dir": str(td_dir),
                            "flipped_share_of_removed": chosen.flipped_share})
            seeded = load_seeds(td_dir, dyn)  # a seeded run: how many seeds it acted on
            if seeded is not None:
                summary["seeded_check"] = acted_on_check(chosen.ranking.scores, chosen.rows, seeded_rows(
                    dyn.indices, seeded[0].indices), seeded[0].kinds, dyn.flipped)
            summary.update(self.retrain_cleaned(folder, dyn, cleaned))
            if not distributed.is_main():
                return folder
            summary["noisy_test_accuracy"] = (read_summary(td_dir) or {}).get("test_accuracy")
            write_summary(folder, summary)
        print(denoise_table(summary))
        print(f"results in {folder}")
        return folder

    def oracle(self, td_dir: Path | None = None) -> Path:
        """The yardstick of phase 3: retrain without exactly the flipped labels (``oracle_labels``; synthetic
        noise only), the most any removal can give, into ``config.oracle_dir``; reports its test accuracy."""
        td_dir = Path(td_dir) if td_dir else self.config.td_dir
        folder = self.config.oracle_dir
        self.refuse_finished(folder)
        dyn = self._matching_dynamics(td_dir)
        cleaned = oracle_labels(summarize(dyn), dyn.flipped)
        with self.claimed(folder):
            summary = self._describe()
            summary.update({"num_ranked": int(dyn.num_samples), **cleaned.describe(), "td_dir": str(td_dir)})
            summary.update(self.retrain_cleaned(folder, dyn, cleaned))
            if not distributed.is_main():
                return folder
            write_summary(folder, summary)
        print(f"oracle (without the {summary['num_removed']} flipped labels): test accuracy "
              f"{format_metric(summary['test_accuracy'], percent=True)}; results in {folder}")
        return folder

    train = denoise  # the seed's name for phase 3 (its README: "denoise_small calls Runner.train")

    def retrain_cleaned(self, folder: Path, dyn: Dynamics, cleaned: CleanedLabels) -> dict:
        """Train into ``folder`` on the rows of ``dyn`` that ``cleaned`` keeps, with its labels and
        weights (phase 1's recipe, early-stopped on the noisy validation split); returns the results."""
        labels = self.assigned_labels.copy()
        labels[dyn.indices] = cleaned.labels
        kept = np.flatnonzero(cleaned.keep)
        kept = kept[np.argsort(dyn.indices[kept], kind="stable")]
        weights = None if cleaned.weights is None else cleaned.weights[kept]
        return self._train_and_save(folder, dyn.indices[kept], None, "retrain", labels=labels, weights=weights)


def write_suspects_csv(path: Path, dyn: Dynamics, suspects: Suspects) -> None:
    """suspects.csv of a denoise run (``mislabel.reports.suspects``: one schema with find_issues'),
    most suspicious first; ``flagged`` marks the suspects that denoise acted on."""
    from mislabel.reports.suspects import suspects_table

    flagged = np.zeros(dyn.num_samples, dtype=bool)
    flagged[suspects.rows] = True
    table, _ = suspects_table(dyn, suspects.summary, suspects.ranking.scores, flagged, ("index", dyn.indices))
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))
