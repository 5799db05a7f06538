"""make_loader: batches of the right shape; bad files are dropped and counted, also with workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data.loader import Unreadable, collate_skipping, make_loader, skipped_count
from vitkit.data.preprocessing import Preprocessing
from vitkit.data.sources import open_source
from vitkit.data.transforms import eval_transform, train_transform

PRE = Preprocessing(image_size=16, crop_pct=1.0)


def _folder_with_bad_files(root) -> None:
    """train/: two classes of 6 good images, plus a corrupt and an oversized file in b; val/: 2 good."""
    for split, count in (("train", 6), ("val", 1)):
        for cls, value in (("a", 40), ("b", 200)):
            (root / split / cls).mkdir(parents=True)
            for k in range(count):
                Image.new("RGB", (20, 20), (value, k, 0)).save(root / split / cls / f"{k}.png")
    (root / "train" / "b" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.new("L", (100, 100)).save(root / "train" / "b" / "too_big.png")  # refused with max_pixels=5000


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_files_are_dropped_and_counted(tmp_path, num_workers):
    _folder_with_bad_files(tmp_path / "tree")
    data = open_source(str(tmp_path / "tree"), "train", max_pixels=5000)
    assert len(data) == 14
    loader = make_loader(data, eval_transform(PRE), batch_size=4, shuffle=True, num_workers=num_workers)
    seen = 0
    for images, labels in loader:
        assert images.shape[1:] == (3, 16, 16) and images.dtype == torch.float32
        assert labels.dtype == torch.long and len(labels) == len(images)
        seen += len(labels)
    bad = 2
    assert seen == 14 - bad
    assert skipped_count(loader) == loader.skipped == loader.skipped_last_epoch == bad
    names = sorted(Path(data.paths[i]).name for i in loader.unreadable)
    assert names == ["corrupt.png", "too_big.png"]
    assert "pixels exceeds the limit" in loader.unreadable[data.paths.index(tmp_path / "tree/train/b/too_big.png")]
    for _ in loader:  # a second epoch meets the same two files: still two unreadable files, not four
        pass
    assert skipped_count(loader) == bad and loader.skipped_last_epoch == bad


def test_batches_labels_and_seeded_order():
    data = open_source("digits", "test")
    loader = make_loader(data, eval_transform(PRE), batch_size=50, shuffle=False)
    images, labels = next(iter(loader))
    assert images.shape == (50, 3, 16, 16)
    assert labels.tolist() == data.labels()[:50]
    assert sum(len(y) for _, y in loader) == len(data) and len(loader) == 8

    def order(seed):
        shuffled = make_loader(data, eval_transform(PRE), batch_size=400, shuffle=True, seed=seed)
        return [torch.cat([y for _, y in shuffled]).tolist() for _ in range(2)]  # two epochs

    first, again, other = order(0), order(0), order(1)
    assert first == again  # same seed, same sequence of epoch orders
    assert first[0] != first[1]  # a new order each epoch
    assert first != other
    assert sorted(first[0]) == sorted(data.labels())


def test_drop_last_and_training_transform():
    data = open_source("digits", "test")
    loader = make_loader(data, train_transform(PRE, flip=False), batch_size=64, shuffle=True, drop_last=True)
    sizes = [len(y) for _, y in loader]
    assert sizes == [64] * (len(data) // 64)


def test_collate_drops_unreadable_items_and_survives_an_all_bad_batch():
    item = (torch.zeros(3, 2, 2), 1)
    images, labels, dropped = collate_skipping([Unreadable(4, "broken"), item, Unreadable(7, "too big")])
    assert images.shape == (1, 3, 2, 2) and labels.tolist() == [1]
    assert [(d.index, d.reason) for d in dropped] == [(4, "broken"), (7, "too big")]
    images, labels, dropped = collate_skipping([Unreadable(1, "a"), None])
    assert images is None and labels is None and [d.index for d in dropped] == [1, -1]


def test_distributed_sampler_shards(monkeypatch):
    data = open_source("digits", "test")
    # a DistributedSampler needs the world size and rank; give them explicitly via the env-free API
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None: 0)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    loader = make_loader(data, eval_transform(PRE), batch_size=32, shuffle=True, distributed=True)
    got = torch.cat([y for _, y in loader]).numel()
    assert got == int(np.ceil(len(data) / 2))


def _signalled_before_init(worker_id: int) -> None:
    """A group signal that reaches a worker before vitkit's worker_init_fn has run (a preemption while an
    epoch's workers start), then vitkit's init."""
    import os
    import signal

    from vitkit.data.loader import leave_stop_signals_to_the_main_process

    os.kill(os.getpid(), signal.SIGTERM)
    leave_stop_signals_to_the_main_process(worker_id)


class _Mask(torch.utils.data.Dataset):
    """Each item: whether SIGTERM is blocked and ignored in the process that reads it."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        import signal

        blocked = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        return torch.tensor([blocked, signal.getsignal(signal.SIGTERM) == signal.SIG_IGN])


def test_a_stop_signal_reaching_a_starting_worker_is_left_to_the_main_process():
    """The window the flaky group-SIGTERM test hit: a worker inherits the main process's stop handler until
    its worker_init_fn runs; WorkerLoader starts workers with the stop signals blocked, so one that arrives
    then is discarded by the worker and never kills it, and the main process's mask is as it was."""
    import signal

    from vitkit.data.loader import WorkerLoader

    def stop(signum, frame):
        raise AssertionError("the main process was not signalled")

    previous = signal.signal(signal.SIGTERM, stop)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        loader = WorkerLoader(_Mask(), batch_size=None, num_workers=2, worker_init_fn=_signalled_before_init,
                              multiprocessing_context="fork")
        rows = torch.stack(list(loader))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert rows.tolist() == [[False, True], [False, True]]  # unblocked again, and ignored, in each worker
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
