"""--budget with a pretrained backbone: probe mode is priced as its feature extraction (the backbone's
forward FLOPs at its side, once per image, nothing when the cache is valid) plus the head's epochs,
finetune mode as the whole network's training every epoch; budget_plan.json says which recipe ran and why."""
from __future__ import annotations

from dataclasses import replace

import pytest

from mislabel.training import budget
from mislabel.training.plan import PlanOverrides, backbone_plan, candidate_plans, default_plan

PHOTOS = budget.Workload(num_train=60_000, num_valid=0, num_test=6_000, num_classes=10, in_channels=3, side=64,
                         file_side=28, scored=60_000)


def _probe(work: budget.Workload = PHOTOS, backbone: str = "efficientnet_lite0", **options) -> budget.Estimate:
    return budget.predict("linear", 1, 128, 30, True, work, "cpu", backbone=backbone, mode="probe", **options)


def test_the_backbone_flops_are_counted_at_the_side_it_sees():
    forward, feature_dim = budget.backbone_costs("efficientnet_lite0", 64)
    assert feature_dim == 1280 and 50e6 < forward < 80e6      # EfficientNet-Lite0: ~0.8 GFLOP at 224 px
    assert budget.backbone_costs("resnet18", 128)[0] == pytest.approx(4 * budget.backbone_costs("resnet18", 64)[0],
                                                                      rel=0.05)
    assert budget.backbone_costs("resnet50", 64)[0] > 2 * budget.backbone_costs("resnet18", 64)[0]


def test_a_probe_plan_grows_with_the_images_and_the_backbone():
    tenth = _probe(replace(PHOTOS, num_train=6_000, num_test=600, scored=6_000))
    whole = _probe()
    assert whole.features == pytest.approx(10 * tenth.features, rel=0.02) and whole.total > tenth.total
    assert _probe(backbone="resnet50").features > _probe(backbone="resnet18").features
    assert _probe(replace(PHOTOS, side=128)).features > 3 * whole.features
    # the head trains on 1,280 features in memory: an epoch of it costs a fraction of the backbone's pass
    assert whole.per_epoch < whole.features / 5 and whole.load == 0


def test_a_rerun_with_valid_cached_features_is_priced_without_extraction():
    fresh, cached = _probe(), _probe(features_cached=True)
    assert cached.features == 0 and fresh.features > 0
    assert cached.total == pytest.approx(fresh.total - fresh.features)
    assert "features cached" in cached.describe() and "features " in fresh.describe()


def test_a_finetune_trains_the_whole_network_every_epoch():
    tune = budget.predict("linear", 1, 128, 3, True, PHOTOS, "cpu", backbone="resnet18", mode="finetune")
    forward, _ = budget.backbone_costs("resnet18", 64)
    assert tune.features is None
    assert tune.per_epoch >= PHOTOS.num_train * budget.TRAINING_PER_FORWARD * forward * budget.CPU_COSTS.flop_rate(
        "resnet18") * budget.device_costs("cpu")[1]
    assert budget.predict("linear", 1, 128, 3, True, PHOTOS, "cpu", backbone="resnet50", mode="finetune"
                          ).per_epoch > tune.per_epoch
    assert tune.training > _probe(backbone="resnet18").features   # three epochs of training vs one pass


def test_budget_plan_says_which_recipe_ran_and_why():
    scan = budget.scan_seconds(66_000, 28, "cpu")
    probe = backbone_plan(60_000, 64, "efficientnet_lite0", "probe", PlanOverrides())
    choice = budget.plan_within_budget([probe], PHOTOS, "cpu", 20, scan)
    assert choice.record["recipe"]["kind"] == "probe" and "--backbone efficientnet_lite0" in choice.record[
        "recipe"]["why"]
    assert choice.record["estimate"]["features"] > 0 and "features" in choice.lines[-1]
    rerun = budget.plan_within_budget([probe], PHOTOS, "cpu", 20, scan, features_cached=True)
    assert rerun.record["estimate"]["features"] == 0 and rerun.estimate.total < choice.estimate.total
    scratch = budget.plan_within_budget(candidate_plans(default_plan(60_000, 28), 60_000, PlanOverrides()),
                                        replace(PHOTOS, side=32), "cpu", 20, scan)
    assert scratch.record["recipe"]["kind"] == "from scratch" and "never picks" in scratch.record["recipe"]["why"]


def test_generate_td_budget_cuts_the_head_epochs_after_the_features(tmp_path):
    epochs, note = budget.epochs_within_budget("linear", 1, 128, 100, PHOTOS, "cpu", 4, tmp_path,
                                               backbone="efficientnet_lite0", mode="probe")
    assert "head on efficientnet_lite0 features" in note and (tmp_path / budget.EPOCHS_FILE).is_file()
    cached, note = budget.epochs_within_budget("linear", 1, 128, 100, PHOTOS, "cpu", 4, tmp_path,
                                               backbone="efficientnet_lite0", mode="probe", features_cached=True)
    assert epochs < cached < 100 and "features cached" in note   # the extraction's time is left to the head
