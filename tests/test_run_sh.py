"""run.sh's command surface: help, usage errors, TESTRUN, and one-line errors for bad input."""
from __future__ import annotations

import pytest

import runner
from conftest import ROOT, refused, run_python, run_sh


def test_help_and_unknown_command():
    for args in ((), ("help",)):
        done = run_sh(*args)
        assert done.returncode == 0 and "generate_td <datadir>" in done.stdout
    done = run_sh("frobnicate")
    assert done.returncode == 2 and "unknown command" in done.stderr


@pytest.mark.parametrize("command, missing", [
    (("generate_td", "/data", "digits", "1"), "noise_ratio"),
    (("denoise_small", "/data", "digits", "1", "0.2", "uniform"), "detector_file"),
    (("denoise_large", "/data"), "dataset"),
])
def test_missing_positional_is_named(command, missing):
    done = run_sh(*command)
    assert done.returncode == 2 and f"missing argument <{missing}>" in done.stderr


def test_testrun_prints_commands_and_writes_nothing(tmp_path):
    env = {"TESTRUN": "1", "RESULTS_DIR": str(tmp_path / "results")}
    done = run_sh("generate_td", "/data", "digits", "1", "0.2", "uniform", "resnet", "32", "--num_epochs", "3",
                  env=env, cwd=tmp_path)
    assert done.returncode == 0
    assert "runner.py generate_td --datadir /data --dataset digits --seed 1 --noise_ratio 0.2" in done.stdout
    assert "--num_epochs 3" in done.stdout
    demo = run_sh("demo", env=env, cwd=tmp_path)
    assert demo.returncode == 0 and "train_detector.py" in demo.stdout
    assert [line.split("runner.py ")[1].split(" ")[0] for line in demo.stdout.splitlines() if "runner.py " in line] == \
        ["generate_td", "generate_td", "denoise", "denoise", "oracle"]
    assert "--action \\<RECOMMENDED_ACTION\\>" in demo.stdout and "-m mislabel.commands.demo_table" in demo.stdout
    assert list(tmp_path.iterdir()) == []


BAD_INPUTS = [
    (["generate_td", "--dataset", "cifar10", "--datadir", "/nonexistent/data"], "does not exist"),
    (["generate_td", "--dataset", "no_such_set", "--datadir", str(ROOT / "tests")], "no_such_set"),
    (["generate_td", "--net_type", "transformer"], "net_type"),
    (["generate_td", "--net_type", "resnet", "--depth", "33"], "depth"),
    (["generate_td", "--noise_type", "gaussian"], "noise_type"),
    (["generate_td", "--noise_ratio", "1.5"], "outside [0, 1)"),
    (["generate_td", "--noise_ratio", "abc"], "not a number"),
    (["generate_td", "--num_valid", "99999"], "num_valid"),
    (["generate_td", "--seed", "x"], "seed"),
    (["denoise", "--detector_file", "missing.pth.tar", "--remove_ratio", "1.2"], "remove_ratio"),
    (["denoise", "--detector_file", "missing.pth.tar", "--remove_ratio", "0.2", "--td_dir", "/nonexistent"],
     "does not exist"),
    (["oracle", "--noise_ratio", "0.2", "--td_dir", "/nonexistent"], "does not exist"),
    (["oracle", "--noise_ratio", "0.2", "--seed", "9"], "does not exist"),   # no phase-1 run of these flags yet
]


@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        runner.main([*args, "--results_dir", str(tmp_path / "results"), "--device", "cpu"])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_bad_input_from_the_shell_has_no_traceback(tmp_path):
    done = run_python("runner.py", "generate_td", "--net_type", "transformer", "--results_dir", str(tmp_path / "r"))
    refused(done)


def test_unreadable_inputs_for_denoise_and_detector(tmp_path, uniform30_run):
    not_a_detector = tmp_path / "notes.pth.tar"
    not_a_detector.write_text("hello")
    done = run_python("runner.py", "denoise", "--dataset", "digits", "--seed", "1", "--noise_ratio", "0.3",
                      "--net_type", "resnet", "--depth", "20", "--td_dir", str(uniform30_run),
                      "--detector_file", str(not_a_detector), "--remove_ratio", "0.2",
                      "--results_dir", str(tmp_path / "r"), "--device", "cpu")
    refused(done, "not a detector")
    broken_run = tmp_path / "broken"
    broken_run.mkdir()
    (broken_run / "training_dynamics.npz").write_bytes(b"PK\x03\x04 truncated")
    done = run_python("train_detector.py", "--r", "0.2", "--dataset", "digits", "--files_path", str(broken_run),
                      "--out", str(tmp_path / "d.pth.tar"))
    assert done.returncode == 2 and "cannot read" in done.stderr and not (tmp_path / "d.pth.tar").exists()
    done = run_python("train_detector.py", "--r", "0.2", "--dataset", "digits", "--files_path", str(tmp_path / "nope"))
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_dynamics_from_other_labels_are_refused(tmp_path, uniform30_run, detector_file):
    done = run_python("runner.py", "denoise", "--dataset", "digits", "--seed", "9", "--noise_ratio", "0.3",
                      "--net_type", "resnet", "--depth", "20", "--td_dir", str(uniform30_run),
                      "--detector_file", str(detector_file), "--remove_ratio", "0.2",
                      "--results_dir", str(tmp_path / "r"), "--device", "cpu")
    assert done.returncode == 2 and "other labels" in done.stderr
    assert not (tmp_path / "r").exists()


def test_detector_features_must_fit(tmp_path, uniform30_run, detector_file):
    done = run_python("train_detector.py", "--r", "0.3", "--dataset", "digits", "--files_path", str(uniform30_run),
                      "--features", "prob,bogus", "--out", str(tmp_path / "x.pth.tar"))
    assert done.returncode == 2 and "bogus" in done.stderr
    done = run_python("train_detector.py", "--r", "0.3", "--dataset", "digits", "--files_path", str(uniform30_run),
                      "--out", str(detector_file))
    assert done.returncode == 2 and "already exists" in done.stderr
