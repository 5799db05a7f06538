"""Training: the paper's pre-training (§4.1, App. B.1) and fine-tuning (§3.2, App. B.1.1) recipes.

    >>> from vitkit.train import TrainConfig, recipe_defaults, train
    >>> config = TrainConfig(**recipe_defaults("finetune"), checkpoint="runs/pre/model", data="digits",
    ...                      image_size=32, epochs=5, lr=0.01, out="runs/ft")
    >>> result = train(config)           # result.metrics["test_top1"], result.model, result.ema_model

The command line's merge of a recipe, a preset, a YAML file and options is one call too:

    >>> from vitkit.train import resolve_training_config
    >>> config = resolve_training_config("finetune", {"checkpoint": "runs/pre/model", "data": "digits",
    ...                                               "image_size": (48, 32)}, preset="small-data")
"""

from vitkit.train.loop import Trainer, TrainResult, build_model, train
from vitkit.train.recipes import TrainConfig, recipe_defaults
from vitkit.train.settings import resolve_training_config

__all__ = ["TrainConfig", "TrainResult", "Trainer", "build_model", "recipe_defaults", "resolve_training_config",
           "train"]
