"""Classification metrics (top-1, top-5, per class, confusion matrix) and the label checks of `vitkit eval`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from trainutil import tiny_checkpoint

from vitkit import VitkitError, create_model, load_model
from vitkit.data.sources import open_source
from vitkit.evaluate.metrics import check_labels, classification_metrics, evaluate, save_confusion_matrix


def test_metrics_of_hand_made_logits():
    names = ["a", "b", "c", "d", "e", "f"]
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    logits = torch.full((6, 6), -10.0)
    # ranks of the true class: 1st, 2nd, 1st, 1st, 7th would be impossible -> 6th, 3rd
    order = [[0, 1, 2, 3, 4, 5], [1, 0, 2, 3, 4, 5], [1, 0, 2, 3, 4, 5], [2, 0, 1, 3, 4, 5],
             [0, 1, 3, 4, 5, 2], [0, 2, 1, 3, 4, 5]]
    for i, ranking in enumerate(order):
        for rank, cls in enumerate(ranking):
            logits[i, cls] = 10.0 - rank
    result = classification_metrics(logits, labels, names)
    assert result.top1 == pytest.approx(3 / 6)  # rows 0, 2, 3
    assert result.top5 == pytest.approx(5 / 6)  # all but row 4 (true class ranked 6th)
    assert result.per_class == {"a": 0.5, "b": 1.0, "c": pytest.approx(1 / 3), "d": None, "e": None, "f": None}
    expected = np.zeros((6, 6), dtype=int)
    for true, pred in zip(labels.tolist(), [0, 1, 1, 2, 0, 0], strict=True):
        expected[true, pred] += 1
    np.testing.assert_array_equal(result.confusion, expected)
    assert result.loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)))


def test_top5_of_fewer_than_five_classes_is_top_k():
    result = classification_metrics(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([0, 0]), ["x", "y"])
    assert result.top1 == 0.5 and result.top5 == 1.0 and result.topk == 2


def test_checkpoint_classes_must_match_the_data():
    model = create_model("ViT-Ti/16", image_size=16, patch_size=4, depth=1, num_classes=3)
    model.label_names = ["cat", "dog", "fox"]
    check_labels(model, ["cat", "dog", "fox"])
    with pytest.raises(VitkitError, match="data has 1 class\\(es\\) the checkpoint lacks \\(owl\\)"):
        check_labels(model, ["cat", "dog", "owl"])
    with pytest.raises(VitkitError, match="same names in another order"):
        check_labels(model, ["dog", "cat", "fox"])
    model.label_names = None
    with pytest.raises(VitkitError, match="predicts 3 classes but the data has 10"):
        check_labels(model, [str(d) for d in range(10)])


def test_evaluate_a_trained_checkpoint_and_draw_its_confusion_matrix(tmp_path):
    model = load_model(tiny_checkpoint() / "model")
    test = open_source("digits", "test")
    result = evaluate(model, test, batch_size=100)
    assert result.num_images == len(test) == 359 and result.skipped == 0
    assert result.confusion.sum() == 359 and np.trace(result.confusion) == round(result.top1 * 359)
    # 40 steps of a tiny model: learned (twice chance on 10 classes), not converged (about 30%)
    assert result.top1 > 0.2 and result.top5 >= result.top1
    path = save_confusion_matrix(result, tmp_path / "cm.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 200
