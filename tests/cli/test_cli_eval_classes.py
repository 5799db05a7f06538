"""``vitkit eval`` on a source holding some of the checkpoint's classes (issue 29, item 5): the classes are
matched by name and the output says which; a class the checkpoint does not know is one line, exit 2; few-shot
fits its own classifier, so its classes need not be the checkpoint's at all."""

from __future__ import annotations

import numpy as np
import pytest
from clirun import run_fails, run_ok
from trainutil import tiny_checkpoint

from vitkit import load_model
from vitkit.data.sources import open_source
from vitkit.evaluate import evaluate


def digits_npz(path, digits: dict[int, str]):
    """The bundled digits' test images of ``digits`` (digit -> the class name it gets) as one .npz source."""
    test = open_source("digits", "test")
    chosen = [i for i, label in enumerate(test.labels()) if label in digits]
    images = np.stack([np.asarray(test.load(i)[0]) for i in chosen])
    names = np.array([digits[test.labels()[i]] for i in chosen])
    np.savez(path, x_train=images, y_train=names, x_test=images, y_test=names)
    return path


def test_eval_on_two_of_the_ten_classes_maps_them_by_name(tmp_path, capsys):
    run = tiny_checkpoint()
    data = digits_npz(tmp_path / "three-seven.npz", {3: "3", 7: "7"})
    full = evaluate(load_model(run / "model"), open_source("digits", "test"))
    subset = run_ok(capsys, ["eval", str(run), "--data", str(data), "--confusion", str(tmp_path / "cm.png")])
    assert subset["classes"] == {"evaluated": ["3", "7"], "checkpoint": 10}
    assert subset["per_class"] == pytest.approx({name: full.per_class[name] for name in ("3", "7")})
    counts = full.confusion.sum(axis=1)[[3, 7]]  # images of 3 and 7: the same images, the same predictions
    assert subset["images"] == counts.sum()
    correct = sum(full.per_class[name] * count for name, count in zip("37", counts, strict=True))
    assert subset["top1"] == pytest.approx(correct / counts.sum())
    assert (tmp_path / "cm.png").stat().st_size > 1000
    from vitkit.cli.main import main

    main(["eval", str(run), "--data", str(data), "--confusion", "none"])
    assert "evaluated on 2 of the checkpoint's 10 classes: 3, 7" in capsys.readouterr().out


def test_eval_refuses_a_class_the_checkpoint_does_not_know(tmp_path, capsys):
    data = digits_npz(tmp_path / "owl.npz", {3: "3", 7: "owl"})
    line = run_fails(capsys, ["eval", str(tiny_checkpoint()), "--data", str(data), "--confusion",
                              str(tmp_path / "cm.png")])
    assert "data has 1 class(es) the checkpoint lacks (owl); it knows 0, 1, 2" in line
    assert not (tmp_path / "cm.png").exists()


def test_fewshot_fits_its_own_classes_whatever_their_names(tmp_path, capsys):
    data = digits_npz(tmp_path / "named.npz", {3: "three", 7: "seven"})  # names the checkpoint never saw
    few = run_ok(capsys, ["fewshot", str(tiny_checkpoint()), "--data", str(data), "--shots", "1,5", "--draws", "2"])
    assert [r["shots"] for r in few["results"]] == [1, 5] and all(0 <= r["mean"] <= 1 for r in few["results"])
