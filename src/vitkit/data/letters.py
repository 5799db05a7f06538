"""A small data set a new user might bring: capital letters rendered in the machine's fonts.

It stands for "my own few thousand small images in an ImageFolder": 10 classes (A-J), 32x32
grayscale PNGs, each glyph drawn at a random size, offset and slant. The test split holds fonts
the training split never saw (every ``test_every``-th font by file name), so a model must learn the
letters' shapes rather than one typeface's pixels. Used by the accuracy ledger
(``benchmarks/accuracy_ledger.py``), the small-data benchmark (``benchmarks/small_data_variants.py``)
and the tests; nothing is downloaded: the fonts are those installed (DejaVu on Debian).

PIL draws the glyphs (FreeType through ``ImageFont.truetype``); no library ships such a set.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from vitkit.errors import VitkitError

#: Where Debian, Ubuntu and most Linux distributions keep TrueType/OpenType fonts.
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")
CLASSES = "ABCDEFGHIJ"


def installed_fonts(dirs: tuple[str, ...] = FONT_DIRS) -> list[Path]:
    """Every .ttf/.otf file under ``dirs``, sorted by file name (the split's order)."""
    found = {p for d in dirs if Path(d).is_dir() for p in Path(d).rglob("*") if p.suffix.lower() in (".ttf", ".otf")}
    return sorted(found, key=lambda p: (p.name, str(p)))


@dataclass(frozen=True)
class LettersSpec:
    """What :func:`write_letters` draws. The defaults make about 3,400 training and 1,200 test
    images from Debian's 22 DejaVu fonts (16 for training, 6 for test)."""

    size: int = 32
    classes: str = CLASSES
    train_per_font: int = 21
    test_per_font: int = 20
    #: every n-th font (in :func:`installed_fonts` order, starting at the second) goes to the test split
    test_every: int = 4
    seed: int = 0
    #: draw from the installed fonts whose file names start with this (Debian's default DejaVu family), so
    #: that installing other fonts (a browser brings Liberation) does not change the data set; every
    #: installed font when none matches, or with ``""``
    family: str = "DejaVu"


def _glyph(font_path: Path, letter: str, size: int, rng: random.Random):
    """One letter at a random height (45-80% of the image), offset (within the image) and rotation
    (+-12 degrees), white on black."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = 4 * size  # draw large, then downsample with antialiasing
    font = ImageFont.truetype(str(font_path), size=int(canvas * rng.uniform(0.45, 0.8)))
    glyph = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(glyph)
    left, top, right, bottom = draw.textbbox((0, 0), letter, font=font)
    w, h = right - left, bottom - top
    x = rng.uniform(0, max(canvas - w, 0)) - left
    y = rng.uniform(0, max(canvas - h, 0)) - top
    draw.text((x, y), letter, fill=255, font=font)
    glyph = glyph.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR)
    return glyph.resize((size, size), Image.LANCZOS)


def letter_fonts(spec: LettersSpec = LettersSpec()) -> list[Path]:
    """The installed fonts ``spec`` draws from: those of its ``family``, or every one when none is of it."""
    fonts = installed_fonts()
    return [f for f in fonts if f.name.startswith(spec.family)] or fonts


def font_split(fonts: list[Path], test_every: int) -> tuple[list[Path], list[Path]]:
    """(training fonts, test fonts): every ``test_every``-th font from the second on is a test font."""
    test = fonts[1::test_every]
    return [f for f in fonts if f not in test], test


def write_letters(out: str | Path, spec: LettersSpec = LettersSpec(), fonts: list[Path] | None = None) -> dict:
    """Write ``out/train/<letter>/*.png`` and ``out/test/<letter>/*.png`` and return a summary
    (image counts and the fonts of each split). Deterministic for a given spec and font list; a
    folder already holding the same summary is reused."""
    import json

    fonts = letter_fonts(spec) if fonts is None else fonts
    if len(fonts) < 2:
        raise VitkitError(f"the letters data set needs at least 2 installed fonts (found {len(fonts)} under "
                          f"{', '.join(FONT_DIRS)}); install some, e.g. apt-get install fonts-dejavu-core")
    train_fonts, test_fonts = font_split(fonts, max(2, spec.test_every))
    out = Path(out)
    summary = {"spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
               "train_fonts": [f.name for f in train_fonts], "test_fonts": [f.name for f in test_fonts],
               "train": len(train_fonts) * len(spec.classes) * spec.train_per_font,
               "test": len(test_fonts) * len(spec.classes) * spec.test_per_font}
    stamp = out / "letters.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == summary:
        return summary
    rng = random.Random(spec.seed)
    for split, split_fonts, per_font in (("train", train_fonts, spec.train_per_font),
                                         ("test", test_fonts, spec.test_per_font)):
        for letter in spec.classes:
            folder = out / split / letter
            folder.mkdir(parents=True, exist_ok=True)
            for font in split_fonts:
                for i in range(per_font):
                    _glyph(font, letter, spec.size, rng).save(folder / f"{font.stem}-{i:03d}.png")
    stamp.write_text(json.dumps(summary, indent=1))
    return summary
