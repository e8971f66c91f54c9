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

Each run is one child process, started fresh into its own results folder; the sides alternate
(ours, original, ours, original ... for ``--repeats`` rounds), so load from other work on the
machine hits both. Wall time is measured around the child; peak RSS is ``ru_maxrss`` from
``os.wait4``: the largest resident set of the child or any process it waited for (the
original's DataLoader workers are separate processes and are not summed). Both sides get the
same ``OMP_NUM_THREADS`` (the caller's, else 1).

    OMP_NUM_THREADS=1 python bench/phase1_vs_original.py --original /tmp/original [--repeats 2]
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


def ours_command(datadir: Path, epochs: int) -> list[str]:
    return ["bash", str(ROOT / "run.sh"), "generate_td", str(datadir), "cifar10", SEED, NOISE_RATIO, NOISE_TYPE, NET,
            DEPTH, "--num_epochs", str(epochs)]


def original_command(datadir: Path, save: Path, epochs: int, workers: int) -> list[str]:
    """What the original's ``run.sh generate_td`` runs, with ``--num_epochs`` set to ``epochs``."""
    return [sys.executable, "runner.py", "--data", str(datadir / "cifar10"), "--dataset", "cifar10", "--net_type", NET,
            "--depth", DEPTH, "--noise_ratio", NOISE_RATIO, "--noise_type", NOISE_TYPE, "--seed", SEED, "--num_valid",
            "0", "--save", str(save), "-", "train_for_td_computation", "--num_epochs", str(epochs), "--lr", "0.1",
            "--wd", "1e-4", "--batch_size", BATCH, "--num_workers", str(workers), "-", "done"]


def measure(command: list[str], cwd: Path, env: dict, log: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of ``command`` as one child process; its output goes to ``log``."""
    with open(log, "w") as out:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    if child.returncode:
        sys.exit(f"{command[0]} {' '.join(command[1:4])} ... failed (exit {child.returncode}); its output: {log}")
    return seconds, usage.ru_maxrss / 1024


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--original", type=Path, required=True,
                        help="checkout of Christophe-Jia/mislabel-detection (e.g. unpacked with git archive)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of (ours, original); medians are reported")
    parser.add_argument("--epochs", type=int, default=5, help="phase-1 epochs on both sides (the issue's job: 5)")
    parser.add_argument("--workers", type=int, default=4, help="the original's --num_workers (its run.sh: 4)")
    args = parser.parse_args()
    original = args.original.resolve()
    if not (original / "runner.py").is_file():
        sys.exit(f"--original {original} holds no runner.py; pass a checkout of the original repository")
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        subprocess.run([sys.executable, str(ROOT / "bench" / "phase1_memory.py"), "--write_cifar", str(work / "data")],
                       check=True)
        (work / "shim").mkdir()
        (work / "shim" / "fire.py").write_text(FIRE_STANDIN)
        base = {**os.environ, "OMP_NUM_THREADS": threads}
        ours_env = {**base, "PYTHON": sys.executable}
        original_env = {**base, "PYTHONPATH": str(work / "shim")}
        print(f"python {platform.python_version()}; {platform.processor() or platform.machine()}, {os.cpu_count()} "
              f"cores; OMP_NUM_THREADS={threads}; original: {original}; load average before: {load_average()}",
              flush=True)
        times: dict[str, list[float]] = {"ours": [], "original": []}
        peaks: dict[str, list[float]] = {"ours": [], "original": []}
        for repeat in range(args.repeats):
            run = work / f"run{repeat}"
            sides = {
                "ours": (ours_command(work / "data", args.epochs), ROOT, {**ours_env, "RESULTS_DIR": str(run / "ours")}),
                "original": (original_command(work / "data", run / "original", args.epochs, args.workers), original,
                             original_env),
            }
            for side, (command, cwd, env) in sides.items():
                run.mkdir(exist_ok=True)
                seconds, peak = measure(command, cwd, env, run / f"{side}.log")
                times[side].append(seconds)
                peaks[side].append(peak)
                print(f"round {repeat + 1} {side}: {seconds:.1f} s, peak RSS {peak:.0f} MiB "
                      f"(load average {load_average()})", flush=True)
        print()
        print("| side | wall s (each round) | median wall s | peak RSS MiB (each round) | median peak RSS MiB |")
        print("|---|---|---:|---|---:|")
        for side in ("ours", "original"):
            print(f"| {side} | {', '.join(f'{t:.1f}' for t in times[side])} | {statistics.median(times[side]):.1f} | "
                  f"{', '.join(f'{p:.0f}' for p in peaks[side])} | {statistics.median(peaks[side]):.0f} |")
        wall = statistics.median(times["ours"]) / statistics.median(times["original"])
        rss = statistics.median(peaks["ours"]) / statistics.median(peaks["original"])
        pairs = [o / r for o, r in zip(times["ours"], times["original"])]
        print(f"| ours / original | {', '.join(f'{p:.2f}x' for p in pairs)} | {wall:.2f}x | | {rss:.2f}x |")
        print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
