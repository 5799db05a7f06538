"""BatchAugment: soft targets sum to 1 and match the pixels that were actually mixed."""

from __future__ import annotations

import pytest
import torch

from vitkit.data.augment import BatchAugment, smooth_one_hot
from vitkit.errors import VitkitError


def _constant_batch(n: int = 8, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with the value i and labelled i, so every pixel says where it came from."""
    labels = torch.arange(n)
    images = labels.float().view(-1, 1, 1, 1).expand(n, 3, size, size).contiguous()
    return images, labels


def test_label_smoothing_only():
    images, labels = _constant_batch(4)
    out, targets = BatchAugment(label_smoothing=0.1, num_classes=5)(images, labels)
    assert torch.equal(out, images)
    assert torch.allclose(targets.sum(1), torch.ones(4))
    assert torch.allclose(targets[2], torch.tensor([0.02, 0.02, 0.92, 0.02, 0.02]))
    assert torch.equal(smooth_one_hot(torch.tensor([1]), 3), torch.tensor([[0.0, 1.0, 0.0]]))


def test_mixup_targets_are_the_mixing_weights():
    torch.manual_seed(0)
    images, labels = _constant_batch(8)
    out, targets = BatchAugment(mixup=0.8, num_classes=8)(images, labels)
    assert torch.allclose(targets.sum(1), torch.ones(8))
    # each mixed image is constant, equal to the target-weighted mean of the source values
    values = out.flatten(1)
    assert torch.allclose(values, values[:, :1].expand_as(values))
    assert torch.allclose(values[:, 0], targets @ torch.arange(8.0), atol=1e-5)
    assert not torch.equal(out, images)


def test_cutmix_targets_are_the_pasted_areas():
    torch.manual_seed(1)
    images, labels = _constant_batch(8, size=20)
    out, targets = BatchAugment(cutmix=1.0, label_smoothing=0.0, num_classes=8)(images, labels)
    assert torch.allclose(targets.sum(1), torch.ones(8))
    changed = 0
    for i in range(8):
        pixels = out[i, 0].flatten()
        share = torch.stack([(pixels == k).float().mean() for k in range(8)])
        assert torch.allclose(share, targets[i], atol=1e-6)  # label weight == fraction of its pixels
        changed += int(share[i] < 1)
    assert changed > 0


def test_mixing_with_smoothing_and_both_mixers():
    torch.manual_seed(0)
    images, labels = _constant_batch(8)
    augment = BatchAugment(mixup=0.8, cutmix=1.0, label_smoothing=0.1, num_classes=10)
    for _ in range(4):
        _, targets = augment(images, labels)
        assert targets.shape == (8, 10)
        assert torch.allclose(targets.sum(1), torch.ones(8))
        assert torch.all(targets >= 0.01 - 1e-6)  # smoothing leaves mass on every class


def test_randaugment_on_normalised_batches():
    torch.manual_seed(0)
    base = torch.rand(8, 3, 16, 16)
    normalised = (base - 0.5) / 0.5
    augment = BatchAugment(randaugment=True, num_classes=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    out, targets = augment(normalised, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    assert out.shape == normalised.shape
    assert out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5  # back in the normalised range
    assert not torch.allclose(out, normalised)
    assert torch.equal(targets.argmax(1), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))


def test_bad_arguments():
    with pytest.raises(VitkitError, match="num_classes"):
        BatchAugment(num_classes=1)
    with pytest.raises(VitkitError, match="label_smoothing"):
        BatchAugment(label_smoothing=1.0, num_classes=3)
    with pytest.raises(VitkitError, match="Beta"):
        BatchAugment(mixup=-1, num_classes=3)
    with pytest.raises(VitkitError, match="mean and std"):
        BatchAugment(randaugment=True, mean=(0.5,) * 3, num_classes=3)
