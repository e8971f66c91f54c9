"""repair's command: relabel the top suspects of a phase-1 run (``mislabel.scoring.repair``).

    ./run.sh repair <run_folder> <detector_file> <repair_ratio> [--overwrite]
    mislabel repair <run_folder> <detector_file> <repair_ratio> [--overwrite]
"""
from __future__ import annotations

import sys

from mislabel.core.user_input import OneLineParser, UserError, exit_on_user_error, require_folder

__all__ = ["main"]


@exit_on_user_error
def main(argv: list[str] | None = None, prog: str = "run.sh repair", launcher: str = "./") -> None:
    parser = OneLineParser(prog=prog, launcher=launcher, description=__doc__.split("\n")[0])
    parser.add_argument("run_folder", help="a generate_td run folder (training_dynamics.npz + metadata.pth)")
    parser.add_argument("detector_file", help="an LSTM detector from train_detector.py")
    parser.add_argument("repair_ratio", help="fraction of the ranked samples to relabel, in [0, 1]")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing repair file")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    args = parser.parse_args(argv)
    from mislabel.core.device import pick_device
    from mislabel.scoring.repair import build_repair, parse_ratio, repair_paths, write_repair

    ratio = parse_ratio(args.repair_ratio)
    require_folder(args.run_folder, "run folder", "pass the folder generate_td wrote")
    labels_path = repair_paths(args.run_folder, ratio)[0]
    if labels_path.exists() and not args.overwrite:
        raise UserError(f"{labels_path} already exists; pass --overwrite to rebuild it")
    repair = build_repair(args.run_folder, args.detector_file, ratio, pick_device(args.device))
    write_repair(args.run_folder, repair, overwrite=args.overwrite)
    meta = repair.meta
    print(f"{meta['num_selected']} of {meta['num_ranked']} ranked samples repaired by rule {meta['rule']}; "
          f"{meta['num_changed']} labels changed; wrote {labels_path}")


if __name__ == "__main__":
    main(sys.argv[1:])
