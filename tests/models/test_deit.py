"""DeiT (Touvron et al., ICML 2021) as a family: its names (vitkit's, timm's, transformers'), Table 1's
parameters and FLOPs, the distillation token in the sequence, the two heads averaged at inference and
returned apart for a teacher's loss, and the Family record's answers for it."""

from __future__ import annotations

import pytest
import torch
from trainutil import cli_json

import vitkit
from vitkit import VitkitError, create_model
from vitkit.models.registry import FAMILIES, family_of


def tiny(distilled: bool = True, **overrides) -> torch.nn.Module:
    model = create_model("DeiT-Ti/16", image_size=32, patch_size=8, depth=2, hidden_size=32, num_heads=2, mlp_dim=64,
                         num_classes=5, distilled=distilled, seed=0, **overrides)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # zero heads would make every comparison trivially equal
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


@pytest.mark.parametrize(("name", "canonical"), [
    ("DeiT-S/16", "DeiT-S/16"), ("deit_tiny_patch16_224", "DeiT-Ti/16"),
    ("deit_small_distilled_patch16_224", "DeiT-S/16-distilled"), ("deit_base_patch16_384", "DeiT-B/16-384"),
    ("deit_base_distilled_patch16_384.fb_in1k", "DeiT-B/16-distilled-384"),
    ("deit-small-distilled-patch16-224", "DeiT-S/16-distilled"), ("DEIT_B_16_distilled", "DeiT-B/16-distilled")])
def test_vitkit_timm_and_transformers_names_build_the_same_variant(name, canonical):
    with torch.device("meta"):
        model = create_model(name)
    assert model.config.name == canonical and family_of(model).name == "deit"
    assert model.config.distilled == ("distilled" in canonical)
    assert model.config.image_size == ((384, 384) if canonical.endswith("384") else (224, 224))


def test_the_bare_transformers_repository_name_stays_a_checkpoint_name():
    # ``facebook/deit-...`` names a Hub repository (vitkit.checkpoints.hub); only its repository part is a variant
    with pytest.raises(VitkitError, match="unknown model 'facebook/deit-small-patch16-224'"):
        create_model("facebook/deit-small-patch16-224")


#: DeiT's Table 1: parameters (millions) and FLOPs at 224 px (billions of multiply-adds, fvcore's count)
TABLE_1 = {"DeiT-Ti/16": (5, 1.3), "DeiT-S/16": (22, 4.6), "DeiT-B/16": (86, 17.6)}


def test_vitkit_models_lists_the_variants_with_table_1s_parameters_and_flops(capsys):
    rows = {r["name"]: r for r in cli_json(capsys, ["models", "DeiT"])["models"]}
    assert list(rows) == list(FAMILIES["deit"].variants)
    for name, (millions, gflops) in TABLE_1.items():
        for variant in (name, f"{name}-distilled"):  # the token and its head add <1% (0.2M of 5.9M for Ti)
            assert abs(rows[variant]["params"] / 1e6 - millions) <= max(0.5, 0.02 * millions) + 0.5, variant
            assert abs(rows[variant]["gmacs"] - gflops) <= 0.06 * gflops, variant
        assert rows[name]["family"] == "deit" and rows[name]["distilled"] is False
        assert rows[f"{name}-distilled"]["distilled"] is True
    assert rows["DeiT-B/16-384"]["gmacs"] == pytest.approx(55.5, rel=0.03)  # Table 7's DeiT-B↑384


def test_the_distillation_token_follows_the_class_token_with_its_own_position_embedding():
    model = tiny()
    assert model.num_prefix_tokens == 2 and model.pos_embed.table.shape[1] == 16 + 2
    x = torch.randn(2, 3, 32, 32)
    tokens = model.encode(x).tokens
    assert tokens.shape == (2, 18, 32)
    z0 = model._prepend_and_embed(*model.embed_patches(x))
    torch.testing.assert_close(z0[:, 1], (model.dist_token[0, 0] + model.pos_embed.table[0, 1]).expand(2, -1))


def test_inference_averages_the_two_heads_and_a_teachers_loss_gets_both():
    model = tiny()
    x = torch.randn(3, 3, 32, 32)
    tokens = model.encode(x).tokens
    cls_logits, dist_logits = model.head(tokens[:, 0]), model.head_dist(tokens[:, 1])
    assert not torch.allclose(cls_logits, dist_logits)
    torch.testing.assert_close(model(x), (cls_logits + dist_logits) / 2)
    model.train()  # train mode alone keeps timm's default: the mean (a supervised run trains both heads through it)
    torch.testing.assert_close(model(x), (cls_logits + dist_logits) / 2)
    model.set_distilled_training(True)
    both = model(x)
    assert isinstance(both, tuple)
    torch.testing.assert_close(both[0], cls_logits)
    torch.testing.assert_close(both[1], dist_logits)
    model.eval()  # eval mode averages even with distilled training on
    torch.testing.assert_close(model(x), (cls_logits + dist_logits) / 2)
    torch.testing.assert_close(model.forward_features(x), (tokens[:, 0] + tokens[:, 1]) / 2)


def test_a_deit_without_the_token_is_vits_computation():
    deit = tiny(distilled=False)
    vit = create_model("ViT-Ti/16", **{k: v for k, v in deit.config.to_dict().items()
                                       if k not in ("name", "distilled", "dist_head")})
    vit.load_state_dict(deit.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert not hasattr(deit, "head_dist") or deit.head_dist is None
    torch.testing.assert_close(deit(x), vit.eval()(x))


def test_reset_head_and_image_size_keep_both_tokens_and_heads():
    model = tiny()
    model.reset_head(7)
    assert model.head.out_features == model.head_dist.out_features == 7 and model.config.num_classes == 7
    model.set_image_size(48)
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 7) and model.pos_embed.table.shape[1] == 36 + 2


def test_the_family_record_answers_for_deit():
    fam = FAMILIES["deit"]
    model = tiny()
    assert fam.layer_id(model, "dist_token") == 0 and fam.layer_id(model, "head_dist.weight") == 2 + 1
    assert fam.layer_id(model, "blocks.1.mlp.fc1.weight") == 2
    assert "global_pool" not in fam.finetune_options and "merge" in fam.fast_paths  # ToMe keeps both tokens
    with pytest.raises(VitkitError, match="global_pool applies to ViT models, not to a deit model"):
        fam.check_finetune("global_pool")
    assert model.preprocessing.mean == (0.485, 0.456, 0.406) and model.preprocessing.interpolation == "bicubic"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"classifier": "gap"}, "a distilled DeiT classifies its \\[class\\] and distillation tokens"),
    ({"representation_size": 16}, "representation_size does not apply")])
def test_what_a_distilled_deit_cannot_be_is_one_line(overrides, message):
    with pytest.raises(VitkitError, match=message):
        tiny(**overrides)


def test_a_distilled_deit_trains_end_to_end_through_the_supervised_objective():
    model = tiny().train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert model.dist_token.grad is not None and model.head_dist.weight.grad is not None
    assert vitkit.list_models("deit") == list(FAMILIES["deit"].variants)
