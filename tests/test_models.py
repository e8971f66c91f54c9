"""The model zoo keeps its promises: every listed network trains a step at every input shape it
claims, the knobs (depth, widen factor) reach the architecture, bad choices fail with UserError,
and local weights load, including into a head sized for other classes.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mislabel.models import DEFAULT_WIDEN_FACTOR, NETWORKS, build_model
from mislabel.core.user_input import UserError

CASES = [(net, depth) for net, depths in sorted(NETWORKS.items()) for depth in depths]
SHAPES = [(1, 8), (1, 28), (3, 32), (3, 64)]  # (in_channels, image side)
NUM_CLASSES = 7


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Run this file on one intra-op thread, then restore the setting.

    Batches of two gain nothing from threading, while on a shared 2-core machine each thread
    barrier can stall whenever the other core is busy: the file took 50 s with two threads
    against 13 s with one while another training job was running.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _build(net_type: str, depth: int, **kwargs) -> nn.Module:
    """build_model with widen factor 1 for wide_resnet, which keeps the shape tests fast."""
    if net_type == "wide_resnet":
        kwargs.setdefault("widen_factor", 1)
    return build_model(net_type, depth, **kwargs)


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _train_step(model: nn.Module, in_channels: int, side: int) -> None:
    """One forward and backward pass on a batch of 2; checks logit shape and finite gradients."""
    x = torch.randn(2, in_channels, side, side)
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES)
    F.cross_entropy(logits, torch.tensor([0, NUM_CLASSES - 1])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"


@pytest.mark.parametrize("in_channels,side", SHAPES, ids=[f"{c}ch-{s}px" for c, s in SHAPES])
@pytest.mark.parametrize("net_type,depth", CASES, ids=[f"{n}-{d}" for n, d in CASES])
def test_every_network_trains_at_every_shape(net_type: str, depth: int, in_channels: int, side: int) -> None:
    torch.manual_seed(0)
    model = _build(net_type, depth, num_classes=NUM_CLASSES, in_channels=in_channels, image_size=side)
    _train_step(model, in_channels, side)


def test_torchvision_resnet18_at_imagenet_size() -> None:
    torch.manual_seed(0)
    model = build_model("resnet", 18, num_classes=NUM_CLASSES, in_channels=3, image_size=224)
    _train_step(model, 3, 224)


def test_larger_input_than_built_for_is_accepted() -> None:
    model = build_model("vgg", 11, num_classes=NUM_CLASSES, image_size=8)
    _train_step(model, 3, 32)


def test_resnet_depth_changes_the_number_of_blocks() -> None:
    shallow, deep = build_model("resnet", 20, 10), build_model("resnet", 56, 10)
    assert [len(stage) for stage in shallow.stages] == [3, 3, 3]  # n = (20 - 2) / 6
    assert [len(stage) for stage in deep.stages] == [9, 9, 9]
    assert _param_count(shallow) < _param_count(deep)
    assert _param_count(shallow) == pytest.approx(0.27e6, rel=0.02)  # He et al. 2016, table 6


def test_widen_factor_reaches_wide_resnet() -> None:
    narrow = build_model("wide_resnet", 16, 10, widen_factor=1)
    wide = build_model("wide_resnet", 16, 10, widen_factor=2)
    assert _param_count(narrow) < _param_count(wide)
    default = build_model("wide_resnet", 16, 10)
    assert default.fc.in_features == 64 * DEFAULT_WIDEN_FACTOR == 640


def test_cifar_resnet_block_in_place_matches_the_plain_formula() -> None:
    """The block writes its ReLUs and residual sum into batch norm's outputs; outputs and gradients
    must be bit-identical to relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)) computed out of place."""
    from mislabel.models.resnet import _BasicBlock

    torch.manual_seed(0)
    block = _BasicBlock(4, 8, stride=2)
    x = torch.randn(6, 4, 9, 9, requires_grad=True)
    out = block(x)
    out.sum().backward()
    grads = [x.grad.clone()] + [p.grad.clone() for p in block.parameters()]
    x.grad = None
    block.zero_grad()
    torch.manual_seed(0)
    plain = F.relu(block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x))))) + block.shortcut(x))
    plain.sum().backward()
    assert torch.equal(out, plain)
    assert all(torch.equal(a, b) for a, b in zip(grads, [x.grad] + [p.grad for p in block.parameters()]))


def test_same_seed_same_weights() -> None:
    torch.manual_seed(3)
    first = build_model("densenet", 40, 10).state_dict()
    torch.manual_seed(3)
    second = build_model("densenet", 40, 10).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_net_type_is_case_insensitive() -> None:
    assert _param_count(build_model("PreResNet", 18, 10)) == _param_count(build_model("preresnet", 18, 10))


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"net_type": "foo", "depth": 4}, "unknown --net_type 'foo'; choose one of: conv4, densenet"),
        ({"net_type": "resnet", "depth": 33}, "20, 32, 44, 56, 110 (CIFAR-style) or 18, 34, 50 (ImageNet"),
        ({"net_type": "vgg", "depth": 12}, "--depth 12 is not valid for vgg; valid depths: 11, 13, 16, 19"),
        ({"net_type": "resnet", "depth": 20.0}, "--depth 20.0 is not valid"),
        ({"net_type": "vgg", "depth": 11, "widen_factor": 2}, "--widen_factor applies only to wide_resnet"),
        ({"net_type": "wide_resnet", "depth": 16, "widen_factor": 0}, "--widen_factor must be an integer in 1..32"),
        ({"net_type": "conv4", "depth": 4, "num_classes": 0}, "--num_classes must be a positive"),
        ({"net_type": "conv4", "depth": 4, "in_channels": 0}, "--in_channels must be a positive"),
        ({"net_type": "conv4", "depth": 4, "image_size": 0}, "--image_size must be a positive"),
    ],
)
def test_bad_choices_raise_one_line_user_error(kwargs: dict, fragment: str) -> None:
    with pytest.raises(UserError) as caught:
        build_model(**{"num_classes": 10, **kwargs})
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("net_type", sorted(NETWORKS))
def test_pretrained_loads_and_swaps_a_head_of_another_size(net_type: str, tmp_path: Path) -> None:
    depth = NETWORKS[net_type][0]
    small = {"in_channels": 1, "image_size": 8}
    source = _build(net_type, depth, num_classes=10, **small)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)

    same = _build(net_type, depth, num_classes=10, pretrained_path=str(path), **small)
    expected = source.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in same.state_dict().items())

    fine_tune = _build(net_type, depth, num_classes=NUM_CLASSES, pretrained_path=str(path), **small)
    shared = [k for k, v in fine_tune.state_dict().items() if v.shape == expected[k].shape]
    assert len(shared) >= len(expected) - 2  # all but the classifier's weight and bias
    assert all(torch.equal(fine_tune.state_dict()[k], expected[k]) for k in shared)
    _train_step(fine_tune, 1, 8)


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module."])
def test_pretrained_accepts_wrapped_checkpoints(wrap: str, tmp_path: Path) -> None:
    source = build_model("resnet", 20, 10)
    state = source.state_dict()
    saved = {f"module.{k}": v for k, v in state.items()} if wrap == "module." else {wrap: state, "epoch": 3}
    path = tmp_path / "checkpoint.pt"
    torch.save(saved, path)
    loaded = build_model("resnet", 20, 10, pretrained_path=str(path)).state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_pretrained_from_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet20.pt"
    torch.save(build_model("resnet", 20, 10).state_dict(), path)
    with pytest.raises(UserError, match="does not fit resnet-32: .*missing key"):
        build_model("resnet", 32, 10, pretrained_path=str(path))
    with pytest.raises(UserError, match="another shape such as stem.0.weight"):
        build_model("resnet", 20, 10, in_channels=1, pretrained_path=str(path))


def test_pretrained_missing_or_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(UserError, match="nope.pt does not exist.*never downloaded"):
        build_model("conv4", 4, 10, pretrained_path=str(missing))
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read --pretrained_path"):
        build_model("conv4", 4, 10, pretrained_path=str(garbage))
    not_weights = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_weights)
    with pytest.raises(UserError, match="holds no state_dict"):
        build_model("conv4", 4, 10, pretrained_path=str(not_weights))
