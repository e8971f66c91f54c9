"""The model zoo: ``build_model`` turns command-line choices into a network; ``NETWORKS`` lists them.

Every network takes any number of input channels and any image side from 8 to 224 pixels and
ends in adaptive average pooling, so one ``--net_type`` runs on MNIST, CIFAR or ImageNet-sized
data. Pools that would shrink a 1x1 map are left out when the model is built, which is why the
image side is asked for: it is the side of the smallest image the model will be given. Bad
choices raise ``UserError`` with one line that names the fix. Weights are never downloaded; a
``pretrained_path`` must be a local file.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mislabel.core.user_input import UserError

from mislabel.core.files import torch_load

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["NETWORKS", "DEFAULT_WIDEN_FACTOR", "BACKBONES", "BACKBONE_MODES", "build_model", "check_network",
           "check_backbone", "load_weights_file"]

# The valid depths of each family, written out so that importing this package (and checking
# --net_type/--depth) loads no torch; each family's module configures these depths
# (tests/test_models.py builds every one, tests/test_startup.py checks the lists agree).
_CIFAR_RESNET_DEPTHS = (20, 32, 44, 56, 110)
_IMAGENET_RESNET_DEPTHS = (18, 34, 50)
NETWORKS: dict[str, tuple[int, ...]] = {
    "conv4": (4,),
    "densenet": (40, 100),
    "lenet": (5,),
    "linear": (1,),
    "lenet_mnist": (5,),
    "mlp": (2,),
    "preresnet": (18, 34),
    "resnet": _CIFAR_RESNET_DEPTHS + _IMAGENET_RESNET_DEPTHS,
    "vgg": (11, 13, 16, 19),
    "wide_resnet": (16, 28, 40),
}
DEFAULT_WIDEN_FACTOR = 10  # WRN-28-10 is the network most CIFAR papers report
MAX_WIDEN_FACTOR = 32      # the widest WRN papers train; wider outgrows memory before it helps
# Pretrained backbones (``mislabel.models.backbones``): torchvision's seven and EfficientNet-Lite0
# from its wheel; written out here so checking --backbone loads no torch.
BACKBONES = ("resnet18", "resnet34", "resnet50", "efficientnet_b0", "mobilenet_v3_large", "convnext_tiny", "vit_b_16",
             "efficientnet_lite0")
# probe: a head on the frozen backbone's features, extracted once; finetune: the whole network trained
BACKBONE_MODES = ("probe", "finetune")


def _join(numbers: tuple[int, ...]) -> str:
    return ", ".join(str(n) for n in numbers)


def _valid_depths(net_type: str) -> str:
    """The depth list for an error message; resnet's two families are named, since they differ a lot."""
    if net_type == "resnet":
        return (f"{_join(_CIFAR_RESNET_DEPTHS)} (CIFAR-style) or {_join(_IMAGENET_RESNET_DEPTHS)} "
                "(ImageNet-style torchvision)")
    return _join(NETWORKS[net_type])


def _is_int(value: object) -> bool:
    """True for real integers only: bools and floats such as 20.0 would slip past ``in`` and ``>=``."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_int(value: object) -> bool:
    return _is_int(value) and value >= 1


def check_network(net_type: str, depth: int, widen_factor: int | None = None) -> str:
    """Refuse an unknown network, a depth it does not have or a widen factor it does not take,
    without torch; returns the network's canonical (lower-case) name."""
    name = net_type.strip().lower()
    if name not in NETWORKS:
        raise UserError(f"unknown --net_type {net_type!r}; choose one of: {', '.join(sorted(NETWORKS))}")
    if not _is_int(depth) or depth not in NETWORKS[name]:
        raise UserError(f"--depth {depth} is not valid for {name}; valid depths: {_valid_depths(name)}")
    if widen_factor is not None and name != "wide_resnet":
        raise UserError(f"--widen_factor applies only to wide_resnet; drop it for --net_type {name}")
    if widen_factor is not None and not (_is_positive_int(widen_factor) and widen_factor <= MAX_WIDEN_FACTOR):
        raise UserError(f"--widen_factor must be an integer in 1..{MAX_WIDEN_FACTOR} (default {DEFAULT_WIDEN_FACTOR}), "
                        f"got {widen_factor!r}")
    return name


def check_backbone(name: str) -> str:
    """Refuse an unknown backbone name without torch; returns it in lower case."""
    canonical = name.strip().lower()
    if canonical not in BACKBONES:
        raise UserError(f"unknown --backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return canonical


def build_model(
    net_type: str,
    depth: int,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    widen_factor: int | None = None,
    pretrained_path: str | None = None,
) -> nn.Module:
    """Build a network on the CPU, in training mode, initialised from torch's global RNG.

    :param net_type: a key of ``NETWORKS``, in any letter case (``PreResNet`` works).
    :param depth: one of ``NETWORKS[net_type]``; it always changes the architecture.
    :param num_classes: width of the logits the model returns, shape [batch, num_classes].
    :param in_channels: channels of the input images (1 for MNIST, 3 for RGB, anything else).
    :param image_size: side of the smallest square image the model will see; pools that would
        shrink a 1x1 map at this size are left out. Larger inputs are always accepted.
    :param widen_factor: wide_resnet's k; ``None`` means ``DEFAULT_WIDEN_FACTOR``. Other
        networks have no width knob, so setting it for them is an error rather than ignored.
    :param pretrained_path: a local state_dict (or a dict holding one under "state_dict" or
        "model") to start from; a final linear layer of another shape is left freshly initialised
        so a model can be fine-tuned on a different number of classes.
    :raises UserError: for an unknown network, an invalid depth or size, or an unusable file.
    """
    name = check_network(net_type, depth, widen_factor)
    sizes = {"--num_classes": num_classes, "--in_channels": in_channels, "--image_size": image_size}
    for flag, value in sizes.items():
        if not _is_positive_int(value):
            raise UserError(f"{flag} must be a positive integer, got {value!r}")

    widen = DEFAULT_WIDEN_FACTOR if widen_factor is None else widen_factor
    model = _construct(name, depth, num_classes, in_channels, image_size, widen)
    if pretrained_path is not None:
        load_weights_file(model, pretrained_path, f"{name}-{depth}")
    return model


def _construct(
    name: str, depth: int, num_classes: int, in_channels: int, image_size: int, widen: int
) -> nn.Module:
    """Call the one constructor that ``name`` selects, with the arguments that family uses."""
    from mislabel.models.conv4 import Conv4
    from mislabel.models.densenet import DenseNet
    from mislabel.models.heads import FeatureHead
    from mislabel.models.lenet import LeNet
    from mislabel.models.PreResNet import PreActResNet
    from mislabel.models.resnet import build_resnet
    from mislabel.models.wide_resnet import WideResNet
    from mislabel.models.vgg import VGG

    match name:
        case "resnet":
            return build_resnet(depth, num_classes, in_channels)
        case "wide_resnet":
            return WideResNet(depth, widen, num_classes, in_channels)
        case "preresnet":
            return PreActResNet(depth, num_classes, in_channels)
        case "densenet":
            return DenseNet(depth, num_classes, in_channels, image_size)
        case "vgg":
            return VGG(depth, num_classes, in_channels, image_size)
        case "conv4":
            return Conv4(num_classes, in_channels, image_size)
        case "linear" | "mlp":
            return FeatureHead(depth, num_classes, in_channels, image_size)
        case "lenet" | "lenet_mnist":
            return LeNet(num_classes, in_channels, image_size, pad_first=name == "lenet_mnist")
    raise AssertionError(f"NETWORKS lists {name!r} but _construct does not build it")


# ----------------------------------------------------------------------------- pretrained weights

# Wrappers that prefix every key: nn.DataParallel / DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def load_weights_file(model: nn.Module, path: str, label: str, flag: str = "--pretrained_path",
                      fix: str = "use weights saved from the same --net_type, --depth and --in_channels") -> None:
    """Copy a local state_dict into ``model``, tolerating only a classifier sized for other classes.

    Anything else that does not fit (missing, extra or reshaped keys) means the file came from
    another architecture, and silently loading part of it would make results untraceable.
    ``flag`` names the option the file came from and ``fix`` what to pass instead, in the errors
    (``--backbone_weights`` loads through here too).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"{flag} {path} does not exist; give a local state_dict file (weights are never downloaded)")
    try:
        loaded = torch_load(file)
    except Exception as err:  # a bad file surfaces as pickle, zip or runtime errors alike
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot read {flag} {path} ({reason}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from err
    state = _unwrap(loaded, path, flag)
    expected = model.state_dict()

    head = _classifier_name(model)
    head_keys = [f"{head}.weight", f"{head}.bias"]
    if any(k in state and k in expected and state[k].shape != expected[k].shape for k in head_keys):
        state = {k: v for k, v in state.items() if k not in head_keys}
        allowed_missing = set(head_keys)
    else:
        allowed_missing = set()

    # Checkpoints from before torch 0.4.1 lack BN's step counter; its default is harmless.
    missing = [
        k for k in expected
        if k not in state and k not in allowed_missing and not k.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or reshaped:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing key(s) such as {missing[0]}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s) such as {unexpected[0]}")
        if reshaped:
            key = reshaped[0]
            problems.append(
                f"{len(reshaped)} key(s) of another shape such as {key} "
                f"({tuple(state[key].shape)} in the file, {tuple(expected[key].shape)} in the model)"
            )
        raise UserError(
            f"{flag} {path} does not fit {label}: {'; '.join(problems)}; {fix}"
        )
    model.load_state_dict(state, strict=False)


def _unwrap(loaded: object, path: str, flag: str) -> dict[str, torch.Tensor]:
    """Find the state_dict inside what ``torch.load`` returned; strip wrapper prefixes from its keys."""
    import torch

    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    holds_tensors = isinstance(loaded, Mapping) and all(isinstance(v, torch.Tensor) for v in loaded.values())
    if not holds_tensors or not loaded:
        raise UserError(
            f"{flag} {path} holds no state_dict; expected a dict of tensors, "
            "possibly under the key 'state_dict' or 'model'"
        )
    state = {str(k): v for k, v in loaded.items()}
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    return state


def _classifier_name(model: nn.Module) -> str:
    """The last linear layer: in every network here it is the one that maps features to logits."""
    from torch import nn

    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return names[-1]
