"""Phase 2, the seed's command: train the LSTM noise detector (``mislabel.commands.train_detector``).

    python train_detector.py --r 0.2 --dataset cifar10 --files_path replication/.../computation4td_seed1

``./run.sh train_detector`` and ``mislabel train-detector`` run the very same command;
``python train_detector.py -h`` lists its flags.
"""
from __future__ import annotations

import sys

from mislabel.commands.train_detector import READOUT_CHOICES, main, parse_args

__all__ = ["parse_args", "main", "READOUT_CHOICES"]

if __name__ == "__main__":
    main(sys.argv[1:])
