"""Recorder stores (RAM, memmap), top-k recording, checkpoint/restore and the streamed npz."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from mislabel.training import recorder as recorder_module
from mislabel.training.recorder import STORE_DIR, Recorder
from mislabel.core.streaming import computed_ahead
from mislabel.core.dynamics import TD_FILE, Dynamics, load_dynamics, save_dynamics
from mislabel.core.user_input import UserError

NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS = 53, 7, 5


def feed(recorder: Recorder, logits: torch.Tensor, targets: torch.Tensor, epochs: range) -> None:
    for epoch in epochs:
        order = torch.randperm(NUM_SAMPLES, generator=torch.Generator().manual_seed(epoch))
        for rows in order.split(16):
            recorder.update(logits[epoch, rows], targets[rows], rows)
        recorder.next_epoch()


@pytest.fixture(scope="module")
def run() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(NUM_EPOCHS, NUM_SAMPLES, NUM_CLASSES, generator=generator) * 3
    return logits, torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=generator)


def assert_same(a: Dynamics, b: Dynamics) -> None:
    for name in ("td", "labels", "margin", "pred", "indices"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_memmap_store_equals_ram_and_streams_the_npz(run, tmp_path):
    logits, targets = run
    ram = Recorder(NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS, store="ram")
    mapped = Recorder(NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS, path=tmp_path / "run", store="memmap")
    assert Recorder(NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS, path=tmp_path, store="auto").store == "ram"
    for recorder in (ram, mapped):
        feed(recorder, logits, targets, range(NUM_EPOCHS))
    assert (tmp_path / "run" / STORE_DIR / "probs.npy").is_file()
    assert_same(ram.dynamics(), mapped.dynamics())
    mapped.save(tmp_path / "run")
    save_dynamics(tmp_path / "plain", ram.dynamics())
    assert_same(load_dynamics(tmp_path / "run"), load_dynamics(tmp_path / "plain"))
    mapped.cleanup()
    assert not (tmp_path / "run" / STORE_DIR).exists()


def test_topk_keeps_assigned_plus_k_and_exact_margin_and_pred(run, tmp_path):
    logits, targets = run
    full, top = Recorder(NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS), Recorder(NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS, topk=2)
    for recorder in (full, top):
        feed(recorder, logits, targets, range(NUM_EPOCHS))
    top.save(tmp_path, true_labels=targets.numpy())
    dyn, reference = load_dynamics(tmp_path), full.dynamics()
    assert dyn.td.shape == (NUM_SAMPLES, NUM_EPOCHS, 3) and dyn.labels.shape == (NUM_SAMPLES, 3)
    assert np.array_equal(dyn.margin, reference.margin) and np.array_equal(dyn.pred, reference.pred)
    assert np.array_equal(dyn.td[:, :, 0], reference.td[:, :, 0]) and np.array_equal(dyn.assigned, targets.numpy())
    assert not dyn.flipped.any() and np.array_equal(dyn.true_labels, targets.numpy())
    # every stored value is the class's true probability, or 0 where it was outside that epoch's top 2
    probs = torch.softmax(logits, dim=2).permute(1, 0, 2).numpy().astype(np.float16)
    truth = np.take_along_axis(probs, dyn.labels[:, None, :], axis=2)
    assert np.all((dyn.td == truth) | (dyn.td == 0))


def test_checkpoint_and_restore_continue_the_ram_store(run, tmp_path):
    logits, targets = run
    whole = Recorder(NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS, store="ram")
    feed(whole, logits, targets, range(NUM_EPOCHS))
    first = Recorder(NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS, path=tmp_path, store="ram", topk=3)
    feed(first, logits, targets, range(2))
    first.checkpoint()
    second = Recorder(NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS, path=tmp_path, store="ram", topk=3)
    second.restore(2)
    feed(second, logits, targets, range(2, NUM_EPOCHS))
    uninterrupted = Recorder(NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS, topk=3)
    feed(uninterrupted, logits, targets, range(NUM_EPOCHS))
    assert_same(second.dynamics(), uninterrupted.dynamics())
    with pytest.raises(UserError, match="cannot resume"):
        Recorder(NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS, path=tmp_path, store="ram").restore(3)


def reorder_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("td-reorder")]


@pytest.mark.parametrize("store, topk", [("memmap", None), ("ram", None), ("memmap", 2)])
def test_save_in_many_chunks_writes_the_same_bytes_with_and_without_the_worker_thread(run, tmp_path, monkeypatch,
                                                                                        store, topk):
    logits, targets = run
    recorder = Recorder(NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS, path=tmp_path / "store", store=store, topk=topk)
    feed(recorder, logits, targets, range(NUM_EPOCHS))
    monkeypatch.setattr(recorder_module, "REORDER_CHUNK_BYTES", 2 * NUM_EPOCHS * NUM_CLASSES * 4)  # 4 rows a chunk
    threaded = recorder.save(tmp_path / "threaded").read_bytes()
    monkeypatch.setattr(recorder_module, "computed_ahead", lambda chunks: chunks)
    assert recorder.save(tmp_path / "plain").read_bytes() == threaded
    assert_same(load_dynamics(tmp_path / "plain"), recorder.dynamics())


def test_computed_ahead_keeps_each_item_until_the_caller_is_back_and_surfaces_errors():
    buffers = [np.zeros(1), np.zeros(1)]

    def reusing_two_buffers():
        for item in range(6):
            buffers[item % 2][0] = item
            yield buffers[item % 2], item
        raise ValueError("reorder failed")

    seen = []
    with pytest.raises(ValueError, match="reorder failed"):
        for buffer, item in computed_ahead(reusing_two_buffers()):
            time.sleep(0.01)  # time for the worker to overwrite this buffer, were it asked too early
            seen.append((int(buffer[0]), item))
    assert seen == [(item, item) for item in range(6)] and not reorder_threads()


def test_computed_ahead_left_early_closes_its_source_and_worker():
    closed = []

    def source():
        try:
            yield from ((np.zeros(1), item) for item in range(10))
        finally:
            closed.append(True)

    chunks = computed_ahead(source())
    next(chunks)
    chunks.close()
    assert closed == [True] and not reorder_threads()


def test_save_of_a_truncated_memmap_store_fails_and_writes_nothing(run, tmp_path):
    logits, targets = run
    recorder = Recorder(NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS, path=tmp_path, store="memmap")
    feed(recorder, logits, targets, range(NUM_EPOCHS))
    probs = tmp_path / STORE_DIR / "probs.npy"
    probs.write_bytes(probs.read_bytes()[:-2])
    with pytest.raises(ValueError):  # raised in the worker thread, while the archive is being written
        recorder.save(tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == [] and not reorder_threads()
    assert not (tmp_path / "out" / TD_FILE).exists()


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="memmap store needs a folder"):
        Recorder(4, 3, 2, store="memmap")
    with pytest.raises(UserError, match="unknown dynamics store"):
        Recorder(4, 3, 2, store="disk")
    with pytest.raises(UserError, match="topk"):
        Recorder(4, 3, 2, topk=0)
    assert Recorder(4, 3, 2, topk=5).channels == 3            # K + 1 >= C keeps every class
