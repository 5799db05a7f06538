"""``vitkit knn`` (issue 27, item 4): DINO's k-NN classifier on frozen, L2-normalised features, checked
against a hand computation; any family as the frozen extractor (DINOv2 here, through fewshot and linprobe
too); bad input is one line and exit 2."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from clirun import run_fails, run_ok
from formats_testing import randomised

import vitkit
from vitkit import VitkitError
from vitkit.data.sources import open_source
from vitkit.evaluate.knn import knn_evaluate, knn_scores


def test_the_votes_are_a_hand_computation():
    # three training images in 2-D, two classes; one test image along the x axis
    train_x = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])  # normalised: (1, 0), (.707, .707), (0, 1)
    train_y = torch.tensor([0, 1, 1])
    test_x = torch.tensor([[5.0, 0.0]])
    scores = knn_scores(train_x, train_y, test_x, 2, k=2, temperature=0.5)
    # the two nearest: image 0 (similarity 1) for class 0, image 1 (similarity 1/sqrt 2) for class 1
    expected = torch.tensor([[math.exp(1 / 0.5), math.exp((1 / math.sqrt(2)) / 0.5)]], dtype=torch.float64)
    torch.testing.assert_close(scores, expected)
    everyone = knn_scores(train_x, train_y, test_x, 2, k=3, temperature=0.5)  # image 2 (similarity 0) joins class 1
    torch.testing.assert_close(everyone, expected + torch.tensor([[0.0, math.exp(0.0)]], dtype=torch.float64))
    with pytest.raises(VitkitError, match="k=4 neighbours, but there are only 3 training images"):
        knn_scores(train_x, train_y, test_x, 2, k=4)


def tiny_dinov2(tmp_path):
    model = randomised(vitkit.create_model("DINOv2-S/14-reg", image_size=28, depth=1, hidden_size=32, num_heads=2,
                                           mlp_dim=64), std=0.1)
    vitkit.save_native(model, tmp_path / "dinov2")
    return model, tmp_path / "dinov2"


def small_npz(tmp_path, per_class: int = 12):
    """A 3-class set of the bundled digits (``per_class`` images each, train and test the same images)."""
    test = open_source("digits", "test")
    labels = np.asarray(test.labels())
    chosen = np.concatenate([np.flatnonzero(labels == digit)[:per_class] for digit in (0, 1, 7)])
    images = np.stack([np.asarray(test.load(int(i))[0]) for i in chosen])
    names = labels[chosen].astype(str)
    np.savez(tmp_path / "digits.npz", x_train=images, y_train=names, x_test=images, y_test=names)
    return tmp_path / "digits.npz"


def test_knn_on_a_frozen_dinov2_is_dinos_classifier_on_its_class_token(tmp_path, capsys):
    model, checkpoint = tiny_dinov2(tmp_path)
    data = small_npz(tmp_path)
    result = run_ok(capsys, ["knn", str(checkpoint), "--data", str(data), "--k", "5", "--temperature", "0.1"])
    assert (result["k"], result["temperature"], result["train_images"], result["test_images"]) == (5, 0.1, 36, 36)
    assert result["top5"] is None  # three classes: no top-5
    # by hand: the [class] tokens of the same images through the checkpoint's evaluation transform
    from vitkit.evaluate.fewshot import extract_features

    source = open_source(str(data), "train")
    feats, labels, _ = extract_features(vitkit.load_model(checkpoint), source, features="pooled")
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    similarity = unit @ unit.T
    hits = 0
    for i in range(len(unit)):
        nearest = np.argsort(-similarity[i])[:5]
        votes = np.zeros(3)
        np.add.at(votes, labels[nearest], np.exp(similarity[i, nearest] / 0.1))
        hits += int(np.argmax(votes) == labels[i])
    assert result["top1"] == pytest.approx(hits / len(unit))
    library = knn_evaluate(vitkit.load_model(checkpoint), source, open_source(str(data), "test"), k=5, temperature=0.1)
    assert library.top1 == result["top1"]


def test_fewshot_and_linprobe_take_a_dinov2_as_a_frozen_extractor(tmp_path, capsys):
    _, checkpoint = tiny_dinov2(tmp_path)
    data = small_npz(tmp_path)
    few = run_ok(capsys, ["fewshot", str(checkpoint), "--data", str(data), "--shots", "1,5", "--draws", "2"])
    assert [r["shots"] for r in few["results"]] == [1, 5] and all(0 <= r["mean"] <= 1 for r in few["results"])
    probe = run_ok(capsys, ["linprobe", str(checkpoint), "--data", str(data), "--epochs", "3",
                            "--warmup-epochs", "1"])
    assert probe["train_images"] == 36 and 0 <= probe["top1"] <= 1


def test_knn_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    _, checkpoint = tiny_dinov2(tmp_path)
    data = small_npz(tmp_path, per_class=2)
    for flag, value, words in (("--k", "0", "--k"), ("--k", "two", "--k"), ("--temperature", "0", "--temperature"),
                               ("--temperature", "-1", "--temperature")):
        line = run_fails(capsys, ["knn", str(checkpoint), "--data", str(data), flag, value])
        assert words in line, line
    line = run_fails(capsys, ["knn", str(checkpoint), "--data", str(data)])  # 6 training images, k 20
    assert "k=20 neighbours, but the training split has only 6 images: choose --k at most 6" in line
    line = run_fails(capsys, ["knn", str(tmp_path / "nowhere"), "--data", str(data), "--k", "3"])
    assert "nowhere" in line
