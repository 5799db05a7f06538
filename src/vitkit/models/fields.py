"""The architecture fields several model families share, each defined once (issue 20, item 4).

A family's configuration (:class:`~vitkit.models.vit.config.ViTConfig`,
:class:`~vitkit.models.swin.config.SwinConfig`, :class:`~vitkit.models.bit.config.BiTConfig`) and
:class:`~vitkit.train.recipes.TrainConfig` use these :class:`~vitkit.options.Option` objects for the
fields they have in common, so a value is allowed or refused alike wherever it arrives; each family keeps
its own default. The wording of each is true for every family that has the field. The fields every
family has (name, image_size, in_channels, num_classes) are :mod:`vitkit.options`' own.
"""

from __future__ import annotations

from vitkit.options import Option

#: the MLP's GELU: "gelu_tanh" (the tanh approximation, Flax's ``nn.gelu``: ViT's reference code) or "gelu" (exact)
MLP_ACTIVATIONS = ("gelu", "gelu_tanh")

PATCH_SIZE = Option("int", "patch side P in pixels (on the feature map for hybrids)", low=1)
#: ViT App. B.1; Swin's reference ``drop_rate``: after the (patch or position) embedding and every dense layer but qkv
DROPOUT = Option("float", "dropout rate after the embedding and every dense layer but qkv (App. B.1)", low=0, high=1,
                 high_open=True)
ATTENTION_DROPOUT = Option("float", "dropout on the attention weights", low=0, high=1, high_open=True)
#: stochastic depth (Huang et al. 2016) growing linearly from 0 at the first block
#: (:func:`~vitkit.models.layers.drop_path_rates`; Swin counts its blocks across stages)
DROP_PATH = Option("float", "stochastic depth at the last block (0 at the first, linear between)", low=0, high=1,
                   high_open=True)
#: PatchDropout (Liu et al. 2022): the share of patch tokens each training image drops after the position
#: embeddings (:func:`~vitkit.models.layers.patch_dropout_indices`); evaluation sees every token
PATCH_DROP = Option("float", "PatchDropout: while training, each image keeps its prefix tokens and a random "
                             "round((1 - R) N) of its N patch tokens (Liu et al. 2022); evaluation sees all",
                    low=0, high=1, high_open=True, metavar="R")
QKV_BIAS = Option("bool", "biases in the qkv projection")
LAYER_NORM_EPS = Option("float", "LayerNorm epsilon", low=0, high=1, low_open=True)
MLP_ACT = Option("choice", "the MLP's GELU (gelu_tanh: the tanh approximation of ViT's reference code; gelu: exact)",
                 choices=MLP_ACTIVATIONS)
GN_EPS = Option("float", "GroupNorm epsilon", low=0, high=1, low_open=True)
#: ViT's hybrid stem (vit_jax's ``StdConv``) divides by std + eps, BiT's (big_transfer) by sqrt(var + eps)
WS_EPS = Option("float", "weight-standardisation epsilon (hybrids: std + eps; BiT: sqrt(var + eps))", low=0, high=1,
                low_open=True)
