"""find_issues and generate_td with a pretrained backbone: probe mode trains a head on cached
features, finetune mode the whole network, each leaving a normal phase-1 run folder; missing
weights are refused before anything is written."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import ROOT, refused, run_sh, write_class_folders

from mislabel import find_issues
from mislabel.core.dynamics import load_dynamics
from mislabel.run_config import RunConfig


def test_probe_find_issues_end_to_end_on_a_class_folder(tmp_path):
    written = write_class_folders(tmp_path, "photos")
    out = tmp_path / "audit"
    table = find_issues(written.root, out=str(out), backbone="efficientnet_lite0", budget=0, num_epochs=4,
                        image_size=32, device="cpu")
    assert len(table) == len(written.train_labels) and set(table["given_label"]) == set(written.class_names)
    run = out / "phase1" / "efficientnet_lite0_probe_linear1_seed0"
    dyn = load_dynamics(run)
    assert dyn.num_samples == len(written.train_labels) and dyn.num_epochs == 4
    assert (out / "phase1" / "features_efficientnet_lite0_32px.npz").is_file()
    assert "efficientnet_lite0 features at 32px" in (out / "find_issues.json").read_text()
    model = torch.load(run / "model.pth", weights_only=True)
    assert model["2.weight"].shape == (3, 1280)  # the linear head on the 1,280 features
    plan = json.loads((out / "budget_plan.json").read_text())
    assert plan["recipe"]["kind"] == "probe" and "--backbone efficientnet_lite0" in plan["recipe"]["why"]
    assert plan["estimate"]["features"] > 0 and "recipe chosen" in (out / "find_issues.json").read_text()
    # a rerun finds the features cached beside the run: priced without their extraction
    find_issues(written.root, out=str(out), backbone="efficientnet_lite0", budget=0, num_epochs=4, image_size=32,
                device="cpu", overwrite=True)
    assert json.loads((out / "budget_plan.json").read_text())["estimate"]["features"] == 0


@pytest.mark.slow
def test_finetune_find_issues_trains_the_whole_network(tmp_path):
    written = write_class_folders(tmp_path, "photos")
    out = tmp_path / "audit"
    find_issues(written.root, out=str(out), backbone="efficientnet_lite0", mode="finetune", budget=0, num_epochs=2,
                image_size=32, device="cpu")
    run = out / "phase1" / "efficientnet_lite0_finetune_seed0"
    assert load_dynamics(run).num_epochs == 2
    model = torch.load(run / "model.pth", weights_only=True)
    assert model["2.weight"].shape == (3, 1280) and "1._conv_stem.weight" in model


def test_missing_weights_are_refused_in_one_line_and_nothing_is_written(tmp_path):
    written = write_class_folders(tmp_path, "photos")
    out = tmp_path / "audit"
    done = run_sh("find_issues", str(written.root), "--out", str(out), "--backbone", "resnet18", "--device", "cpu",
                  env={"TORCH_HOME": str(tmp_path / "torch_home")})
    refused(done, "resnet18-f37072fd.pth", "hub cache", "--backbone_weights", unchanged=[out])
    mismatched = tmp_path / "lite.pth"
    mismatched.write_bytes(b"not a state_dict")
    refused(run_sh("find_issues", str(written.root), "--out", str(out), "--backbone", "efficientnet_lite0",
                   "--backbone_weights", str(mismatched), "--device", "cpu"),
            "cannot read --backbone_weights", unchanged=[out])


def test_backbone_options_are_checked_once_in_the_run_config():
    config = RunConfig(dataset="digits", net_type="linear", depth=1, backbone="EfficientNet_Lite0")
    assert config.backbone == "efficientnet_lite0" and config.mode == "probe"
    assert config.td_dir.parent.name == "digits_efficientnet_lite0_probe_linear1_percmislabeled0.2_uniform"
    finetune = RunConfig(dataset="digits", net_type="linear", depth=1, backbone="resnet18", mode="finetune")
    assert finetune.recipe.schedule == "onecycle" and finetune.network_name == "resnet18_finetune"
    refused(lambda: RunConfig(net_type="resnet", depth=32, backbone="resnet18"), "--net_type linear")
    refused(lambda: RunConfig(mode="finetune"), "--mode applies only with --backbone")
    refused(lambda: RunConfig(net_type="linear", depth=1, backbone="alexnet"), "unknown --backbone 'alexnet'")
    refused(lambda: RunConfig(net_type="linear", depth=1, backbone="resnet18", backbone_weights=str(ROOT / "nope")),
            "--backbone_weights")


def test_generate_td_probe_writes_a_normal_phase1_run(tmp_path):
    from mislabel.commands.cli import main

    command = ["generate_td", "--dataset", "digits", "--seed", "1", "--noise_ratio", "0.3", "--net_type", "linear",
               "--depth", "1", "--backbone", "efficientnet_lite0", "--image_size", "32", "--num_epochs", "3",
               "--device", "cpu", "--results_dir", str(tmp_path), "--budget", "10"]
    main(command)
    folder = tmp_path / "digits_efficientnet_lite0_probe_linear1_percmislabeled0.3_uniform"
    dyn = load_dynamics(folder / "computation4td_seed1")
    assert dyn.num_epochs == 3 and dyn.td.shape[-1] == 10 and dyn.flipped.any()
    assert (folder / "features_efficientnet_lite0_32px.npz").is_file()
    # --budget priced the features and the head, then a rerun's cached features at nothing
    first = json.loads((folder / "computation4td_seed1" / "budget.json").read_text())
    assert first["inputs"]["backbone"] == "efficientnet_lite0" and first["estimate"]["features"] > 0
    main([*command, "--overwrite"])
    again = json.loads((folder / "computation4td_seed1" / "budget.json").read_text())
    assert again["inputs"]["features_cached"] and again["estimate"]["features"] == 0
