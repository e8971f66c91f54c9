"""mislabel.scoring.cleaning: what each action does to the suspects, and the weighted loss it relies on."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from mislabel.core.dynamics import Dynamics
from mislabel.core.run_options import Recipe
from mislabel.core.user_input import UserError
from mislabel.data.datasets import TensorBatches
from mislabel.scoring.cleaning import ACTIONS, clean_labels, oracle_labels
from mislabel.scoring.summary import summarize
from mislabel.training.loop import fit

EPOCHS = 4


def recorded(given_probability: list[float], other_probability: list[float], others: list[int]) -> Dynamics:
    """Four samples labelled 0: channel 0 the given label's probability, channel 1 the other class's."""
    count = len(given_probability)
    td = np.zeros((count, EPOCHS, 2), dtype=np.float16)
    td[:, :, 0] = np.asarray(given_probability)[:, None]
    td[:, :, 1] = np.asarray(other_probability)[:, None]
    labels = np.stack([np.zeros(count, np.int64), np.asarray(others, np.int64)], axis=1)
    return Dynamics(td=td, labels=labels, margin=np.zeros((count, EPOCHS), np.float16),
                    pred=np.zeros((count, EPOCHS), np.int16), indices=np.arange(count), num_classes=3)


# sample 0 clean; 1 and 2 suspects the network preferred class 2 / 1 for; 3 a suspect it still
# gave its label more probability than any other class
RUN = summarize(recorded([0.9, 0.2, 0.1, 0.5], [0.05, 0.7, 0.8, 0.3], [1, 2, 1, 2]))
SUSPECTS = np.array([1, 2, 3])


def test_each_action_touches_the_suspects_only() -> None:
    remove = clean_labels(RUN, SUSPECTS, "remove")
    assert remove.keep.tolist() == [True, False, False, False] and (remove.labels == 0).all()
    relabel = clean_labels(RUN, SUSPECTS, "relabel")
    assert relabel.keep.all() and relabel.labels.tolist() == [0, 2, 1, 2]
    hybrid = clean_labels(RUN, SUSPECTS, "hybrid")   # 3 kept its label's probability above the suggestion's
    assert hybrid.keep.tolist() == [True, True, True, False] and hybrid.labels.tolist() == [0, 2, 1, 0]
    down = clean_labels(RUN, SUSPECTS, "downweight")
    assert down.keep.all() and (down.labels == 0).all()
    assert np.allclose(down.weights, [1.0, 0.2, 0.1, 0.5], atol=1e-3)
    assert hybrid.describe() == {"action": "hybrid", "num_removed": 1, "num_relabelled": 2, "num_downweighted": 0}
    assert down.describe()["num_downweighted"] == 3 and remove.weights is None


def test_suggestions_need_a_second_channel() -> None:
    assert RUN.suggested.tolist() == [1, 2, 1, 2] and np.allclose(RUN.suggested_probability, [0.05, 0.7, 0.8, 0.3],
                                                                   atol=1e-3)
    assert RUN.predicted.tolist() == [0, 2, 1, 0]   # the given label where it kept more probability
    two = recorded([0.9, 0.2, 0.1, 0.5], [0.05, 0.7, 0.8, 0.3], [1, 2, 1, 2])
    given_only = summarize(Dynamics(td=two.td[:, :, :1], labels=two.labels[:, :1], margin=two.margin, pred=two.pred,
                                    indices=two.indices, num_classes=3))
    assert np.isnan(given_only.suggested_probability).all() and (given_only.predicted == 0).all()
    for action in ("relabel", "hybrid"):
        with pytest.raises(UserError, match="--action remove"):
            clean_labels(given_only, SUSPECTS, action)
    assert clean_labels(given_only, SUSPECTS, "remove").keep.sum() == 1


def test_an_unknown_action_is_refused_naming_the_choices() -> None:
    with pytest.raises(UserError, match="action 'burn' is not one of " + ", ".join(ACTIONS)) as raised:
        clean_labels(RUN, SUSPECTS, "burn")
    assert isinstance(raised.value, ValueError)


def _trained(weights: np.ndarray | None, loss_type: str = "cross_entropy") -> torch.Tensor:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (24, 1, 4, 4), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 3, (24,), generator=generator)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    batches = TensorBatches(images, labels, (0.5,), (0.25,), 8, torch.device("cpu"), shuffle=True, seed=2)
    fit(model, batches, None, Recipe(epochs=2, batch_size=8, lr=0.1, loss_type=loss_type), sample_weights=weights)
    return model[1].weight.detach().clone()


def test_unit_weights_train_exactly_as_no_weights_and_zero_weights_differ() -> None:
    assert torch.equal(_trained(None), _trained(np.ones(24, np.float32)))
    halved = np.ones(24, np.float32)
    halved[:8] = 0.0
    assert not torch.equal(_trained(None), _trained(halved))


def test_weights_need_the_cross_entropy_loss() -> None:
    with pytest.raises(UserError, match="--loss_type cross_entropy"):
        _trained(np.ones(24, np.float32), loss_type="reed_soft")


def test_the_oracle_removes_exactly_the_flipped_labels_and_needs_them() -> None:
    flipped = np.array([False, True, False, True])
    oracle = oracle_labels(RUN, flipped)
    assert oracle.keep.tolist() == (~flipped).tolist() and (oracle.labels == RUN.given).all()
    with pytest.raises(UserError, match="synthetic noise"):
        oracle_labels(RUN, None)   # no true labels: real-world noise
