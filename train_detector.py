"""Phase 2: train the LSTM noise detector on training dynamics, supervised by synthetic flips.

    python train_detector.py --r 0.2 --dataset cifar10 --files_path replication/.../computation4td_seed1

Several runs can be pooled (``--files_path A B``), of any lengths: by default every run is resampled
to 32 epochs and the detector is the variant bench/detection.py measured best in transfer
(correctness, each sample's per-epoch percentile of probability and margin among the run's
samples, and the run's class context; a one-layer bidirectional LSTM, mean+max pooled over
epochs). The paper's detector is ``--features prob --readout last --no-bidirectional --seq_len 0
--hidden_size 64 --num_layers 2``. ``--control_out`` also fits the learned control on the same runs. ``--resume DETECTOR`` fine-tunes
an existing detector (its architecture and resampling win over these flags). A stratified 90/10
split of the samples holds out data for choosing the best epoch by AUC; held-out AUC and mAP are
printed and stored in the detector file.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

from mislabel.scoring.features import FEATURES, build_features, check_features
from mislabel.core.user_input import (OneLineParser, UserError, exit_on_user_error, require_file, require_folder,
                                      seed_value, single_path_component)
from mislabel.core.dynamics import load_dynamics
from mislabel.core.device import pick_device, seed_everything

# Adam at 2e-3 with batch 256: on a corpus of 20-30 source runs (tens of thousands of sequences)
# held-out AUC stops moving after a handful of epochs; longer training fits the source datasets,
# not the noise (bench/detection.py measures transfer, which is what counts).
DEFAULTS = dict(epochs=8, batch_size=256, lr=2e-3, hidden_size=32, num_layers=1, holdout=0.1)
# The detector the transfer benchmark favours (BENCHMARKS.md, bench/detection.py): correctness, the
# per-epoch percentiles of probability and margin (scale-free, so a detector trained on an easy
# dataset reads a hard one alike) and the run's class context (confusion, class_error: how many of
# the label's class the model puts where this sample goes, so structured noise shows), a one-layer
# bidirectional LSTM pooled over epochs (small enough to score 1,000,000 samples in about a minute
# on 2 CPU cores), runs resampled to 32 points so one detector serves runs of any length.
# The paper's variant:
#   --features prob --readout last --no-bidirectional --seq_len 0 --hidden_size 64 --num_layers 2
ARCHITECTURE = dict(features="correct,prob_rank,margin_rank,confusion,class_error", readout="pool", bidirectional=True,
                    seq_len=32)
# mislabel.scoring.lstm.READOUTS, spelled out so the flags are checked before torch loads
# (tests/test_startup.py checks that the two agree)
READOUT_CHOICES = ("last", "pool")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="train_detector.py", launcher="python ", description=__doc__.split("\n")[0])
    parser.add_argument("--r", type=float, required=True, help="noise ratio of the training runs (names the file)")
    parser.add_argument("--dataset", required=True, help="dataset name (names the output file)")
    parser.add_argument("--files_path", nargs="+", required=True, help="run folder(s) with training_dynamics.npz")
    parser.add_argument("--resume", help="detector file to fine-tune instead of starting fresh")
    parser.add_argument("--out", help="output file (default: ./{dataset}_{r}_lstm_detector.pth.tar)")
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--batch_size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    parser.add_argument("--hidden_size", type=int, default=DEFAULTS["hidden_size"])
    parser.add_argument("--num_layers", type=int, default=DEFAULTS["num_layers"])
    parser.add_argument("--features", default=ARCHITECTURE["features"],
                        help=f"comma list from {sorted(FEATURES)} (paper: prob)")
    parser.add_argument("--readout", default=ARCHITECTURE["readout"], choices=READOUT_CHOICES,
                        help="head input: last time step (paper) or mean+max pooled over epochs")
    parser.add_argument("--bidirectional", action=argparse.BooleanOptionalAction,
                        default=ARCHITECTURE["bidirectional"],
                        help="run the LSTM both ways along the epoch axis (paper: --no-bidirectional)")
    parser.add_argument("--seq_len", type=int, default=ARCHITECTURE["seq_len"],
                        help="resample every run to this many epochs (linear interpolation), so runs of other "
                             "lengths can be pooled and scored; 0 = use the recorded epochs (paper)")
    parser.add_argument("--max_per_run", type=int, default=0,
                        help="use at most this many samples of each run (seeded draw), so every run of a corpus "
                             "weighs alike; 0 = all")
    parser.add_argument("--seed", type=seed_value, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--control_out", help="also fit the learned control (logistic regression on the baselines' "
                                              "scores) on the same runs and write it to this file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    _check(args)
    return args


def _check(args: argparse.Namespace) -> None:
    """Refuse bad values and paths before torch loads and before any run is read."""
    if not 0.0 <= args.r < 1.0:
        raise UserError(f"--r {args.r} is outside [0, 1); pass the noise ratio of the runs, e.g. 0.2")
    if args.max_per_run < 0:
        raise UserError(f"--max_per_run {args.max_per_run} must be 0 (all samples) or a positive count")
    for flag in ("epochs", "batch_size", "hidden_size", "num_layers"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} {getattr(args, flag)} must be at least 1")
    if args.seq_len < 0 or args.seq_len == 1:
        raise UserError(f"--seq_len {args.seq_len} must be at least 2, or 0 to keep the recorded epochs")
    check_features([name.strip() for name in args.features.split(",") if name.strip()])
    for folder in args.files_path:
        require_folder(folder, "run folder", "pass the folder generate_td wrote")
    if args.resume:
        require_file(args.resume, "detector file", "train one with `./run.sh train_detector` or pass the path of an "
                     "existing .pth.tar")
    if args.out is None:
        single_path_component(args.dataset, "--dataset")  # it names the output file in this folder
    args.out = args.out or f"{args.dataset}_{args.r}_lstm_detector.pth.tar"
    for path in filter(None, (args.out, args.control_out)):
        if Path(path).exists() and not args.overwrite:
            raise UserError(f"{path} already exists; pass --overwrite to replace it or another file name")


if __name__ == "__main__":  # refuse a bad command line before the imports below (seconds and ~1 GB)
    exit_on_user_error(parse_args)(sys.argv[1:])

import torch  # noqa: E402  (after the check, on purpose)
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from mislabel.scoring.control import fit_control, save_control
from mislabel.scoring.lstm import LSTMDetector, build_detector, detector_config, load_detector, save_detector
from mislabel.scoring.metrics import detection_metrics, has_ground_truth


def load_training_set(folders: list[str], features: list[str], seq_len: int | None = None,
                      max_per_run: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Pool sequences and flip labels from every run folder, with each run's recorded epoch count.

    Without ``seq_len`` all runs must share the epoch count; with it each is resampled to ``seq_len``.
    ``max_per_run`` keeps a seeded random share of each larger run, so a broad corpus of runs weighs
    each run alike instead of by its size (features are built on the whole run first: percentiles
    and class context describe the run, not the sample drawn from it).
    """
    rng = np.random.default_rng(seed)
    sequences, targets, lengths = [], [], []
    for folder in folders:
        dyn = load_dynamics(folder)
        if not has_ground_truth(dyn.flipped):
            raise UserError(f"{folder} has no known flipped labels (or all/none flipped); the detector needs a "
                            "run with synthetic noise, e.g. generate_td with noise_ratio 0.2")
        if not seq_len and lengths and dyn.num_epochs != lengths[0]:
            raise UserError(f"{folder} has {dyn.num_epochs} epochs but {folders[0]} has {lengths[0]}; "
                            "pool runs of the same length or pass --seq_len to resample them all")
        rows = np.arange(dyn.num_samples)
        if max_per_run and dyn.num_samples > max_per_run:
            rows = np.sort(rng.permutation(dyn.num_samples)[:max_per_run])
        sequences.append(build_features(dyn, features, seq_len)[rows])
        targets.append(dyn.flipped[rows].astype(np.float32))
        lengths.append(dyn.num_epochs)
    return np.concatenate(sequences), np.concatenate(targets), lengths


@torch.no_grad()
def predict(model: LSTMDetector, sequences: torch.Tensor, batch_size: int) -> np.ndarray:
    model.eval()
    return torch.cat([torch.sigmoid(model(sequences[i:i + batch_size])).cpu()
                      for i in range(0, len(sequences), batch_size)]).numpy()


def train(args: argparse.Namespace) -> tuple[LSTMDetector, dict, dict]:
    """Fit the detector; returns (best model, its config, held-out metrics)."""
    features = [name.strip() for name in args.features.split(",") if name.strip()]
    check_features(features)
    device = pick_device(args.device)
    seed_everything(args.seed)
    seq_len = args.seq_len or None
    if args.resume:
        model, config = load_detector(args.resume, device)
        features, seq_len = config["features"], config.get("seq_len")
    sequences, targets, lengths = load_training_set(args.files_path, features, seq_len, args.max_per_run, args.seed)
    seen = lengths[0] if len(set(lengths)) == 1 else sorted(set(lengths))
    if not args.resume:
        config = detector_config(features, args.hidden_size, args.num_layers, seen, readout=args.readout,
                                 bidirectional=args.bidirectional, seq_len=seq_len)
        model = build_detector(config).to(device)
    config = dict(config, num_epochs_seen=seen)
    rows = np.arange(len(targets))
    fit_rows, held_rows = train_test_split(rows, test_size=DEFAULTS["holdout"], stratify=targets,
                                           random_state=args.seed)
    x = torch.from_numpy(sequences).to(device)
    y = torch.from_numpy(targets).to(device)
    positive_share = float(targets[fit_rows].mean())
    pos_weight = torch.tensor((1 - positive_share) / positive_share, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    best_auc, best_state, best_metrics = -1.0, None, None
    bar = tqdm(range(args.epochs), desc="detector", unit="epoch", dynamic_ncols=True)
    for _ in bar:
        model.train()
        order = torch.from_numpy(fit_rows)[torch.randperm(len(fit_rows), generator=generator)]
        for batch in order.split(args.batch_size):
            batch = batch.to(device)
            loss = F.binary_cross_entropy_with_logits(model(x[batch]), y[batch], pos_weight=pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        held_scores = predict(model, x[torch.from_numpy(held_rows).to(device)], 4 * args.batch_size)
        metrics = detection_metrics(held_scores, targets[held_rows], threshold=0.5)
        if metrics["auc"] >= best_auc:  # ties go to the later, better-calibrated epoch
            best_auc, best_metrics = metrics["auc"], metrics
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(held_auc=f"{metrics['auc']:.4f}", best=f"{best_auc:.4f}")
    model.load_state_dict(best_state)
    return model, config, best_metrics


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    model, config, metrics = train(args)
    config["trained_on"] = [str(Path(p)) for p in args.files_path]
    save_detector(out, model, config, metrics)
    if args.control_out:
        save_control(args.control_out, fit_control([load_dynamics(p) for p in args.files_path],
                                                   names=config["trained_on"]))
        print(f"learned control written to {args.control_out}")
    print(f"held-out AUC {metrics['auc']:.4f}  mAP {metrics['map']:.4f}  "
          f"(precision {metrics['precision']:.3f}, recall {metrics['recall']:.3f} at 0.5)")
    print(f"detector written to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
