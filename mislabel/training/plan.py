"""find_issues' phase-1 recipe: the full one sized to the data, and the cheaper rungs a time budget
may pick instead. Pure Python (no torch), so a command line can be checked before torch loads.

The ladder, cheapest first; each rung keeps the full recipe's batch and learning rate and trains at
the data's own side, capped at the rung's ``max_side``:

    rung  network     epochs  max side   typical cost (60,000 28 px images, 2-core CPU)
    1     LeNet-5          8     32 px   ~12 s an epoch
    2     LeNet-5         12     32 px
    3     LeNet-5         20     32 px
    4     LeNet-5         30     32 px
    5     ResNet-20       12     64 px   ~4 min an epoch
    6     ResNet-20       20     64 px
    7     ResNet-18       12    128 px   (photos)
    -     the full recipe (``default_plan``): the top, taken whenever it fits (``--budget 0``: always)

A rung is a candidate only if it is cheaper than the full recipe; the budget takes the highest
candidate whose predicted time fits (``mislabel.training.budget``). The rung costs in the table above
are typical; the budget prices each candidate with its cost table for the device at hand.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from mislabel.data.sizing import training_side
from mislabel.models import NETWORKS

__all__ = ["Plan", "PlanOverrides", "Rung", "LADDER", "MEMORY_BUDGET", "default_plan", "apply_overrides",
           "candidate_plans", "backbone_plan", "PROBE_EPOCHS", "FINETUNE_EPOCHS"]

MEMORY_BUDGET = 2 * 2**30           # decoded uint8 pixels up to this size are held in memory
PROBE_EPOCHS = 30                   # a linear head's epoch over cached features costs well under a second
FINETUNE_EPOCHS = 3                 # from ImageNet weights a few epochs fit; dynamics are recorded each one


@dataclass
class Plan:
    """The phase-1 recipe find_issues uses; ``default_plan`` fills it, flags override it."""

    net_type: str
    depth: int
    epochs: int
    batch_size: int
    lr: float
    image_size: int
    in_memory: bool
    backbone: str | None = None   # a pretrained backbone (then net_type is its head), None: from scratch
    mode: str | None = None       # with a backbone: probe or finetune

    @property
    def kind(self) -> str:
        """``from scratch``, ``probe`` or ``finetune``: what budget_plan.json and the report call the recipe."""
        return "from scratch" if self.backbone is None else self.mode

    def reason(self) -> str:
        """Why this kind of recipe: a backbone only when the user names one (``backbone_plan``)."""
        if self.backbone is None:
            return ("from scratch, the default: a pretrained backbone is used only when --backbone names one (the "
                    "ladder never picks one on its own)")
        return (f"{self.mode} on {self.backbone}: --backbone {self.backbone} was passed"
                f"{' with --mode finetune' if self.mode == 'finetune' else ' (probe, the default mode)'}; the ladder "
                "of from-scratch recipes is not used with a backbone, and never picks one on its own (on frozen "
                "features the default score needs its memorisation handling to rank well: bench/regimes.py)")

    def describe(self) -> str:
        if self.mode == "probe":
            return (f"{self.backbone} features at {self.image_size}px (extracted once), a {self.net_type}{self.depth} "
                    f"head for {self.epochs} epochs, batch {self.batch_size}, lr {self.lr:g}")
        where = "in memory" if self.in_memory else "streamed from files"
        tuned = self.mode == "finetune"
        network = f"{self.backbone} fine-tuned (one-cycle)" if tuned else f"{self.net_type}{self.depth}"
        return (f"{network}, {self.epochs} epochs, batch {self.batch_size}, lr {self.lr:g}, "
                f"{self.image_size}px images {where}")


@dataclass(frozen=True)
class Rung:
    """One step of the budget ladder (module docstring)."""

    net_type: str
    depth: int
    epochs: int
    max_side: int


LADDER = (Rung("lenet", 5, 8, 32), Rung("lenet", 5, 12, 32), Rung("lenet", 5, 20, 32), Rung("lenet", 5, 30, 32),
          Rung("resnet", 20, 12, 64), Rung("resnet", 20, 20, 64), Rung("resnet", 18, 12, 128))


def default_plan(num_images: int, median_side: int) -> Plan:
    """A recipe sized to the data: small images train a CIFAR ResNet from memory with tensor
    augmentation, photos a torchvision ResNet-18 streamed from disk. Fewer epochs on larger sets
    (each epoch already holds more steps); batch 32 under 1,000 images, 64 under 5,000, else 128,
    so a small set still takes dozens of steps per epoch; lr scales with the batch (0.1 at 128)."""
    side = training_side(median_side)
    small = side <= 64
    net, depth = ("resnet", 20 if num_images < 20_000 else 32) if small else ("resnet", 18)
    epochs = 30 if num_images < 10_000 else 20 if num_images < 100_000 else 12
    batch = 32 if num_images < 1_000 else 64 if num_images < 5_000 else 128
    return Plan(net, depth, epochs, batch, 0.1 * batch / 128, side, in_memory(num_images, side))


def backbone_plan(num_images: int, side: int, backbone: str, mode: str, fixed: PlanOverrides) -> Plan:
    """The recipe with a pretrained backbone (``--backbone``; never picked by the budget on its own).
    probe: a linear head on the features, ``PROBE_EPOCHS`` epochs (each a fraction of a second),
    the features decoded from the files a chunk at a time; finetune: the whole network for
    ``FINETUNE_EPOCHS`` epochs at a tenth of the from-scratch learning rate (one-cycle). The batch
    sizes as ``default_plan``'s; flags override as for every plan."""
    batch = 32 if num_images < 1_000 else 64 if num_images < 5_000 else 128
    if mode == "probe":
        plan = Plan("linear", 1, PROBE_EPOCHS, batch, 0.1 * batch / 128, side, False, backbone, mode)
    else:
        plan = Plan("linear", 1, FINETUNE_EPOCHS, batch, 0.01 * batch / 128, side, in_memory(num_images, side),
                    backbone, mode)
    plan = apply_overrides(plan, fixed)
    plan.image_size = side  # --image_size is already in ``side`` (the backbone's, checked against it)
    return plan


def in_memory(num_images: int, side: int) -> bool:
    """Whether the decoded pixels fit ``MEMORY_BUDGET``."""
    return num_images * 3 * side * side <= MEMORY_BUDGET


@dataclass(frozen=True)
class PlanOverrides:
    """The recipe values a user fixed (None: chosen from the data); ``storage``: auto, memory or files."""

    net_type: str | None = None
    depth: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    image_size: int | None = None
    storage: str = "auto"


def apply_overrides(plan: Plan, fixed: PlanOverrides) -> Plan:
    """The user's values win; a network given without a depth gets its smallest depth; a batch size
    given without a learning rate scales it (0.1 at 128)."""
    plan = replace(plan)
    if fixed.net_type is not None:
        name = fixed.net_type.strip().lower()
        plan.net_type, plan.depth = name, NETWORKS[name][0] if name != plan.net_type else plan.depth
    plan.depth = fixed.depth if fixed.depth is not None else plan.depth
    plan.epochs = fixed.epochs if fixed.epochs is not None else plan.epochs
    if fixed.batch_size is not None:
        plan.batch_size, plan.lr = fixed.batch_size, 0.1 * fixed.batch_size / 128
    plan.lr = fixed.lr if fixed.lr is not None else plan.lr
    if fixed.image_size is not None:
        plan.image_size = fixed.image_size
    if fixed.storage != "auto":
        plan.in_memory = fixed.storage == "memory"
    return plan


def candidate_plans(full: Plan, num_images: int, fixed: PlanOverrides) -> list[Plan]:
    """The ladder's rungs as plans for this data, overrides applied, then the full recipe last;
    duplicates (overrides can make rungs equal) and rungs with more epochs than the full recipe dropped."""
    plans = []
    for rung in LADDER:
        side = min(full.image_size, rung.max_side)
        plan = replace(full, net_type=rung.net_type, depth=rung.depth, epochs=min(rung.epochs, full.epochs),
                       image_size=side, in_memory=in_memory(num_images, side))
        plans.append(apply_overrides(plan, fixed))
    plans.append(apply_overrides(full, fixed))
    unique: list[Plan] = []
    for plan in plans:
        if plan in unique:
            unique.remove(plan)  # keep its last (highest) position
        unique.append(plan)
    return unique
