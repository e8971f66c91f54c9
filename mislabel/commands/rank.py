"""rank's command: a run folder in, a ranked CSV out (``mislabel.rank``), most suspicious first.

    mislabel rank <run_folder> [--methods detector aum ...] [--detector FILE] [--out FILE.csv]

The run folder is any folder with training_dynamics.npz: generate_td's, find_issues' phase-1 run,
or one written by ``Recorder.save`` from your own loop.
"""
from __future__ import annotations

import sys
from pathlib import Path

from mislabel.core.user_input import OneLineParser, UserError, check_output_folder, exit_on_user_error, require_folder

__all__ = ["main", "DEFAULT_OUT"]

DEFAULT_OUT = "ranked.csv"  # in the run folder


@exit_on_user_error
def main(argv: list[str] | None = None, prog: str = "mislabel rank", launcher: str = "") -> None:
    from mislabel.scoring.methods import DEFAULT_RANK_METHODS, RANK_METHODS

    parser = OneLineParser(prog=prog, launcher=launcher, description=__doc__.split("\n")[0])
    parser.add_argument("run_folder", help="a folder holding training_dynamics.npz")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_RANK_METHODS), choices=RANK_METHODS,
                        metavar="METHOD", help=f"scores to compute, the first one ranks (choose from: "
                                               f"{', '.join(RANK_METHODS)}; default: {' '.join(DEFAULT_RANK_METHODS)})")
    parser.add_argument("--detector", default=None,
                        help="detector file for the detector method (default: the shipped one)")
    parser.add_argument("--out", default=None, help=f"the CSV to write (default <run_folder>/{DEFAULT_OUT})")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    require_folder(args.run_folder, "run folder", "pass a folder holding training_dynamics.npz")
    out = Path(args.out) if args.out else Path(args.run_folder) / DEFAULT_OUT
    check_output_folder(out.parent, "output folder", "pass --out a file in a writable folder")
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace it, or another --out")
    from mislabel.api import rank
    from mislabel.core.files import atomic_write

    table = rank(args.run_folder, detector=args.detector, methods=args.methods, device=args.device)
    atomic_write(out, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6f"))
    print(f"ranked {len(table)} samples by {args.methods[0]}, flagged the top {int(table['flagged'].sum()):,} "
          f"(the estimated number of wrong labels); wrote {out}")
    for method, metrics in table.attrs.get("metrics", {}).items():
        print(f"  {method}: AUC {metrics['auc']:.4f}, mAP {metrics['map']:.4f} (against the known flips)")


if __name__ == "__main__":
    main()
