"""BENCHMARKS.md's demo section: `./run.sh demo` timed from start to end, with the table it ends with.

    OMP_NUM_THREADS=1 python bench/demo.py              # print the section
    OMP_NUM_THREADS=1 python bench/demo.py --write      # and put it in BENCHMARKS.md, between its markers

Runs the demo exactly as a user would (``./run.sh demo``, this interpreter as ``PYTHON``, results
in a temporary ``RESULTS_DIR``), so the wall time is the demo's own; the first install of ``.venv``
is not in it (``PYTHON`` skips it). The table is the demo's last output (``mislabel.commands.demo_table``),
copied as printed. The load average beside it says how busy the machine was.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from common import machine, replace_section  # noqa: E402

TABLE_START = "| measure | value |"


def run_demo(results_dir: Path) -> tuple[str, float]:
    """The demo's stdout and its wall time in seconds; a failed demo stops here with its stderr."""
    env = {**os.environ, "RESULTS_DIR": str(results_dir), "PYTHON": sys.executable}
    started = time.perf_counter()
    done = subprocess.run([str(ROOT / "run.sh"), "demo"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"./run.sh demo failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout, seconds


def section(stdout: str, seconds: float, load_before: float) -> str:
    """The markdown: command, machine, wall time, then the demo's closing table and verdict."""
    table = stdout[stdout.rindex(TABLE_START):].strip()
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    return (f"Command: `OMP_NUM_THREADS={threads} python bench/demo.py --write` (runs `./run.sh demo` with "
            f"`PYTHON` set, so no install). Machine: {machine()} (at the start {load_before:.1f}: other jobs "
            f"shared the CPUs, so the wall time is slower than on an idle machine). Wall time of the whole demo: "
            f"{seconds:.0f} s.\n\n{table}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="replace BENCHMARKS.md's demo section")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="mislabel_demo_") as results_dir:
        stdout, seconds = run_demo(Path(results_dir))
    text = section(stdout, seconds, load_before)
    print(text)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", "demo", text)


if __name__ == "__main__":
    main()
