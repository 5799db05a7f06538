"""Resuming with another model's ``state.pt`` says what differs (issue 29, item 3): the configuration
fields read off the saved weights and the first keys and shapes, in one line, exit 2 from the CLI."""

from __future__ import annotations

import shutil

import pytest
import torch
from trainutil import TINY, cli_error, tiny_config

from vitkit import VitkitError
from vitkit.train import train


@pytest.fixture
def swapped_state(tmp_path):
    """A run directory whose ``state.pt`` is another run's: twice as deep, 48 wide."""
    run, other = tmp_path / "run", tmp_path / "other"
    train(tiny_config(steps=2, out=str(run)), progress=False)
    train(tiny_config(steps=2, out=str(other), model_options={**TINY, "hidden_size": 48, "depth": 2}), progress=False)
    shutil.copy(other / "state.pt", run / "state.pt")
    return run


def _names_what_differs(line: str) -> None:
    assert "hidden_size 48 vs 32" in line and "depth 2 vs 1" in line, line
    assert "unexpected keys: blocks.1." in line and "cls_token (1, 1, 48) vs (1, 1, 32)" in line, line
    assert "Error(s) in loading" not in line and "\n" not in line


def test_resume_with_another_models_state_names_the_fields_keys_and_shapes(swapped_state):
    with pytest.raises(VitkitError) as refused:
        train(tiny_config(steps=4, out=str(swapped_state)), progress=False, resume=True)
    assert str(refused.value).startswith(f"{swapped_state / 'state.pt'}: the saved model's weights do not fit this "
                                         f"run's model")
    _names_what_differs(str(refused.value))


def test_the_cli_says_it_in_one_line_with_exit_2(swapped_state, capsys):
    _names_what_differs(cli_error(capsys, ["train", "--resume", str(swapped_state), "--quiet"]))


def test_a_head_of_another_size_is_named(tmp_path):
    """A saved head of 5 classes where the run's data has 10: named as num_classes, with the head's shapes."""
    run = tmp_path / "run"
    train(tiny_config(steps=2, out=str(run)), progress=False)
    state = torch.load(run / "state.pt", weights_only=True)
    for name in ("head.weight", "head.bias"):
        state["model"][name] = state["model"][name][:5].clone()
    torch.save(state, run / "state.pt")
    with pytest.raises(VitkitError, match=r"num_classes 5 vs 10 .*other shapes: head\.weight \(5, 32\) vs \(10, 32\)"):
        train(tiny_config(steps=4, out=str(run)), progress=False, resume=True)
