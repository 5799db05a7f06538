"""Every option's words agree with what it does (issue 29, item 4): each ``--no-...`` flag's help describes
that flag, not the option it turns off, and every refusal states the rule the value breaks -- a pair's
lo <= hi, a count's upper limit, a text's "not only spaces" -- so no value that satisfies the message
is refused. Read from every command's parser, so a new flag is covered."""

from __future__ import annotations

import argparse

import pytest

from vitkit.cli.main import build_parser
from vitkit.errors import VitkitError
from vitkit.options import COUNT_KINDS, MAX_COUNT, Option


def flags() -> list[tuple[str, argparse.Action]]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return [(command, action) for command, parser in sub.choices.items() for action in parser._actions
            if isinstance(getattr(action, "option", None), Option)]


NEGATED = [(command, action) for command, action in flags() if action.option_strings[0].startswith("--no-")]


def test_there_are_negated_flags_to_check():
    assert {("train", "--no-flip"), ("train", "--no-norm-pix-loss"), ("convert", "--no-verify")} <= {
        (command, action.option_strings[0]) for command, action in NEGATED}


@pytest.mark.parametrize("command, action", NEGATED, ids=[f"{c} {a.option_strings[0]}" for c, a in NEGATED])
def test_a_negated_flag_says_what_giving_it_does(command, action):
    option = action.option
    assert isinstance(action, argparse._StoreFalseAction)  # giving it turns the option off
    assert action.help and option.help and action.help != option.help, (command, action.help)
    assert not action.help.startswith(option.help)  # not the on-meaning with a default appended
    assert "(default" not in action.help  # "default True" reads as if the flag were on by default


def test_a_negated_flag_must_be_given_its_own_words():
    with pytest.raises(ValueError, match="off_help"):
        Option("bool", "horizontal flips", flag="--no-flip")


def _inside(option: Option) -> tuple[float, float]:
    """Two numbers inside the option's range, the larger first."""
    low = 0.0 if option.low is None else option.low
    high = low + 2 if option.high is None else option.high
    return low + 0.75 * (high - low), low + 0.25 * (high - low)


PAIRS = [(command, action) for command, action in flags() if action.option.kind == "pair"]
COUNTS = [(command, action) for command, action in flags()
          if action.option.kind in COUNT_KINDS and action.option.high is None]


def test_the_rules_are_checked_on_some_flags():
    assert ("train", "--crop-scale") in {(c, a.option_strings[0]) for c, a in PAIRS}
    assert ("train", "--batch-size") in {(c, a.option_strings[0]) for c, a in COUNTS}


@pytest.mark.parametrize("command, action", PAIRS, ids=[f"{c} {a.option_strings[0]}" for c, a in PAIRS])
def test_a_pair_whose_first_number_exceeds_the_second_is_refused_by_the_rule_it_breaks(command, action):
    text = ",".join(f"{v:g}" for v in _inside(action.option))
    with pytest.raises(argparse.ArgumentTypeError, match="lo <= hi"):
        action.type(text)
    with pytest.raises(VitkitError, match="lo <= hi"):
        action.option.check(list(_inside(action.option)), action.dest)
    assert "lo <= hi" in action.help  # and --help says it before anyone is refused


@pytest.mark.parametrize("command, action", COUNTS, ids=[f"{c} {a.option_strings[0]}" for c, a in COUNTS])
def test_a_count_above_the_limit_is_refused_naming_the_limit(command, action):
    with pytest.raises(argparse.ArgumentTypeError, match=f"<= {MAX_COUNT}"):
        action.type(str(MAX_COUNT + 1))


def test_a_text_of_spaces_is_refused_as_such():
    with pytest.raises(VitkitError, match=r"a non-empty string \(not only spaces\)"):
        Option("text").check("   ", "out")
