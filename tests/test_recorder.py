import numpy as np
import pytest
import torch

from mislabel.training.recorder import Recorder, margins
from mislabel.core.dynamics import load_dynamics
from mislabel.core.user_input import UserError


def test_recorder_channel_order_margin_and_pred(tmp_path):
    torch.manual_seed(0)
    num_samples, num_classes, num_epochs = 37, 5, 4
    targets = torch.randint(0, num_classes, (num_samples,))
    recorder = Recorder(num_samples, num_classes, num_epochs, sample_ids=np.arange(100, 100 + num_samples))
    all_logits = torch.randn(num_epochs, num_samples, num_classes) * 3
    for epoch in range(num_epochs):
        order = torch.randperm(num_samples)
        for rows in order.split(8):
            recorder.update(all_logits[epoch, rows], targets[rows], rows)
        recorder.next_epoch()
    recorder.save(tmp_path)
    dyn = load_dynamics(tmp_path)
    assert dyn.td.shape == (num_samples, num_epochs, num_classes) and dyn.td.dtype == np.float16
    assert np.array_equal(dyn.indices, np.arange(100, 100 + num_samples))
    probs = torch.softmax(all_logits, dim=2).permute(1, 0, 2).numpy()       # [N, E, K]
    assert np.array_equal(dyn.labels[:, 0], targets.numpy())
    expected = np.take_along_axis(probs, dyn.labels[:, None, :], axis=2)
    assert np.allclose(dyn.td, expected, atol=1e-3)
    mean_others = dyn.td[:, :, 1:].astype(np.float32).mean(axis=1)
    assert np.all(np.diff(mean_others, axis=1) <= 1e-3)                       # sorted, descending
    assert np.array_equal(np.sort(dyn.labels, axis=1), np.tile(np.arange(num_classes), (num_samples, 1)))
    assert np.array_equal(dyn.pred, probs.argmax(axis=2))
    expected_margin = np.stack([margins(all_logits[e], targets).numpy() for e in range(num_epochs)], axis=1)
    assert np.allclose(dyn.margin, expected_margin, atol=1e-2)
    assert np.array_equal(dyn.margin > 0, dyn.pred == targets.numpy()[:, None])


def test_missing_samples_in_an_epoch_are_an_error():
    recorder = Recorder(4, 3, 2)
    recorder.update(torch.randn(3, 3), torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))
    with pytest.raises(UserError, match="1 of 4 samples were not recorded .the first: index 3"):
        recorder.next_epoch()
