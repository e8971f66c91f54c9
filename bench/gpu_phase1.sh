#!/usr/bin/env bash
# GPU phase-1 timing for issue 10. From the repository root, on a machine with a CUDA GPU:
#
#     bash bench/gpu_phase1.sh
#
# Times 3 epochs of phase 1 (ResNet-32, CIFAR-10-shaped data generated on the spot) for our path
# in bf16+channels_last, float32+channels_last, float32 NCHW and bf16+compile, and the seed's
# torchvision PIL loop on the same network; prints a markdown table for BENCHMARKS.md. Ends within
# 8 minutes on one H100 (the python part stops starting variants after --budget_s, default 400 s).
# On a machine without a GPU it prints "no CUDA device — skipped" and exits 0. Extra arguments go
# to bench/gpu_phase1.py (see its -h). When $OUT is set (the device tool), the table and the
# stderr log are also written there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The interpreter: $PYTHON; else python3 when it has torch; else the project's .venv (run.sh's order).
if [[ -n "${PYTHON:-}" ]]; then
  PY="$PYTHON"
elif python3 -c "import torch, torchvision" 2>/dev/null; then
  PY=python3
elif [[ -x .venv/bin/python ]]; then
  PY=.venv/bin/python
else
  echo "error: no python with torch and torchvision; set PYTHON=/path/to/python" >&2
  exit 2
fi

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device — skipped (a dry run on CPU: $PY bench/gpu_phase1.py --samples 512 --epochs 1 --device cpu)"
  exit 0
fi

out="${OUT:-$(mktemp -d)}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
# progress bars off (TQDM_DISABLE) and stderr to a file: the table is what matters in the output
status=0
TQDM_DISABLE=1 timeout 470 "$PY" bench/gpu_phase1.py "$@" 2>"$out/gpu_phase1.stderr" | tee "$out/gpu_phase1.txt" \
  || status=$?
if [[ $status -ne 0 ]]; then
  echo "bench/gpu_phase1.py ended with status $status (124: the 470 s limit); last lines of its stderr:"
  tail -n 20 "$out/gpu_phase1.stderr"
fi
exit "$status"
