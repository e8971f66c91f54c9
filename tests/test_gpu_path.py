"""The GPU path of the training loop (issue 10), checked on the CPU: flags, defaults, bf16 autocast,
channels_last, the recorder's bf16 input, and that the CPU defaults change nothing."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import run_python
from mislabel.training import accel as accel_module
from mislabel.training.accel import Acceleration
from mislabel.commands.cli import parse_args
from mislabel.data.datasets import TensorBatches, to_device
from mislabel.training.recorder import Recorder
from mislabel.training.loop import Recipe, fit
from mislabel.models import NETWORKS, build_model
from runner import RunConfig, Runner
from mislabel.core.dynamics import TD_FILE
from mislabel.training.loop import AverageMeter
from mislabel.core.user_input import UserError

LENET = ["--dataset", "digits", "--seed", "7", "--noise_ratio", "0.2", "--net_type", "lenet", "--depth", "5",
         "--num_epochs", "2", "--num_valid", "50", "--device", "cpu"]
RUN = "digits_lenet5_percmislabeled0.2_uniform/computation4td_seed7"
# One small depth per family, at the input size the CPU tests use everywhere else.
FAMILIES = {"conv4": 4, "densenet": min(NETWORKS["densenet"]), "lenet": 5, "preresnet": min(NETWORKS["preresnet"]),
            "resnet": 20, "vgg": min(NETWORKS["vgg"]), "wide_resnet": min(NETWORKS["wide_resnet"])}


def _config(*flags: str) -> RunConfig:
    return parse_args(["generate_td", *flags])[1]


# --- flags and defaults ------------------------------------------------------------------------

def test_flags_parse_and_default_to_auto():
    assert _config().amp is None and _config().compile is False
    assert _config("--amp").amp is True and _config("--no-amp").amp is False
    assert _config("--compile").compile is True
    with pytest.raises(UserError, match="unrecognized arguments: on"):
        _config("--amp", "on")


def test_cpu_defaults_are_all_off():
    cpu = Acceleration.resolve(torch.device("cpu"))
    assert cpu == Acceleration(device_type="cpu", amp=False, channels_last=False, compile=False)
    assert Acceleration.resolve(torch.device("cpu"), amp=True).amp  # bf16 autocast works on CPU: allowed
    runner = Runner(RunConfig(device="cpu", net_type="lenet", depth=5))
    assert runner.accel == cpu and runner.accel.describe() == {"amp": "off", "channels_last": False, "compile": False}


def test_cuda_defaults_and_refusals(monkeypatch):
    """Resolution for a GPU, without one: bf16 support is what the resolver asks the device."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(accel_module, "_bf16_on", lambda device: True)
    assert Acceleration.resolve(cuda) == Acceleration(device_type="cuda", amp=True, channels_last=True)
    assert not Acceleration.resolve(cuda, amp=False).amp
    monkeypatch.setattr(accel_module, "_bf16_on", lambda device: device.type == "cpu")
    assert not Acceleration.resolve(cuda).amp  # a GPU without native bf16 runs float32 by default
    with pytest.raises(UserError, match="drop --amp") as err:
        Acceleration.resolve(cuda, amp=True)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(accel_module.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="C\\+\\+ compiler"):
        Acceleration.resolve(torch.device("cpu"), compile=True)


def test_cpu_default_fit_leaves_the_model_in_its_layout():
    torch.manual_seed(0)
    model = build_model("lenet", 5, 10, in_channels=1, image_size=8)
    images, labels = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 10, (40,))
    batches = TensorBatches(images, labels, (0.5,), (0.5,), 16, torch.device("cpu"), shuffle=True)
    fit(model, batches, None, Recipe(epochs=1, batch_size=16))
    weights = [p for p in model.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous() for p in weights)
    rows = torch.arange(5)
    assert to_device(rows, torch.device("cpu")) is rows  # no copy on the CPU path


def test_average_meter_sums_tensors_exactly_as_floats():
    values = torch.rand(50, dtype=torch.float32)
    floats, tensors = AverageMeter(), AverageMeter()
    for value, count in zip(values, range(1, 51)):
        floats.update(float(value), count)
        tensors.update(value, count)
    assert isinstance(tensors.total, torch.Tensor) and tensors.avg == floats.avg


# --- bf16 autocast and channels_last, forced on the CPU --------------------------------------

def test_recorder_upcasts_bf16_logits():
    torch.manual_seed(1)
    logits = (torch.randn(12, 6) * 4).bfloat16()
    targets, rows = torch.randint(0, 6, (12,)), torch.randperm(12)
    half, full = Recorder(12, 6, 1), Recorder(12, 6, 1)
    half.update(logits, targets, rows)
    full.update(logits.float(), targets, rows)
    for recorder in (half, full):
        recorder.next_epoch()
    left, right = half.dynamics(), full.dynamics()
    for name in ("td", "labels", "margin", "pred", "indices"):
        assert np.array_equal(getattr(left, name), getattr(right, name)), name
    assert left.td.dtype == np.float16 and left.margin.dtype == np.float16


@pytest.mark.parametrize("net_type", sorted(FAMILIES))
def test_channels_last_gives_the_same_outputs(net_type):
    """Every conv family runs in channels_last: same outputs (to float32 rounding) and a state
    that ``plain_state`` returns in the default layout."""
    size = 32 if net_type in ("vgg", "densenet") else 8
    torch.manual_seed(0)
    model = build_model(net_type, FAMILIES[net_type], 10, in_channels=3, image_size=size).eval()
    images = torch.randn(4, 3, size, size)
    with torch.no_grad():
        expected = model(images)
        last = Acceleration(channels_last=True)
        actual = last.prepare_model(model)(last.prepare_batch(images))
    assert any(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in model.parameters() if p.dim() == 4)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)
    state = last.plain_state(dict(model.state_dict()))
    assert all(value.is_contiguous() for value in state.values())


@pytest.mark.slow   # a whole generate_td under autocast
def test_generate_td_with_amp_on_cpu_writes_the_same_formats(tmp_path):
    """``--amp`` forced on the CPU: the same files, keys, dtypes and shapes as a float32 run."""
    for name, extra in (("fp32", []), ("amp", ["--amp"])):
        done = run_python("runner.py", "generate_td", *LENET, "--results_dir", str(tmp_path / name), *extra)
        assert done.returncode == 0, done.stderr
    fp32, amp = tmp_path / "fp32" / RUN, tmp_path / "amp" / RUN
    assert {p.name for p in fp32.iterdir()} == {p.name for p in amp.iterdir()}
    with np.load(fp32 / TD_FILE) as left, np.load(amp / TD_FILE) as right:
        assert left.files == right.files
        for key in left.files:
            assert (left[key].dtype, left[key].shape) == (right[key].dtype, right[key].shape), key
        assert np.allclose(right["td"].astype(np.float32).sum(axis=2), 1.0, atol=2e-2)
        assert np.array_equal(left["indices"], right["indices"])
    for name in ("model.pth", "model.pth.last"):
        left, right = (torch.load(folder / name, weights_only=True) for folder in (fp32, amp))
        assert left.keys() == right.keys()
        assert all(right[k].dtype == left[k].dtype and right[k].is_contiguous() for k in left), name
    summary = json.loads((amp / "summary.json").read_text())
    assert summary["acceleration"] == {"amp": "bf16", "channels_last": False, "compile": False}


@pytest.mark.skipif(not os.environ.get("TEST_COMPILE"), reason="torch.compile on CPU takes 30-60 s cold; "
                    "set TEST_COMPILE=1 to run it")
@pytest.mark.slow   # torch.compile on CPU
def test_compile_on_cpu_trains_and_records(tmp_path):
    done = run_python("runner.py", "generate_td", *LENET, "--results_dir", str(tmp_path), "--compile")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / RUN / "summary.json").read_text())["acceleration"]["compile"] is True
    state = torch.load(tmp_path / RUN / "model.pth", weights_only=True)
    assert not any(key.startswith("_orig_mod.") for key in state)
