"""Phase 2: train the LSTM noise detector on training dynamics, supervised by synthetic flips.

    python train_detector.py --r 0.2 --dataset cifar10 --files_path replication/.../computation4td_seed1
    mislabel train-detector --r 0.2 --dataset cifar10 --files_path ...      (the same command)

Several runs can be pooled (``--files_path A B``), of any lengths: by default every run is resampled
to 32 epochs and the detector is the variant bench/detection.py measured best in transfer
(correctness, each sample's per-epoch percentile of probability and margin among the run's
samples, and the run's class context; a one-layer bidirectional LSTM, mean+max pooled over
epochs). The paper's detector is ``--features prob --readout last --no-bidirectional --seq_len 0
--hidden_size 64 --num_layers 2``. ``--control_out`` also fits the learned control on the same runs.
``--resume DETECTOR`` fine-tunes an existing detector (its architecture and resampling win over these
flags). A stratified 90/10 split of the samples holds out data for choosing the best epoch by AUC;
held-out AUC and mAP are printed and stored in the detector file.

The command parses, calls ``mislabel.scoring.detector_training.train_detector`` and prints; the
recipe's defaults and checks are that module's ``DetectorRecipe``.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from mislabel.core.user_input import OneLineParser, UserError, exit_on_user_error, integer, single_path_component
from mislabel.scoring.detector_training import READOUT_CHOICES, DetectorRecipe, check_detector_job, train_detector
from mislabel.scoring.features import FEATURES

__all__ = ["parse_args", "main", "READOUT_CHOICES"]

DEFAULT = DetectorRecipe()


def parse_args(argv: list[str] | None = None, prog: str = "train_detector.py",
               launcher: str = "python ") -> argparse.Namespace:
    parser = OneLineParser(prog=prog, launcher=launcher, description=__doc__.split("\n")[0])
    parser.add_argument("--r", type=float, required=True, help="noise ratio of the training runs (names the file)")
    parser.add_argument("--dataset", required=True, help="dataset name (names the output file)")
    parser.add_argument("--files_path", nargs="+", required=True, help="run folder(s) with training_dynamics.npz")
    parser.add_argument("--resume", help="detector file to fine-tune instead of starting fresh")
    parser.add_argument("--out", help="output file (default: ./{dataset}_{r}_lstm_detector.pth.tar)")
    parser.add_argument("--epochs", type=int, default=DEFAULT.epochs)
    parser.add_argument("--batch_size", type=int, default=DEFAULT.batch_size)
    parser.add_argument("--lr", type=float, default=DEFAULT.lr)
    parser.add_argument("--hidden_size", type=int, default=DEFAULT.hidden_size)
    parser.add_argument("--num_layers", type=int, default=DEFAULT.num_layers)
    parser.add_argument("--features", default=",".join(DEFAULT.features),
                        help=f"comma list from {sorted(FEATURES)} (paper: prob)")
    parser.add_argument("--readout", default=DEFAULT.readout, choices=READOUT_CHOICES,
                        help="head input: last time step (paper) or mean+max pooled over epochs")
    parser.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=DEFAULT.bidirectional,
                        help="run the LSTM both ways along the epoch axis (paper: --no-bidirectional)")
    parser.add_argument("--seq_len", type=int, default=DEFAULT.seq_len,
                        help="resample every run to this many epochs (linear interpolation), so runs of other "
                             "lengths can be pooled and scored; 0 = use the recorded epochs (paper)")
    parser.add_argument("--max_per_run", type=int, default=DEFAULT.max_per_run,
                        help="use at most this many samples of each run (seeded draw), so every run of a corpus "
                             "weighs alike; 0 = all")
    parser.add_argument("--gate_folds", type=int, default=DEFAULT.gate_folds,
                        help="weigh the LSTM against AUM by how concentrated a run's mistakes are, with a gate "
                             "fitted on this many folds of out-of-fold LSTM scores (trains this many more LSTMs); "
                             "0 = the LSTM's own probability (the paper's detector, the earlier default)")
    parser.add_argument("--seed", type=integer, default=DEFAULT.seed)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--control_out", help="also fit the learned control (logistic regression on the baselines' "
                                              "scores) on the same runs and write it to this file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    _check(args)
    return args


def recipe_of(args: argparse.Namespace) -> DetectorRecipe:
    return DetectorRecipe(**{option.name: getattr(args, option.name) for option in fields(DetectorRecipe)})


def _check(args: argparse.Namespace) -> None:
    """Refuse bad values and paths before torch loads and before any run is read: the output
    file's name here, the rest with the library's own check."""
    if not 0.0 <= args.r < 1.0:
        raise UserError(f"--r {args.r} is outside [0, 1); pass the noise ratio of the runs, e.g. 0.2")
    if args.out is None:
        single_path_component(args.dataset, "--dataset")  # it names the output file in this folder
    args.out = args.out or f"{args.dataset}_{args.r}_lstm_detector.pth.tar"
    check_detector_job(args.files_path, recipe_of(args), out=args.out, resume=args.resume,
                       control_out=args.control_out, overwrite=args.overwrite)


@exit_on_user_error
def main(argv: list[str] | None = None, prog: str = "train_detector.py", launcher: str = "python ") -> None:
    args = parse_args(argv, prog, launcher)
    from mislabel.scoring.metrics import DETECTOR_THRESHOLD  # sklearn: loaded to train, not to parse

    trained = train_detector(args.files_path, recipe_of(args), out=args.out, resume=args.resume,
                             control_out=args.control_out, overwrite=args.overwrite, device=args.device)
    if args.control_out:
        print(f"learned control written to {args.control_out}")
    metrics = trained.metrics
    print(f"held-out AUC {metrics['auc']:.4f}  mAP {metrics['map']:.4f}  "
          f"(precision {metrics['precision']:.3f}, recall {metrics['recall']:.3f} at {DETECTOR_THRESHOLD})")
    print(f"detector written to {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
