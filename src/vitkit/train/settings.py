"""One run's options from their sources, in one order: what ``vitkit train`` / ``vitkit finetune`` do,
callable from Python.

The order (each later source overrides the earlier ones, key by key; ``model_options`` and
``objective_options`` merge key by key too):

1. the recipe's defaults (:func:`~vitkit.train.recipes.recipe_defaults`; a pre-training objective
   brings its own),
2. a named preset (:data:`~vitkit.train.recipes.PRESETS`, ``--recipe small-data``),
3. a YAML file of options (``--config FILE``; its ``out`` is dropped: a run's directory is where it is
   written, not part of what it is), or with ``resume`` the run's own ``config.yaml`` (and the run's
   directory as ``out``),
4. the options given (the command line's flags).

Options that override one another (:data:`~vitkit.train.recipes.CONFLICTS`: ``steps`` and ``epochs``) are
refused when one source holds both -- the options given, or one YAML file; a later source's one replaces an
earlier source's other (``--steps 300`` on top of the preset's ``epochs``). A resumed run continues with the
optimiser state and random streams it saved, so ``resume`` refuses ``config_file`` and ``preset`` (the run's
own ``config.yaml`` is its configuration) and a new value of an option that state holds
(:data:`RESTORED_ON_RESUME`), which would be ignored.

    >>> from vitkit.train.settings import resolve_training_config
    >>> config = resolve_training_config("finetune", {"checkpoint": "runs/pre/model", "data": "digits",
    ...                                               "image_size": (48, 32), "steps": 20},
    ...                                  preset="small-data")
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from vitkit.errors import VitkitError
from vitkit.options import field_options
from vitkit.train.recipes import (
    CONFLICTS,
    RECIPE_COMMANDS,
    TrainConfig,
    check_conflicts,
    finetune_model_options,
    preset_options,
    recipe_defaults,
)
from vitkit.train.recipes import model_options as architecture_option_names

#: option name -> (objective, key of its options): the options of ``objective="mpp"`` / ``"mae"`` as the
#: command line spells them (``--mask-ratio``, ``--mpp-target`` ...).
OBJECTIVE_FLAGS = {"mask_ratio": ("mae", "mask_ratio"), "norm_pix_loss": ("mae", "norm_pix_loss"),
                   "decoder_hidden_size": ("mae", "decoder_hidden_size"), "decoder_depth": ("mae", "decoder_depth"),
                   "decoder_num_heads": ("mae", "decoder_num_heads"), "decoder_mlp_dim": ("mae", "decoder_mlp_dim"),
                   "mpp_target": ("mpp", "target"), "corrupt_ratio": ("mpp", "corrupt_ratio")}
#: Options whose values a resumed run takes from its ``state.pt`` (the optimiser's hyper-parameters and
#: learning rates, the random streams), not from its configuration: a new value on resume would be ignored.
RESTORED_ON_RESUME = ("optimizer", "lr", "lr_base_batch", "weight_decay", "betas", "momentum", "layer_decay", "seed")


def resolve_training_config(recipe: str, options: dict[str, Any] | None = None, *, preset: str | None = None,
                            config_file: str | os.PathLike | None = None,
                            resume: str | os.PathLike | None = None) -> TrainConfig:
    """The :class:`~vitkit.train.recipes.TrainConfig` of ``recipe`` (``"pretrain"`` or ``"finetune"``) from
    its sources in the order of the module notes.

    ``options``: TrainConfig fields, plus architecture options by name (``patch_size``, ``depth`` ...:
    :func:`~vitkit.train.recipes.model_options`; fine-tuning takes ``window_size`` only, its ``drop_path``
    is a field of its own) and objective options by their flag names (:data:`OBJECTIVE_FLAGS`).
    ``config_file``: a YAML file of options; ``resume``: a run directory, whose ``config.yaml`` is read and
    which stays the run's ``out``. Every value is checked against its definition; a
    :class:`~vitkit.errors.VitkitError` names the first bad one (and the file it came from).
    """
    given = dict(options or {})
    check_conflicts(given, flag_of)
    loaded: dict[str, Any] = {}
    if resume is not None:
        for name, value in (("--config", config_file), ("--recipe", preset)):
            if value is not None:
                raise VitkitError(f"--resume {resume} continues that run with its own config.yaml: {name} {value} "
                                  f"would be ignored (to start a new run from it: --config {resume}/config.yaml)")
        check_resume(resume, given.get("out"))
        loaded = {**read_options(resume), "out": str(resume)}
        check_unchanged_on_resume(resume, loaded, given)
    elif config_file is not None:
        loaded = read_options(config_file)
        loaded.pop("out", None)  # a run's directory is where it is written, not part of what it is
    objective = given.get("objective", loaded.get("objective", "supervised"))
    merged: dict[str, Any] = recipe_defaults(recipe, objective) if recipe == "pretrain" else recipe_defaults(recipe)
    preset = preset if preset is not None else loaded.get("preset")  # a YAML file may name the preset too
    chosen = preset_options(preset, recipe, **model_at_hand(merged, loaded, given))  # after the recipe, before
    # YAML and options; what it picks for the model follows the model, size and architecture options named
    loaded["model_options"] = {**chosen.pop("model_options", {}), **(loaded.get("model_options") or {})}
    overlay(merged, chosen)
    overlay(merged, loaded)
    if merged.get("recipe", recipe) != recipe:
        command = RECIPE_COMMANDS.get(merged["recipe"], "train")
        raise VitkitError(f"that configuration is a {merged['recipe']} run; use `vitkit {command}`")
    model_options = {**(merged.get("model_options") or {}), **(given.pop("model_options", None) or {})}
    objective_options = {**(merged.get("objective_options") or {}), **(given.pop("objective_options", None) or {})}
    own: dict[str, Any] = {}
    architecture, finetune = architecture_option_names(), finetune_model_options()
    for name, value in given.items():
        if name in architecture and (recipe == "pretrain" or name in finetune):
            # (fine-tuning's drop_path is a TrainConfig field of its own)
            model_options[name] = value
        elif name in OBJECTIVE_FLAGS:
            objective_options[OBJECTIVE_FLAGS[name][1]] = value
        else:
            own[name] = value
    overlay(merged, own)
    if preset is not None:
        merged["preset"] = preset
    merged["model_options"] = model_options
    merged["objective_options"] = objective_options
    if not merged.get("out"):
        merged["out"] = default_run_dir(recipe)
    if "data" not in merged:
        raise VitkitError("--data is required (digits, mnist5k, a folder or a .npz)")
    if merged.get("model"):
        from vitkit.models.registry import resolve_name

        merged["model"] = resolve_name(merged["model"])
    return TrainConfig.from_dict(merged)


def model_at_hand(*sources: dict[str, Any]) -> dict[str, Any]:
    """The model, image size and architecture options the sources name (later ones win), for a preset's picks."""
    from vitkit.options import to_pair

    named: dict[str, Any] = {"model": TrainConfig.__dataclass_fields__["model"].default, "image_size": None,
                             "model_options": {}}
    architecture = architecture_option_names()
    for source in sources:
        named["model"] = source.get("model") or named["model"]
        named["image_size"] = source.get("image_size") or named["image_size"]
        named["model_options"].update(source.get("model_options") or {})
        named["model_options"].update({k: v for k, v in source.items() if k in architecture})
    try:
        named["image_size"] = to_pair(named["image_size"]) if named["image_size"] is not None else None
    except (TypeError, ValueError):
        named["image_size"] = None  # a bad size: refused with its own message when the options are checked
    return named


def overlay(merged: dict[str, Any], values: dict[str, Any]) -> None:
    """``values`` (a later source) over ``merged`` (the earlier ones): where ``values`` sets one option of a
    :data:`~vitkit.train.recipes.CONFLICTS` pair, the other one the earlier sources set gives way."""
    for pair in CONFLICTS:
        for name, other in (pair, pair[::-1]):
            if values.get(name) is not None and other not in values:
                merged[other] = None
    merged.update(values)


def flag_of(name: str) -> str:
    """The command-line spelling of a TrainConfig field (``weight_decay`` -> ``--wd``)."""
    option = field_options(TrainConfig).get(name)
    return option.flag if option is not None and option.flag else "--" + name.replace("_", "-")


def check_unchanged_on_resume(run_dir: str | os.PathLike, saved: dict[str, Any], given: dict[str, Any]) -> None:
    """Refuse a new value of an option a resumed run restores from its state (:data:`RESTORED_ON_RESUME`)."""
    options = field_options(TrainConfig)
    for name in RESTORED_ON_RESUME:
        if given.get(name) is None or name not in saved:
            continue
        new, old = (options[name].check(value, name) for value in (given[name], saved[name]))
        if new != old:
            raise VitkitError(f"--resume {run_dir} continues that run with the optimiser state and random streams it "
                              f"saved: {flag_of(name)} {given[name]} would be ignored (the run's is {saved[name]}); to "
                              f"change it, start a new run (--config {run_dir}/config.yaml)")


def check_resume(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> None:
    """Refuse to resume what is not a run directory, or into another directory ``out``."""
    from vitkit.train.rundir import CONFIG_FILE

    if not (Path(run_dir) / CONFIG_FILE).is_file():
        raise VitkitError(f"{run_dir}: not a run directory (no config.yaml)")
    if out is not None and Path(out).resolve() != Path(run_dir).resolve():
        raise VitkitError(f"--resume {run_dir} continues that run in its own directory; --out {out} names "
                          f"another (to branch a run, copy its directory and resume the copy)")


def default_run_dir(recipe: str) -> str:
    """``runs/<recipe>-<YYYYmmdd-HHMMSS>``: where a run goes when no ``out`` is given."""
    return os.path.join("runs", f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")


def read_options(path: str | os.PathLike) -> dict[str, Any]:
    """The options of a YAML file, each checked against its definition (errors name the file)."""
    from vitkit.train.rundir import read_config

    loaded = read_config(path)
    try:
        TrainConfig.check_mapping(loaded)
        check_conflicts(loaded)
    except VitkitError as exc:
        raise VitkitError(f"{path}: {exc}") from None
    return loaded
