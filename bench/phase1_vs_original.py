"""Phase 1 side by side with the original implementation: wall time and peak RSS, same job.

The job (issue 25 §8): 1,500 sklearn digits written as CIFAR-10 pickles (8x8 grey scaled to 32x32
RGB by ``bench/phase1_memory.py --write_cifar``; the other 297 digits are the test batch),
ResNet-32, ``--epochs`` epochs (default 5), 20% uniform noise, seed 1, batch 128, on the CPU.

* ours: ``./run.sh generate_td DATADIR cifar10 1 0.2 uniform resnet 32 --num_epochs 5``
  (its defaults: 10% held out for validation, dynamics recorded from the training pass);
* the original (a checkout of github.com/Christophe-Jia/mislabel-detection, passed as
  ``--original``; never copied here): the command its ``run.sh generate_td`` runs, with
  ``--num_epochs`` lowered to the same epochs, i.e. ``python runner.py --data DATADIR/cifar10
  --dataset cifar10 --net_type resnet --depth 32 --noise_ratio 0.2 --noise_type uniform --seed 1
  --num_valid 0 --save SAVE - train_for_td_computation --num_epochs 5 --lr 0.1 --wd 1e-4
  --batch_size 128 --num_workers 4 - done`` (every epoch: training, a test pass, and a pass over
  the training set that records the dynamics).

The original runs unchanged, from its own folder, with one folder put first on its PYTHONPATH
that holds a stand-in ``fire`` module written by this script (``python-fire`` is not a
requirement here). The stand-in's ``Fire(Runner)`` does what fire does with that command line:
it builds ``Runner(**flags)`` from the flags before the first ``-`` and calls each following
method with its flags (values parsed as Python literals, else kept as text). Before that it
makes one change to the environment: ``torchvision.datasets.cifar.check_integrity`` only checks
that the file exists, because torchvision compares each pickle's MD5 with the real CIFAR-10's
and these are digits. Nothing else differs; CUDA is never used (the original calls ``.cuda()`` only when
``torch.cuda.is_available()``).

``--baseline`` adds a third side: the same command run from another checkout of this repository
(e.g. the commit before a change, unpacked with ``git archive``), so before and after compare
against the original in one run.

Each run is one child process, started fresh into its own results folder; the sides alternate
(ours, [baseline,] original, then again, for ``--repeats`` rounds), so load from other work on
the machine hits every side. Wall time is measured around the child; CPU time is its user +
system time, its waited-for children's included (the original's DataLoader workers), which
load from other work changes far less than wall time. Peak RSS is ``ru_maxrss`` from
``os.wait4``: the largest resident set of the child or any process it waited for (the
original's workers are separate processes and are not summed). Every side gets the same
``OMP_NUM_THREADS`` (the caller's, else 1).

    OMP_NUM_THREADS=1 python bench/phase1_vs_original.py --original /tmp/original [--repeats 2]
        [--baseline /tmp/before]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED, NOISE_RATIO, NOISE_TYPE, NET, DEPTH, BATCH = "1", "0.2", "uniform", "resnet", "32", "128"

FIRE_STANDIN = '''"""Stand-in for python-fire, written by mislabel's bench/phase1_vs_original.py (see its docstring)."""
import ast
import sys


def _value(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _flags(words):
    flags, index = {}, 0
    while index < len(words):
        name = words[index].lstrip("-")
        flags[name], index = _value(words[index + 1]), index + 2
    return flags


def Fire(component):
    import os
    import torchvision.datasets.cifar

    torchvision.datasets.cifar.check_integrity = lambda path, md5=None: os.path.isfile(path)  # digits: other MD5s
    groups, current = [], []
    for word in sys.argv[1:]:
        if word == "-":
            groups.append(current)
            current = []
        else:
            current.append(word)
    groups.append(current)
    result = component(**_flags(groups[0]))
    for group in groups[1:]:
        result = getattr(result, group[0])(**_flags(group[1:]))
    return result
'''


def ours_command(root: Path, datadir: Path, epochs: int) -> list[str]:
    return ["bash", str(root / "run.sh"), "generate_td", str(datadir), "cifar10", SEED, NOISE_RATIO, NOISE_TYPE, NET,
            DEPTH, "--num_epochs", str(epochs)]


def original_command(datadir: Path, save: Path, epochs: int, workers: int) -> list[str]:
    """What the original's ``run.sh generate_td`` runs, with ``--num_epochs`` set to ``epochs``."""
    return [sys.executable, "runner.py", "--data", str(datadir / "cifar10"), "--dataset", "cifar10", "--net_type", NET,
            "--depth", DEPTH, "--noise_ratio", NOISE_RATIO, "--noise_type", NOISE_TYPE, "--seed", SEED, "--num_valid",
            "0", "--save", str(save), "-", "train_for_td_computation", "--num_epochs", str(epochs), "--lr", "0.1",
            "--wd", "1e-4", "--batch_size", BATCH, "--num_workers", str(workers), "-", "done"]


def measure(command: list[str], cwd: Path, env: dict, log: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MiB) of ``command`` as one child process; its output goes to ``log``."""
    with open(log, "w") as out:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    if child.returncode:
        sys.exit(f"{command[0]} {' '.join(command[1:4])} ... failed (exit {child.returncode}); its output: {log}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--original", type=Path, required=True,
                        help="checkout of Christophe-Jia/mislabel-detection (e.g. unpacked with git archive)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of (ours, original); medians are reported")
    parser.add_argument("--epochs", type=int, default=5, help="phase-1 epochs on both sides (the issue's job: 5)")
    parser.add_argument("--workers", type=int, default=4, help="the original's --num_workers (its run.sh: 4)")
    parser.add_argument("--baseline", type=Path, help="another checkout of this repository, measured as a third side")
    args = parser.parse_args()
    original = args.original.resolve()
    if not (original / "runner.py").is_file():
        sys.exit(f"--original {original} holds no runner.py; pass a checkout of the original repository")
    ours = {"ours": ROOT}
    if args.baseline is not None:
        if not (args.baseline / "run.sh").is_file():
            sys.exit(f"--baseline {args.baseline} holds no run.sh; pass a checkout of this repository")
        ours["baseline"] = args.baseline.resolve()
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        subprocess.run([sys.executable, str(ROOT / "bench" / "phase1_memory.py"), "--write_cifar", str(work / "data")],
                       check=True)
        (work / "shim").mkdir()
        (work / "shim" / "fire.py").write_text(FIRE_STANDIN)
        base = {**os.environ, "OMP_NUM_THREADS": threads}
        print(f"python {platform.python_version()}; {platform.processor() or platform.machine()}, {os.cpu_count()} "
              f"cores; OMP_NUM_THREADS={threads}; original: {original}; load average before: {load_average()}",
              flush=True)
        results: dict[str, list[tuple[float, float, float]]] = {side: [] for side in (*ours, "original")}
        for repeat in range(args.repeats):
            run = work / f"run{repeat}"
            run.mkdir()
            sides = {side: (ours_command(root, work / "data", args.epochs), root,
                            {**base, "PYTHON": sys.executable, "RESULTS_DIR": str(run / side)})
                     for side, root in ours.items()}
            sides["original"] = (original_command(work / "data", run / "original", args.epochs, args.workers), original,
                                 {**base, "PYTHONPATH": str(work / "shim")})
            for side, (command, cwd, env) in sides.items():
                results[side].append(measure(command, cwd, env, run / f"{side}.log"))
                seconds, cpu, peak = results[side][-1]
                print(f"round {repeat + 1} {side}: {seconds:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak:.0f} MiB "
                      f"(load average {load_average()})", flush=True)
        print_table(results)
        print(f"\nload average after: {load_average()}")


def print_table(results: dict[str, list[tuple[float, float, float]]]) -> None:
    """Each side's rounds and medians, then each of ours as a ratio of the original's medians."""
    medians = {side: [statistics.median(column) for column in zip(*rows)] for side, rows in results.items()}
    print("\n| side | wall s (rounds) | wall s | CPU s | peak RSS MiB (rounds) | peak RSS MiB |")
    print("|---|---|---:|---:|---|---:|")
    for side, rows in results.items():
        wall, cpu, peak = medians[side]
        print(f"| {side} | {', '.join(f'{row[0]:.1f}' for row in rows)} | {wall:.1f} | {cpu:.1f} | "
              f"{', '.join(f'{row[2]:.0f}' for row in rows)} | {peak:.0f} |")
    for side in results:
        if side != "original":
            wall, cpu, peak = (mine / theirs for mine, theirs in zip(medians[side], medians["original"]))
            print(f"| {side} / original | | {wall:.2f}x | {cpu:.2f}x | | {peak:.2f}x |")


if __name__ == "__main__":
    main()
