"""GPU habits for the training loop that leave the recipe's maths alone: bf16 autocast,
channels_last memory layout for conv nets, and optional ``torch.compile``.

Same model, optimiser, schedule and epochs; only where and in which precision the arithmetic
runs changes. On CUDA, bf16 autocast and channels_last are on by default (tensor cores want both:
convolutions in bf16 with the channel dimension innermost); on CPU everything is off by default,
so a CPU run executes exactly the operations it did before this module existed and stays
bit-for-bit repeatable. ``torch.compile`` is opt-in everywhere: the first steps pay seconds to
minutes of compilation, which only long GPU runs earn back.

bf16 keeps float32's exponent range, so unlike float16 it needs no gradient scaler: the loss and
the optimiser step are untouched. The loss itself runs in float32 (autocast's float32 list holds
cross_entropy and log_softmax), and the dynamics recorder upcasts bf16 logits to float32.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from dataclasses import dataclass

import torch

from mislabel.core.user_input import UserError

__all__ = ["Acceleration", "AMP_DTYPE"]

AMP_DTYPE = torch.bfloat16


def _bf16_on(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively; emulated bf16 on older GPUs is slower than float32."""
    if device.type != "cuda":
        return device.type == "cpu"
    return torch.cuda.is_bf16_supported(including_emulation=False)


def _check_compile(device: torch.device) -> None:
    """Refuse ``--compile`` up front where it cannot work, instead of a traceback at the first step."""
    if not torch._dynamo.is_dynamo_supported():
        raise UserError(f"--compile: torch.compile does not support Python {sys.version.split()[0]} "
                        f"with torch {torch.__version__}; drop --compile")
    compilers = [name for name in (os.environ.get("CXX"), "g++", "c++", "clang++") if name]
    if device.type == "cpu" and not any(shutil.which(name) for name in compilers):
        raise UserError("--compile on CPU needs a C++ compiler (g++) on PATH; install one or drop --compile")


@dataclass(frozen=True)
class Acceleration:
    """How ``fit`` runs the model on ``device_type``; all off reproduces the plain float32 loop.

    :param amp: forward passes (and the loss) under bf16 autocast.
    :param channels_last: conv nets' weights and input batches in NHWC layout.
    :param compile: train and evaluate through ``torch.compile(model)``.
    """

    device_type: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def resolve(cls, device: torch.device, amp: bool | None = None, compile: bool = False) -> Acceleration:
        """The settings for ``device``: ``amp=None`` means on for CUDA GPUs with native bf16, off on CPU.

        Explicit ``amp=True`` is honoured on CPU (bf16 autocast works there, mostly for tests) and
        refused on a GPU without native bf16, where it would be slower than float32.
        """
        device = torch.device(device)
        if amp and not _bf16_on(device):
            raise UserError(f"--amp needs bf16 support, which {device} lacks; drop --amp (it runs float32)")
        if compile:
            _check_compile(device)
        gpu = device.type == "cuda"
        return cls(device_type=device.type, amp=(gpu and _bf16_on(device)) if amp is None else amp,
                   channels_last=gpu, compile=compile)

    def describe(self) -> dict:
        """What summary.json records about how the run was computed."""
        return {"amp": "bf16" if self.amp else "off", "channels_last": self.channels_last, "compile": self.compile}

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on this device, or nothing at all when amp is off."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=AMP_DTYPE)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Put a conv net's 4-d weights in channels_last, in place (the Parameters stay the same
        objects, so an optimiser made before or after sees them); other models are left as they are."""
        if self.channels_last and _has_conv(model):
            model.to(memory_format=torch.channels_last)
        return model

    def runnable(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to call for forward passes: ``model`` or its compiled wrapper. Parameters and
        state_dict keys stay those of ``model``, so checkpoints and saved models do not change.

        ``dynamic=False``: a run sees a handful of batch shapes (the full batch, each pass's last
        batch), and static graphs compile faster and run faster than one shape-generic graph.
        """
        if not self.compile:
            return model
        return torch.compile(model, dynamic=False)

    def prepare_batch(self, images: torch.Tensor) -> torch.Tensor:
        """An input batch in the model's layout (a no-op unless channels_last applies)."""
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def plain_state(self, state: dict) -> dict:
        """``state`` (a state_dict copy) with every tensor back in the default contiguous layout, so
        saved models and checkpoints hold the same tensors with or without channels_last."""
        if self.channels_last:
            for key, value in state.items():
                state[key] = value.contiguous()
        return state


def _has_conv(model: torch.nn.Module) -> bool:
    return any(parameter.dim() == 4 for parameter in model.parameters())
