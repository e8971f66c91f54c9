"""What bench/detection.py runs: the grid's recipes and noise settings, the detectors' source corpus,
the detector variants it compares. Declarations only, kept apart so the benchmark's code reads
alone; bench/pretrain_detectors.py, bench/noisy_count.py and bench/gate_alternatives.py read the same
plans from here."""
from __future__ import annotations

from dataclasses import dataclass

# ----------------------------------------------------------------------------------------------
# Plans: what runs where, and why
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataPlan:
    net_type: str
    depth: int
    epochs: int
    train_subset: int | None = None  # fashion_mnist: this many of the 60,000 training images
    batch_size: int = 128
    lr: float = 0.1
    td_mode: str = "train"
    classes: tuple[int, ...] | None = None  # fashion_mnist: only these classes, relabelled 0..k-1


# conv4 learns 8x8 digits to ~97% in seconds but costs ~12 s/epoch on 28x28 images on one core;
# LeNet-5 is ~2 s/epoch on 10,000 Fashion-MNIST images. LeNet has no batch norm: at lr 0.1 it
# stalls near chance under 40% noise, at 0.05 with batch 64 it learns in a few hundred steps.
# Different lengths (60 vs 25 epochs) and models on the two datasets are on purpose: transfer
# must survive both.
DIGITS = DataPlan("conv4", 4, 60)
FASHION = DataPlan("lenet_mnist", 5, 25, 10_000, batch_size=64, lr=0.05)
GRID_SETTINGS = (("uniform", "0.2"), ("uniform", "0.4"), ("flip", "0.2"), ("flip", "0.4"), ("semantic", "0.4"),
                 ("idn", "0.2"), ("idn", "0.4"), ("confusion", "0.2"), ("confusion", "0.4"))
HARD_SETTINGS = (("flip", "0.4"), ("semantic", "0.4"), ("idn", "0.4"), ("confusion", "0.4"))
# find_issues' own recipes for these sets, as its ladder picks them (mislabel.training.plan and
# .budget on the CPU cost table): digits at the default 20-minute budget gets the full recipe,
# ResNet-20 for 30 epochs at batch 64 and lr 0.05; the 10,000 Fashion-MNIST images at a budget of
# 2-5 minutes get LeNet-5 for 20 epochs at batch 128 and lr 0.1 (the full recipe, ResNet-20 at 16
# minutes a run, is too slow for 27 runs here). Trained at the images' own size (find_issues would
# upscale digits to 16 px and Fashion-MNIST to 32 px). Users meet the detector in these runs, so
# the grid is scored on them too: the same settings and seeds, the same detectors.
FIND_ISSUES_RECIPES = {"digits": DataPlan("resnet", 20, 30, batch_size=64, lr=0.05),
                       "fashion_mnist": DataPlan("lenet", 5, 20, 10_000, batch_size=128, lr=0.1)}
PLANS = {
    "full": dict(name="full", seeds=(1, 2, 3), settings=GRID_SETTINGS,
                 data={"digits": DIGITS, "fashion_mnist": FASHION},
                 recipes=FIND_ISSUES_RECIPES, detector_epochs=10, cleanlab=("digits",)),
    "quick": dict(name="quick", seeds=(1,), settings=(("uniform", "0.4"), ("flip", "0.4"), ("idn", "0.4")),
                  data={"digits": DataPlan("conv4", 4, 30),
                        "fashion_mnist": DataPlan("lenet_mnist", 5, 15, 3_000, batch_size=64, lr=0.05)},
                  recipes={}, detector_epochs=8, cleanlab=()),
}
SOURCE_SEED = 100                                   # detectors never see an evaluated run
CLEANLAB_FOLDS = 4


@dataclass(frozen=True)
class SourceRun:
    """One phase-1 run a detector (and the learned control) learns from; ``plan`` None = the dataset's
    grid recipe. Source runs use SOURCE_SEED, so no evaluated run's noise draw is ever seen."""
    noise: str
    ratio: str
    plan: DataPlan | None = None


# The paper's detector learns from one run (uniform 0.3). MIX4 is the previous default's four runs,
# bracketing the grid's 0.2 and 0.4 (flip stops at 0.45: at 0.5 a flipped pair is a coin toss).
PAPER_SOURCE = (SourceRun("uniform", "0.3"),)
MIX4 = (SourceRun("uniform", "0.3"), SourceRun("uniform", "0.5"), SourceRun("flip", "0.3"), SourceRun("flip", "0.45"))
# The broad corpus: MIX4 plus every noise type at rates 0.05-0.5, networks of two or three sizes,
# runs of 15-60 epochs and one run recorded in eval mode, so that no single recipe, noise model or
# length is what the detector learns. No grid cell's (type, rate) is repeated with a grid recipe.
_EASY = (1, 2, 3, 5, 8)
CORPUS = {
    "digits": MIX4 + (
        SourceRun("uniform", "0.1", DataPlan("lenet", 5, 40)),
        SourceRun("uniform", "0.05", DataPlan("resnet", 20, 30)),
        SourceRun("flip", "0.15", DataPlan("lenet", 5, 40)),
        SourceRun("semantic", "0.25", DataPlan("conv4", 4, 30)),
        SourceRun("semantic", "0.35", DataPlan("resnet", 20, 30)),
        SourceRun("semantic", "0.5", DataPlan("lenet", 5, 40)),
        SourceRun("idn", "0.1"),
        SourceRun("idn", "0.3", DataPlan("lenet", 5, 40)),
        SourceRun("idn", "0.5", DataPlan("conv4", 4, 30, td_mode="eval")),
        # Weak models (91%, 86% and 68% test accuracy without noise): digits is easy, and a detector
        # that never saw a clean sample the model gets wrong reads every confusion as a flip.
        SourceRun("uniform", "0.25", DataPlan("conv4", 4, 8, lr=0.01)),
        SourceRun("flip", "0.35", DataPlan("conv4", 4, 8, lr=0.01)),
        SourceRun("idn", "0.35", DataPlan("conv4", 4, 8, lr=0.01)),
        SourceRun("idn", "0.25", DataPlan("resnet", 20, 8, lr=0.02)),
        SourceRun("semantic", "0.45", DataPlan("resnet", 20, 8, lr=0.02)),
        SourceRun("uniform", "0.35", DataPlan("lenet", 5, 15, lr=0.05)),
        SourceRun("uniform", "0.15", DataPlan("resnet", 20, 8, lr=0.02)),
        SourceRun("uniform", "0.45", DataPlan("resnet", 20, 8, lr=0.02)),
        SourceRun("idn", "0.15", DataPlan("lenet", 5, 15, lr=0.05)),
        SourceRun("flip", "0.1", DataPlan("resnet", 20, 8, lr=0.02)),
        # Annotator-confusion noise: the ambiguous images relabelled to the class they resemble.
        SourceRun("confusion", "0.1", DataPlan("lenet", 5, 40)),
        SourceRun("confusion", "0.3"),
        SourceRun("confusion", "0.5", DataPlan("resnet", 20, 30)),
        SourceRun("confusion", "0.25", DataPlan("conv4", 4, 8, lr=0.01)),
        SourceRun("confusion", "0.15", DataPlan("lenet", 5, 15, lr=0.05)),
    ),
    "fashion_mnist": MIX4 + (
        SourceRun("uniform", "0.1", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05)),
        SourceRun("uniform", "0.05", DataPlan("lenet_mnist", 5, 15, 10_000, batch_size=128, lr=0.05)),
        SourceRun("flip", "0.15", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05)),
        SourceRun("semantic", "0.25", DataPlan("lenet_mnist", 5, 40, 10_000, batch_size=64, lr=0.05)),
        SourceRun("semantic", "0.35", DataPlan("lenet", 5, 25, 10_000, batch_size=64, lr=0.05, td_mode="eval")),
        SourceRun("semantic", "0.5", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05)),
        SourceRun("idn", "0.1"),
        SourceRun("idn", "0.3", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05)),
        SourceRun("idn", "0.5", DataPlan("lenet_mnist", 5, 40, 10_000, batch_size=64, lr=0.05)),
        SourceRun("uniform", "0.25", DataPlan("lenet_mnist", 5, 5, 10_000, batch_size=64, lr=0.05)),
        SourceRun("flip", "0.35", DataPlan("lenet_mnist", 5, 6, 10_000, batch_size=64, lr=0.05)),
        SourceRun("idn", "0.25", DataPlan("lenet", 5, 6, 10_000, batch_size=64, lr=0.05)),
        # Weak and short runs (66-73% test accuracy without noise): what a small budget or a hard
        # dataset gives, where many clean samples are never learned.
        SourceRun("uniform", "0.35", DataPlan("lenet_mnist", 5, 3, 10_000, batch_size=64, lr=0.01)),
        SourceRun("uniform", "0.15", DataPlan("lenet", 5, 4, 10_000, batch_size=64, lr=0.005)),
        SourceRun("flip", "0.25", DataPlan("lenet", 5, 4, 10_000, batch_size=64, lr=0.005)),
        SourceRun("semantic", "0.3", DataPlan("lenet", 5, 4, 10_000, batch_size=64, lr=0.005)),
        SourceRun("idn", "0.35", DataPlan("lenet_mnist", 5, 3, 10_000, batch_size=64, lr=0.01)),
        SourceRun("idn", "0.15", DataPlan("lenet_mnist", 5, 2, 10_000, batch_size=64, lr=0.02)),
        # Small folders with find_issues' own LeNet recipe (20 epochs, batch 32, lr 0.1): a few hundred
        # steps leave the model weak (under 50% on some runs), the case a user's small dataset gives.
        SourceRun("uniform", "0.12", DataPlan("lenet", 5, 20, 1_000, batch_size=32, lr=0.1)),
        SourceRun("uniform", "0.28", DataPlan("lenet", 5, 20, 2_000, batch_size=32, lr=0.1)),
        SourceRun("flip", "0.22", DataPlan("lenet", 5, 20, 1_000, batch_size=32, lr=0.1)),
        SourceRun("idn", "0.18", DataPlan("lenet", 5, 20, 2_000, batch_size=32, lr=0.1)),
        # Five classes the network tells apart well (trouser, pullover, dress, sandal, bag): runs where
        # nearly every clean sample is learned, as on digits, so correctness is not learned as weak.
        SourceRun("uniform", "0.2", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
        SourceRun("uniform", "0.4", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
        SourceRun("flip", "0.2", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
        SourceRun("flip", "0.4", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
        SourceRun("idn", "0.2", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
        SourceRun("idn", "0.4", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
        # Annotator-confusion noise at several rates, strong and weak models, a small folder.
        SourceRun("confusion", "0.1", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05)),
        SourceRun("confusion", "0.3"),
        SourceRun("confusion", "0.5", DataPlan("lenet_mnist", 5, 40, 10_000, batch_size=64, lr=0.05)),
        SourceRun("confusion", "0.25", DataPlan("lenet", 5, 4, 10_000, batch_size=64, lr=0.005)),
        SourceRun("confusion", "0.15", DataPlan("lenet", 5, 20, 1_000, batch_size=32, lr=0.1)),
        SourceRun("confusion", "0.35", DataPlan("lenet", 5, 15, 10_000, batch_size=64, lr=0.05, classes=_EASY)),
    ),
}

# Detector variants: the paper's, and what this benchmark measures beyond it. Every variant but the
# paper's pools mean and max over a bidirectional LSTM's outputs and resamples runs to 32 points.
# `rank_mix4` is an older default (four source runs, 2x64 LSTM); `rank_corpus` the same inputs on
# the broad corpus (what the corpus alone brings); `context` adds the class-context inputs (the
# previous default); `context_raw` adds raw probability and margin on top; `gated` is `context`'s
# very LSTM weighed against AUM by how concentrated a run's mistakes are, with a gate fitted on
# out-of-fold LSTM scores of the same corpus (mislabel/scoring/gate.py): the default.
_PAPER_NET = dict(readout="last", bidirectional=False, seq_len=0, hidden_size=64, num_layers=2, epochs=10, lr=1e-3,
                  gate_folds=0)
_POOLED = dict(readout="pool", bidirectional=True, seq_len=32, hidden_size=32, num_layers=1, epochs=8, lr=2e-3,
               gate_folds=0)
_RANK = "correct,prob_rank,margin_rank"
_CONTEXT = _RANK + ",confusion,class_error"
VARIANTS = {
    "paper": dict(_PAPER_NET, features="prob", sources=PAPER_SOURCE),
    "rank_mix4": dict(_POOLED, features=_RANK, hidden_size=64, num_layers=2, epochs=10, lr=1e-3, sources=MIX4),
    "rank_corpus": dict(_POOLED, features=_RANK, sources="corpus"),
    "context": dict(_POOLED, features=_CONTEXT, sources="corpus"),
    "context_raw": dict(_POOLED, features="prob,margin," + _CONTEXT, sources="corpus"),
    "gated": dict(_POOLED, features=_CONTEXT, sources="corpus", gate_folds=3),
}
DEFAULT_VARIANT = "gated"          # what train_detector.py's defaults give and mislabel/scoring/pretrained ships
