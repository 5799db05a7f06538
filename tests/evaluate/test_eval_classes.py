"""The data's classes matched to the checkpoint's by name (issue 29, item 5): all of them, some of them,
another order; a class the checkpoint does not know is refused in one line."""

from __future__ import annotations

import pytest
import torch

from vitkit import create_model
from vitkit.errors import VitkitError
from vitkit.evaluate import class_map
from vitkit.evaluate.metrics import classification_metrics


@pytest.fixture
def model():
    model = create_model("ViT-Ti/16", image_size=16, patch_size=4, depth=1, num_classes=4)
    model.label_names = ["cat", "dog", "fox", "owl"]
    return model


def test_some_of_the_classes_are_mapped_by_name_and_said(model):
    mapping = class_map(model, ["dog", "owl"])
    assert mapping.indices == (1, 3) and not mapping.whole
    assert mapping.describe() == "evaluated on 2 of the checkpoint's 4 classes: dog, owl"
    # images of dog, owl, owl; the model predicts dog, cat (a class the data lacks: wrong), owl
    logits = torch.tensor([[0.0, 9.0, 0.0, 0.0], [9.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 9.0]])
    result = mapping.metrics(logits, torch.tensor([0, 1, 1]))
    assert result.top1 == pytest.approx(2 / 3) and result.per_class == {"dog": 1.0, "owl": 0.5}
    assert result.label_names == ["dog", "owl", "cat"]  # the classes present, then the other classes predicted
    assert result.confusion.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    assert result.to_dict()["classes"] == {"evaluated": ["dog", "owl"], "checkpoint": 4}
    whole = classification_metrics(logits, torch.tensor([1, 3, 3]), ["cat", "dog", "fox", "owl"])
    assert (whole.top1, whole.top5, whole.loss) == (result.top1, result.top5, result.loss)


def test_all_the_classes_in_another_order_are_mapped_too(model):
    mapping = class_map(model, ["owl", "fox", "dog", "cat"])
    assert mapping.describe() is None and not mapping.whole
    result = mapping.metrics(torch.eye(4), torch.tensor([3, 2, 1, 0]))  # image i is checkpoint class i
    assert result.top1 == 1.0 and list(result.per_class) == ["cat", "dog", "fox", "owl"]
    assert "classes" not in result.to_dict()
    assert class_map(model, ["cat", "dog", "fox", "owl"]).whole


def test_a_class_the_checkpoint_does_not_know_is_refused(model):
    with pytest.raises(VitkitError, match=r"data has 1 class\(es\) the checkpoint lacks \(emu\); it knows cat, dog, "
                                          r"fox, owl$"):
        class_map(model, ["dog", "emu"])
    model.label_names = None  # nothing to match by: the counts must agree
    assert class_map(model, ["a", "b", "c", "d"]).whole
    with pytest.raises(VitkitError, match="predicts 4 classes but the data has 2 .*no class names"):
        class_map(model, ["dog", "owl"])
