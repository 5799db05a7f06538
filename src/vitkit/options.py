"""Every option defined once: its kind, its allowed values and its help.

One :class:`Option` validates the same value wherever it arrives -- a command-line flag (as the
argparse ``type``), a field of a ``--config`` YAML file or of a saved run (through the dataclass
that holds it: :class:`~vitkit.train.recipes.TrainConfig`, :class:`~vitkit.models.vit.config.ViTConfig`),
and an argument of the Python API (``evaluate(batch_size=...)``). A bad value is refused before
any work starts with one line naming the option, the value and what is allowed; the
bad-option test sweep (``tests/reliability/test_reliability_options.py``) reads the same definitions, so a
new option is swept automatically.

Dataclass fields carry their option as metadata (:func:`option_field`), so a configuration's
default, type, range and help sit together on one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vitkit.errors import VitkitError


def to_pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``224`` -> ``(224, 224)``; ``(384, 256)`` stays (height, width)."""
    if isinstance(value, int):
        return (value, value)
    height, width = value
    return (int(height), int(width))


KINDS = ("int", "float", "choice", "bool", "text", "size", "pair", "ints", "int_or_ints")
#: The largest integer any count option accepts (keeps YAML typos like 1e30 out of range()).
MAX_COUNT = 2**31 - 1


@dataclass(frozen=True)
class Option:
    """The definition of one option.

    ``kind``: ``int``, ``float``, ``choice``, ``bool``, ``text`` (non-empty string), ``size``
    (``N`` or ``HxW``, positive integers), ``pair`` (two floats ``lo,hi``), ``ints`` (a
    comma-separated list of integers), ``int_or_ints`` (one integer, or a list with a comma: a
    per-stage value such as Swin's heads). ``low``/``high`` bound numbers (and every element of a
    size, pair or list); ``low_open``/``high_open`` make a bound strict; a pair's first number never
    exceeds its second, and a count with no ``high`` is at most :data:`MAX_COUNT` (rules every
    refusal states). ``nullable`` lets None
    (YAML ``null``, "use the default") through; ``off_value`` is a number that means "off" on the
    command line (``--clip 0``) and becomes None. ``many``: the command line takes one or more values
    (``--images a.png b.png``), each checked. A field that may be left unset uses :meth:`optional`,
    which keeps this definition (:attr:`definition`) and lets None through.
    """

    kind: str
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    off_value: float | None = None
    #: the command-line spelling when it is not ``--`` + the name with dashes (``--wd``)
    flag: str | None = None
    metavar: str | None = None
    many: bool = False
    #: a switch on by default whose :attr:`flag` is ``--no-...``: what giving that flag does (``help``
    #: says what the option means when true, as a YAML field or a Python argument)
    off_help: str = ""
    #: the option this one was derived from by :meth:`optional` (None: it is a definition itself)
    base: Option | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown option kind {self.kind!r}")
        if self.many and self.kind == "bool":
            raise ValueError("a switch takes no values: many=True does not apply to kind 'bool'")
        if self.kind == "bool" and (self.flag or "").startswith("--no-") and not self.off_help:
            raise ValueError(f"{self.flag} turns the option off: off_help must say what the flag does")

    @property
    def definition(self) -> Option:
        """The definition this option is (itself, or the one :meth:`optional` derived it from)."""
        return self.base or self

    def optional(self, help: str | None = None) -> Option:
        """This definition where None ("not given: use the default") is also allowed: a dataclass
        field such as :attr:`TrainConfig.image_size <vitkit.train.recipes.TrainConfig.image_size>`
        that defaults to the model's value. ``help``: this use's own words (what None means there), as
        :meth:`add_to`'s; kind, range and choices stay the definition's."""
        if self.nullable and help is None:
            return self
        words = {} if help is None else {"help": help}
        return dataclasses.replace(self, nullable=True, base=self.definition, **words)

    # ------------------------------------------------------------------ wording
    def allowed(self, value: Any = None) -> str:
        """What the option accepts, in words: ``an integer >= 1``, ``one of adamw, sgd``, ``two numbers
        lo,hi with lo <= hi, each > 0 and <= 1``. Given the refused ``value``, also the rule the short
        wording leaves out that it breaks: a count's :data:`MAX_COUNT`, a text of spaces only."""
        if self.kind == "choice":
            text = "one of " + ", ".join(self.choices)
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "text":
            text = "a non-empty string" + (" (not only spaces)" if isinstance(value, str) and value else "")
        else:
            noun = {"int": "an integer", "float": "a finite number", "size": "a size N or HxW of integers",
                    "pair": "two numbers lo,hi with lo <= hi,", "ints": "a list of integers like 1,5,10",
                    "int_or_ints": "an integer or a list of integers like 3,6,12,24"}[self.kind]
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.low_open else '>='} {_num(self.low)}")
            if self.high is not None:
                bounds.append(f"{'<' if self.high_open else '<='} {_num(self.high)}")
            elif self.kind in COUNT_KINDS and any(_is_int(v) and v > MAX_COUNT for v in _numbers(value)):
                bounds.append(f"<= {MAX_COUNT}")
            each = "each " if self.kind == "pair" and bounds else ""
            text = noun + (f" {each}" + " and ".join(bounds) if bounds else "")
        if self.off_value is not None:
            text += f" ({_num(self.off_value)} = off)"
        return text

    def describe(self) -> str:
        """The help text with the allowed values appended (what ``--help`` shows)."""
        return f"{self.help} [{self.allowed()}]" if self.help else f"[{self.allowed()}]"

    def _refuse(self, name: str, value: Any) -> VitkitError:
        return VitkitError(f"{name}: got {value!r}; allowed: {self.allowed(value)}")

    # --------------------------------------------------------------- checking
    def check(self, value: Any, name: str = "value") -> Any:
        """``value`` validated and normalised (ints stay ints, a size becomes (h, w), ``off_value``
        becomes None); a :class:`VitkitError` naming ``name`` otherwise."""
        if value is None:
            if self.nullable or self.off_value is not None:
                return None
            raise self._refuse(name, value)
        if self.off_value is not None and _is_number(value) and value == self.off_value:
            return None
        if self.many:
            if not isinstance(value, (list, tuple)) or not value:
                raise self._refuse(name, value)
            return [dataclasses.replace(self, many=False).check(item, name) for item in value]
        kind = self.kind
        if kind == "bool":
            if isinstance(value, bool):
                return value
            raise self._refuse(name, value)
        if kind == "choice":
            if isinstance(value, str) and value in self.choices:
                return value
            raise self._refuse(name, value)
        if kind == "text":
            if isinstance(value, str) and value.strip():
                return value
            raise self._refuse(name, value)
        if kind == "int":
            if not _is_int(value) or not self._in_range(value):
                raise self._refuse(name, value)
            return int(value)
        if kind == "float":
            if not _is_number(value) or not math.isfinite(value) or not self._in_range(value):
                raise self._refuse(name, value)
            return float(value)
        if kind == "size":
            parts = [value, value] if _is_int(value) else value
            if (not isinstance(parts, (list, tuple)) or len(parts) != 2
                    or not all(_is_int(p) and self._in_range(p) for p in parts)):
                raise self._refuse(name, value)
            return (int(parts[0]), int(parts[1]))
        if kind == "pair":
            if (not isinstance(value, (list, tuple)) or len(value) != 2
                    or not all(_is_number(p) and math.isfinite(p) and self._in_range(p) for p in value)):
                raise self._refuse(name, value)
            low, high = float(value[0]), float(value[1])
            if low > high:
                raise self._refuse(name, value)
            return (low, high)
        if kind == "int_or_ints" and _is_int(value):
            if not self._in_range(value):
                raise self._refuse(name, value)
            return int(value)
        # ints (and int_or_ints given a list)
        if (not isinstance(value, (list, tuple)) or not value
                or not all(_is_int(p) and self._in_range(p) for p in value)):
            raise self._refuse(name, value)
        return [int(p) for p in value]

    def _in_range(self, value: float) -> bool:
        low, high = self.low, self.high
        if self.kind in COUNT_KINDS:
            high = MAX_COUNT if high is None else high
        if low is not None and (value <= low if self.low_open else value < low):
            return False
        return high is None or (value < high if self.high_open else value <= high)

    # -------------------------------------------------------------- command line
    def parse(self, text: str) -> Any:
        """The argparse ``type``: command-line text -> checked value (one-line usage error else); with
        :attr:`many` one of the values."""
        one = dataclasses.replace(self, many=False) if self.many else self
        value = self._from_text(text)
        try:
            return one.check(value, "value")
        except VitkitError:
            raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {self.allowed(value)}") from None

    def _from_text(self, text: str) -> Any:
        kind = self.kind
        if kind in ("choice", "text"):
            return text
        if kind == "bool":
            lowered = text.strip().lower()
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(lowered, text)
        if kind in ("int", "float"):
            return _number(text, integer=kind == "int")
        if kind == "size":
            match = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+))?\s*", text)
            if not match:
                return text
            height, width = match.groups()
            return int(height) if width is None else (int(height), int(width))
        if kind == "int_or_ints" and "," not in text:
            return _number(text, integer=True)
        parts = [p for p in text.split(",") if p.strip()]
        return [_number(p, integer=kind in ("ints", "int_or_ints")) for p in parts] if parts else text

    def flag_for(self, name: str) -> str:
        """The command-line flag of this option under ``name``: :attr:`flag`, or ``--name-with-dashes``."""
        return self.flag or "--" + name.replace("_", "-")

    def add_to(self, parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, *,
               default: Any = argparse.SUPPRESS, help_default: Any = None, dest: str | None = None,
               required: bool = False, help: str | None = None) -> argparse.Action:
        """Add this option to an argparse parser as ``--name-with-dashes`` (or :attr:`flag`); returns
        the argparse action, which carries this definition as ``action.option``. A switch whose flag is
        ``--no-...`` is helped by :attr:`off_help` (what the flag does) and shows no default.

        ``default`` is argparse's (``SUPPRESS``: an option left out overrides nothing);
        ``help_default`` is the default shown in the help text; ``required``: the command needs it;
        ``help``: the command's own words for what this use of the option means (``--out``: what
        goes into the folder), in place of :attr:`help` -- kind, range and allowed values stay.
        """
        flag = self.flag_for(name)
        negated = self.kind == "bool" and flag.startswith("--no-")
        words = help if help is not None else self.off_help if negated else self.help
        shown = "" if help_default is None or negated else f" (default {help_default})"
        if self.kind == "bool":  # a switch: --name turns it on, a --no-name flag turns it off
            action = parser.add_argument(flag, dest=dest or name, default=default, help=words + shown,
                                         action="store_false" if negated else "store_true")
        else:
            text = f"{words} [{self.allowed()}]" if words else f"[{self.allowed()}]"
            action = parser.add_argument(flag, dest=dest or name, type=self.parse, default=default, help=text + shown,
                                         metavar=self.metavar or _metavar(self, name), required=required,
                                         nargs="+" if self.many else None)
        action.option = self  # what the bad-option sweep and the one-definition guard read
        return action


#: the kinds whose numbers are counts (at most :data:`MAX_COUNT` when no ``high`` is given)
COUNT_KINDS = ("int", "size", "ints", "int_or_ints")


def _numbers(value: Any) -> list:
    """The numbers in a (possibly refused) value: itself, or the items of a list or tuple."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(text: str, integer: bool) -> Any:
    """``"12"`` -> 12, ``"1e-3"`` -> 0.001; anything else is returned as it is (and then refused)."""
    text = text.strip()
    try:
        return int(text) if integer else float(text)
    except ValueError:
        return text


def _metavar(option: Option, name: str) -> str:
    if option.kind == "choice":
        return "{" + ",".join(option.choices) + "}"
    metavars = {"int": "N", "float": "X", "size": "SIZE", "pair": "LO,HI", "ints": "N,N,...", "int_or_ints": "N[,N...]"}
    return metavars.get(option.kind) or name.upper()


# ---------------------------------------------------------------------------- dataclass fields
def option_field(default: Any, option: Option, *, factory: bool = False) -> Any:
    """A dataclass field whose allowed values are ``option`` (``factory``: ``default`` is a factory)."""
    if factory:
        return dataclasses.field(default_factory=default, metadata={"option": option})
    return dataclasses.field(default=default, metadata={"option": option})


def field_options(cls_or_obj: Any) -> dict[str, Option]:
    """name -> :class:`Option` for every field of a dataclass that has one."""
    return {f.name: f.metadata["option"] for f in dataclasses.fields(cls_or_obj) if "option" in f.metadata}


def check_fields(obj: Any, prefix: str = "") -> None:
    """Validate and normalise every optioned field of a dataclass instance in place."""
    for name, opt in field_options(obj).items():
        setattr(obj, name, opt.check(getattr(obj, name), prefix + name))


def check_args(definitions: dict[str, Option], **values: Any) -> dict[str, Any]:
    """Validate keyword arguments of a Python API call against their definitions; returns them checked.

    None stands for "not given" (the function's own default applies) and passes through."""
    return {name: None if value is None else definitions[name].check(value, name) for name, value in values.items()}


def add_field_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: Any,
                      names: Iterable[str], *, defaults: dict[str, Any] | None = None,
                      helps: dict[str, str] | None = None) -> None:
    """Add the fields ``names`` of dataclass ``cls`` as command-line options (argparse SUPPRESS
    defaults: an option left out overrides nothing); ``defaults`` feeds the help texts, ``helps``
    words a field's use on this command (see :meth:`Option.add_to`)."""
    options = field_options(cls)
    shown = dict(defaults or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        default = shown.get(name, fields[name].default)
        if default is dataclasses.MISSING:
            default = None
        options[name].add_to(parser, name, help_default=_shown(default), help=(helps or {}).get(name))


def _shown(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ",".join(_num(v) if _is_number(v) else str(v) for v in value)
    return value


# ------------------------------------------------------- fields of every model family's configuration
#: with :data:`IMAGE_SIZE` and :data:`NUM_CLASSES` (the fields only some families share: :mod:`vitkit.models.fields`)
NAME = Option("text", "the variant's name")
IN_CHANNELS = Option("int", "image channels", low=1)


# ------------------------------------------------------------------ options shared by commands
#: Options of the commands that run a trained model (eval, fewshot, predict, inspect, bench ...)
#: and of the Python functions behind them.
BATCH_SIZE = Option("int", "images per forward pass", low=1)
NUM_WORKERS = Option("int", "data-loading processes", low=0, high=256)
SEED = Option("int", "random seed", low=0, high=2**32 - 1)
SEEDS = Option("int", "how many seeds to run (--seed, --seed + 1, ...): the verdicts' intervals need two or more",
               low=1, high=100)
SPLIT_SEED = Option("int", "seed of the per-class split of sources without one", low=0, high=2**32 - 1)
VAL_FRACTION = Option("float", "test share of sources without a split", low=0, high=1, low_open=True,
                      high_open=True)
DEVICE = Option("text", "auto, cpu, cuda or cuda:N", metavar="DEVICE")
DATA = Option("text", "digits, mnist5k, an ImageFolder tree, a CIFAR folder, a .npz file, hf:NAME_OR_PATH[:SPLIT] "
                      "(Hugging Face datasets) or WebDataset shards (dir/train-{000..009}.tar, a glob, a folder)",
              metavar="SRC")
IMAGE_COLUMN = Option("text", "image column of an hf: source (default: image, img, else the first Image feature)",
                      nullable=True, metavar="NAME")
SHARD_SIZE = Option("int", "samples per tar shard", low=1)
LABEL_COLUMN = Option("text", "label column of an hf: source (default: label, labels, else the first ClassLabel)",
                      nullable=True, metavar="NAME")
SPLIT = Option("choice", "which split to use", choices=("train", "test", "val", "validation"))
IMAGE_SIZE = Option("size", "input resolution N or HxW", low=1)
NUM_CLASSES = Option("int", "classes of the head (0: no head)", low=0)
TOP_K = Option("int", "classes shown per image", low=1)
SHOTS = Option("ints", "images per class", low=1)
DRAWS = Option("int", "seeded draws to average over", low=1)
HOLDOUT = Option("int", "with --l2-sweep: held-out training images per class that choose the L2 strength", low=1)
L2 = Option("float", "L2 strength of the few-shot least squares (2^10: big_vision's fixed value)", low=0, low_open=True,
            high=1e12)
L2_SWEEP = Option("bool", "choose the L2 strength from 2^-10..2^19 on --holdout held-out images per class instead")
FEATURES = Option("choice", "few-shot representation: pre_logits (the pre-logits layer's output where the model has "
                            "one, else y: big_vision's) or pooled (y of eq. 4)", choices=("pre_logits", "pooled"))
COMPONENTS = Option("int", "principal components of the filters", low=1)
MAX_SHOWN = Option("int", "images drawn in the summary figures (every image gets an overlay)", low=1)
PCA_LAYER = Option("int", "also draw feature_pca.png: the first three principal components of this layer's patch "
                          "features as colours (a ViT block, a Swin stage; -1: the last)", nullable=True,
                   metavar="N")
# linear probing (MAE's protocol) and the self-supervision miniature
PROBE_EPOCHS = Option("int", "passes over the training features", low=1, high=100_000, flag="--epochs")
PROBE_BATCH_SIZE = Option("int", "classifier batch", low=2, high=1 << 20)
PROBE_LR = Option("float", "base learning rate, times batch / 256", low=0, high=100, low_open=True, flag="--lr")
WARMUP_EPOCHS = Option("int", "linear warm-up epochs, then cosine", low=0, high=100_000)
EPOCHS = Option("int", "passes over the training set", low=1, nullable=True)
LR = Option("float", "learning rate", low=0, high=100, low_open=True, nullable=True)
THREADS = Option("int", "torch threads (default: torch's choice)", low=1, high=4096, nullable=True)
JOBS = Option("int", "training runs at once, each in a process of its own with threads / N torch threads (default: "
                     "one per CPU core on a CPU, 1 on a GPU)", low=1, high=256, nullable=True)
OUT = Option("text", "output folder", metavar="DIR")
# which weights, and how the command talks
#: the evaluation side's ``--ema``: load a run's weight average (``model_ema/``). Not TrainConfig's
#: ``ema``, the decay of the average a training run keeps (see tests/test_options_single_definition.py).
EMA = Option("bool", "with a run directory: use its weight average")
JSON = Option("bool", "print one JSON object as the last stdout line")
QUIET = Option("bool", "no progress bars or lines")
MODEL = Option("text", "a variant name (`vitkit models`), e.g. ViT-B/16 or Swin-T", metavar="NAME")
IMAGES = Option("text", "image files or folders (default: the bundled sample picture and 7 sklearn digits)",
                metavar="PATH", many=True)
# one training run: where its options come from and how long this session runs
CONFIG = Option("text", "YAML of options (a run's config.yaml repeats that run)", metavar="YAML")
RESUME = Option("text", "continue this run where it stopped", metavar="RUN_DIR")
STOP_AFTER = Option("int", "end this session after N steps with a checkpoint (continue with --resume)", low=1)
# what evaluation, prediction and bench write or add
CONFUSION = Option("text", "where to write the confusion matrix (default ./confusion_matrix.png; 'none': skip)",
                   metavar="PNG")
GUARD = Option("bool", "with a fast path: also evaluate the plain fp32 model and print both accuracies")
ATTENTION = Option("text", "also save each image's attention-rollout overlay (Fig. 6) as DIR/<name>.png",
                   metavar="DIR")
ROWS = Option("text", "inference rows, comma-separated: fast paths (fp32, int8, compile, mergeR, joined with +, "
                      "e.g. int8+merge8) and runtimes (transformers, ...); fp32 is always included")
COMPARE = Option("text", "add a peer row: transformers", metavar="PEER")
GUARD_IMAGES = Option("int", "use N images of --guard-data, spread evenly over it", low=1)
MARKDOWN = Option("bool", "also print the results as a Markdown table")
# vitkit serve
HOST = Option("text", "address to listen on (default: this machine only; 0.0.0.0 for every interface)")
PORT = Option("int", "TCP port (0: any free one, printed)", low=0, high=65535)
MAX_UPLOAD_MB = Option("float", "largest upload accepted, in MiB (larger ones get HTTP 413)", low=0, low_open=True,
                       high=4096)
MAX_CONCURRENT = Option("int", "forward passes run at once, however many clients call (the others wait)", low=1,
                        high=64)

COMMAND_OPTIONS: dict[str, Option] = {
    "batch_size": BATCH_SIZE, "num_workers": NUM_WORKERS, "seed": SEED, "seeds": SEEDS, "split_seed": SPLIT_SEED,
    "val_fraction": VAL_FRACTION, "device": DEVICE, "data": DATA, "split": SPLIT,
    "image_column": IMAGE_COLUMN, "label_column": LABEL_COLUMN, "shard_size": SHARD_SIZE, "image_size": IMAGE_SIZE,
    "num_classes": NUM_CLASSES, "top_k": TOP_K, "shots": SHOTS, "draws": DRAWS, "holdout": HOLDOUT,
    "l2": L2, "l2_sweep": L2_SWEEP, "features": FEATURES,
    "components": COMPONENTS, "max_shown": MAX_SHOWN, "pca_layer": PCA_LAYER,
    "probe_epochs": PROBE_EPOCHS, "probe_batch_size": PROBE_BATCH_SIZE, "probe_lr": PROBE_LR,
    "warmup_epochs": WARMUP_EPOCHS, "epochs": EPOCHS, "finetune_epochs": EPOCHS, "supervised_lr": LR,
    "mpp_lr": LR, "mae_lr": LR, "threads": THREADS, "jobs": JOBS, "out": OUT,
    "ema": EMA, "json": JSON, "quiet": QUIET, "model": MODEL, "images": IMAGES,
    "config": CONFIG, "resume": RESUME, "stop_after": STOP_AFTER,
    "confusion": CONFUSION, "guard": GUARD, "attention": ATTENTION, "rows": ROWS, "compare": COMPARE,
    "guard_data": DATA, "guard_images": GUARD_IMAGES, "markdown": MARKDOWN,
    "host": HOST, "port": PORT, "max_upload_mb": MAX_UPLOAD_MB, "max_concurrent": MAX_CONCURRENT,
    "pretrain_data": DATA, "transfer_data": DATA,
}


def add_command_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, defaults: dict[str, Any],
                        names: Sequence[str] | None = None) -> None:
    """Add shared command options with real defaults (not SUPPRESS): ``defaults`` name -> value."""
    for name in names or list(defaults):
        default = defaults[name]
        COMMAND_OPTIONS[name].add_to(parser, name, default=default, help_default=_shown(default))


def add_switches(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *names: str) -> None:
    """Add shared switches (bool options of :data:`COMMAND_OPTIONS`), off unless given."""
    for name in names:
        COMMAND_OPTIONS[name].add_to(parser, name, default=False)
