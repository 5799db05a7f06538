"""The letters data set (vitkit.data.letters): split by font, deterministic, readable as an ImageFolder."""

from __future__ import annotations

import pytest

from vitkit.data.letters import LettersSpec, font_split, installed_fonts, write_letters
from vitkit.data.sources import open_source
from vitkit.errors import VitkitError

SMALL = LettersSpec(classes="ABC", train_per_font=1, test_per_font=1, size=16)


def test_split_by_font_and_readable(tmp_path):
    fonts = installed_fonts()
    if len(fonts) < 2:
        pytest.skip("needs two installed fonts")
    summary = write_letters(tmp_path / "letters", SMALL, fonts=fonts[:5])
    assert not set(summary["train_fonts"]) & set(summary["test_fonts"])
    assert summary["test_fonts"] == [fonts[1].name] and summary["train"] == 4 * 3 and summary["test"] == 3
    train = open_source(str(tmp_path / "letters"), "train")
    assert train.label_names == ["A", "B", "C"] and len(train) == 12
    image, _ = train[0]
    assert image.size == (16, 16)


def test_deterministic(tmp_path):
    fonts = installed_fonts()[:3]
    if len(fonts) < 2:
        pytest.skip("needs two installed fonts")
    for name in ("a", "b"):
        write_letters(tmp_path / name, SMALL, fonts=fonts)
    first, second = (sorted((p.relative_to(tmp_path / n), p.read_bytes()) for p in (tmp_path / n).rglob("*.png"))
                     for n in ("a", "b"))
    assert first == second


def test_split_rule():
    fonts = [f"f{i}" for i in range(9)]
    train, test = font_split(fonts, 4)
    assert test == ["f1", "f5"] and len(train) == 7


def test_no_fonts_is_one_line(tmp_path):
    with pytest.raises(VitkitError, match="at least 2 installed fonts"):
        write_letters(tmp_path / "x", SMALL, fonts=[])


def test_the_letters_draw_from_the_dejavu_family_when_it_is_installed(monkeypatch, tmp_path):
    """Installing other fonts (a browser brings Liberation) must not change the data set."""
    import vitkit.data.letters as letters

    names = ["DejaVuSans.ttf", "LiberationSans-Regular.ttf", "DejaVuSerif.ttf", "Other.otf"]
    monkeypatch.setattr(letters, "installed_fonts", lambda: [tmp_path / n for n in names])
    assert [f.name for f in letters.letter_fonts()] == ["DejaVuSans.ttf", "DejaVuSerif.ttf"]
    assert len(letters.letter_fonts(LettersSpec(family=""))) == 4
    monkeypatch.setattr(letters, "installed_fonts", lambda: [tmp_path / n for n in names[1::2]])
    assert len(letters.letter_fonts()) == 2  # no DejaVu: every installed font
