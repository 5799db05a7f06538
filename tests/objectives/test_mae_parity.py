"""MAE number for number against transformers' ViTMAEForPreTraining: the loss, the reconstruction and
the encoder output for the same masks (the same ``noise``), on random configurations of several
shapes; the official-release loader through a state dict mapped from that same transformers model by
the official names (written out here); and vitkit's export loading back into transformers."""

from __future__ import annotations

import pytest
import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel

from vitkit import load_model
from vitkit.checkpoints.convert import convert
from vitkit.checkpoints.detect import detect_format
from vitkit.objectives import MAE, load_pretraining

TOL = dict(rtol=0, atol=1e-5)

CASES = {
    "p4-norm-pix": dict(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                        decoder_num_attention_heads=2, decoder_intermediate_size=32, mask_ratio=0.75,
                        norm_pix_loss=True),
    "p8-half-masked": dict(image_size=24, patch_size=8, hidden_size=48, num_hidden_layers=1, num_attention_heads=3,
                           intermediate_size=96, decoder_hidden_size=32, decoder_num_hidden_layers=2,
                           decoder_num_attention_heads=4, decoder_intermediate_size=48, mask_ratio=0.5,
                           norm_pix_loss=False),
    "p4-deep-decoder": dict(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=3, num_attention_heads=2,
                            intermediate_size=128, decoder_hidden_size=24, decoder_num_hidden_layers=3,
                            decoder_num_attention_heads=3, decoder_intermediate_size=40, mask_ratio=0.9,
                            norm_pix_loss=True, layer_norm_eps=1e-6, qkv_bias=False, hidden_act="gelu_new"),
}


def randomised_hf(settings: dict, seed: int = 0) -> ViTMAEForPreTraining:
    """A transformers ViTMAE with every tensor (fixed position embeddings included) filled with noise."""
    model = ViTMAEForPreTraining(ViTMAEConfig(**settings))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model.eval()


def inputs(settings: dict, batch: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    size, patch = settings["image_size"], settings["patch_size"]
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, size, size, generator=generator)
    noise = torch.rand(batch, (size // patch) ** 2, generator=generator)
    return pixels, noise


def assert_same_as_transformers(model, objective: MAE, reference: ViTMAEForPreTraining, settings: dict) -> None:
    pixels, noise = inputs(settings)
    with torch.no_grad():
        expected = reference(pixel_values=pixels, noise=noise)
        encoded = reference.vit(pixel_values=pixels, noise=noise).last_hidden_state
        ours = objective.run(model, pixels, noise=noise)
    assert torch.equal(ours.mask, expected.mask)
    torch.testing.assert_close(ours.latent, encoded, **TOL)
    torch.testing.assert_close(ours.pred, expected.logits, **TOL)
    torch.testing.assert_close(ours.loss.mean(), expected.loss, **TOL)


@pytest.mark.parametrize("case", list(CASES))
def test_transformers_checkpoint_gives_the_same_loss_reconstruction_and_encoding(tmp_path, case):
    settings = CASES[case]
    reference = randomised_hf(settings)
    reference.save_pretrained(tmp_path / "hf")
    assert detect_format(tmp_path / "hf") == "hf_mae"
    model, objective = load_pretraining(tmp_path / "hf")
    assert isinstance(objective, MAE)
    assert objective.options.mask_ratio == settings["mask_ratio"]
    assert objective.options.norm_pix_loss == settings["norm_pix_loss"]
    assert model.config.num_classes == 0 and model.config.classifier == "token"
    assert_same_as_transformers(model, objective, reference, settings)


def official_state_dict(reference: ViTMAEForPreTraining) -> dict[str, torch.Tensor]:
    """The facebookresearch/mae ``models_mae.py`` names of a transformers model, mapped by hand: timm
    blocks with one fused qkv projection, ``decoder_*`` names at the top level."""
    hf = {k: v.detach().clone() for k, v in reference.state_dict().items()}
    out = {"cls_token": hf["vit.embeddings.cls_token"], "pos_embed": hf["vit.embeddings.position_embeddings"],
           "patch_embed.proj.weight": hf["vit.embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": hf["vit.embeddings.patch_embeddings.projection.bias"],
           "norm.weight": hf["vit.layernorm.weight"], "norm.bias": hf["vit.layernorm.bias"],
           "mask_token": hf["decoder.mask_token"], "decoder_pos_embed": hf["decoder.decoder_pos_embed"]}
    for part in ("decoder_embed", "decoder_norm", "decoder_pred"):
        for p in ("weight", "bias"):
            out[f"{part}.{p}"] = hf[f"decoder.{part}.{p}"]

    def block(theirs: str, ours: str) -> None:
        for p in ("weight", "bias"):
            if f"{theirs}.attention.q_proj.{p}" in hf:
                out[f"{ours}.attn.qkv.{p}"] = torch.cat([hf[f"{theirs}.attention.{x}_proj.{p}"] for x in "qkv"])
            out[f"{ours}.attn.proj.{p}"] = hf[f"{theirs}.attention.o_proj.{p}"]
            out[f"{ours}.norm1.{p}"] = hf[f"{theirs}.layernorm_before.{p}"]
            out[f"{ours}.norm2.{p}"] = hf[f"{theirs}.layernorm_after.{p}"]
            out[f"{ours}.mlp.fc1.{p}"] = hf[f"{theirs}.mlp.fc1.{p}"]
            out[f"{ours}.mlp.fc2.{p}"] = hf[f"{theirs}.mlp.fc2.{p}"]

    for i in range(reference.config.num_hidden_layers):
        block(f"vit.layers.{i}", f"blocks.{i}")
    for i in range(reference.config.decoder_num_hidden_layers):
        block(f"decoder.decoder_layers.{i}", f"decoder_blocks.{i}")
    return out


def test_official_release_layout_maps_into_the_transformers_model(tmp_path):
    # The file records neither head count: the encoder's comes from the paper's table by width (192: ViT-Ti,
    # 3 heads), the decoder's is the release's 16. LayerNorm eps 1e-6 as in MAE's code.
    settings = dict(image_size=16, patch_size=4, hidden_size=192, num_hidden_layers=2, num_attention_heads=3,
                    intermediate_size=96, decoder_hidden_size=32, decoder_num_hidden_layers=2,
                    decoder_num_attention_heads=16, decoder_intermediate_size=48, layer_norm_eps=1e-6,
                    norm_pix_loss=True)
    reference = randomised_hf(settings, seed=3)
    state = official_state_dict(reference)
    assert len(state) == len(reference.state_dict()) - 4 * (2 + 2)  # q/k/v weights and biases fused per block
    torch.save({"model": state}, tmp_path / "mae_pretrain_vit_tiny.pth")
    assert detect_format(tmp_path / "mae_pretrain_vit_tiny.pth") == "mae"
    model, objective = load_pretraining(tmp_path / "mae_pretrain_vit_tiny.pth")
    assert (objective.options.decoder_num_heads, objective.options.mask_ratio) == (16, 0.75)
    assert model.preprocessing.mean == (0.485, 0.456, 0.406)
    assert_same_as_transformers(model, objective, reference, settings)


def test_official_fine_tuned_layout_pools_the_patches_with_fc_norm(tmp_path):
    """``models_vit.py`` with global pooling: no ``norm``; ``fc_norm`` on the mean of the patch tokens
    while the [class] token stays in the sequence; then ``head``."""
    settings = dict(image_size=16, patch_size=4, hidden_size=192, num_hidden_layers=1, num_attention_heads=3,
                    intermediate_size=96, layer_norm_eps=1e-6)
    reference = randomised_hf({**settings, "decoder_num_hidden_layers": 1}, seed=4)
    state = {k: v for k, v in official_state_dict(reference).items()
             if not k.startswith(("decoder_", "mask_token", "norm."))}
    generator = torch.Generator().manual_seed(5)
    shapes = {"fc_norm.weight": (192,), "fc_norm.bias": (192,), "head.weight": (7, 192), "head.bias": (7,)}
    head = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    torch.save({"model": {**state, **head}}, tmp_path / "mae_finetuned_vit_tiny.pth")
    assert detect_format(tmp_path / "mae_finetuned_vit_tiny.pth") == "mae"
    model = load_model(tmp_path / "mae_finetuned_vit_tiny.pth")
    assert (model.config.classifier, model.config.class_token, model.config.fc_norm) == ("gap", True, True)
    pixels, _ = inputs(settings)
    in_order = torch.arange(16, dtype=torch.float32).expand(pixels.shape[0], -1)
    with torch.no_grad():
        hidden = ViTMAEModel(ViTMAEConfig(**settings, mask_ratio=0.0))
        hidden.load_state_dict({k[len("vit."):]: v for k, v in reference.state_dict().items() if k.startswith("vit.")})
        hidden.layernorm = torch.nn.Identity()  # the fine-tuned model has no final norm
        tokens = hidden.eval()(pixel_values=pixels, noise=in_order).last_hidden_state
        pooled = torch.nn.functional.layer_norm(tokens[:, 1:].mean(dim=1), (192,), head["fc_norm.weight"],
                                                head["fc_norm.bias"], eps=1e-6)
        expected = pooled @ head["head.weight"].t() + head["head.bias"]
        torch.testing.assert_close(model(pixels), expected, **TOL)
    assert load_pretraining(tmp_path / "mae_finetuned_vit_tiny.pth")[1] is None


@pytest.mark.parametrize("case", ["p4-norm-pix", "p4-deep-decoder"])
def test_export_loads_into_transformers_with_the_same_outputs(tmp_path, case):
    settings = CASES[case]
    randomised_hf(settings).save_pretrained(tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "native", to="native")
    model, objective = load_pretraining(tmp_path / "native")
    convert(tmp_path / "native", tmp_path / "back", to="hf_mae")
    reference, info = ViTMAEForPreTraining.from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert_same_as_transformers(model, objective, reference.eval(), settings)
    # vitkit writes the decoder layers as every transformers version names them (decoder.decoder_layers.N)
    # and reads both that and transformers 5's own spelling (decoder.decoder_encoder.layer.N)
    from safetensors.torch import load_file

    assert any(k.startswith("decoder.decoder_layers.0.") for k in load_file(tmp_path / "back" / "model.safetensors"))
    again = load_pretraining(tmp_path / "back")[1]
    for name, tensor in objective.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_encoder_only_directories_load_as_plain_vits(tmp_path):
    settings = CASES["p8-half-masked"]
    reference = randomised_hf(settings)
    reference.vit.save_pretrained(tmp_path / "encoder")  # a ViTMAEModel directory
    model = load_model(tmp_path / "encoder")
    pixels, _ = inputs(settings)
    in_order = torch.arange((24 // 8) ** 2, dtype=torch.float32).expand(pixels.shape[0], -1)  # keep every patch
    encoder = ViTMAEModel.from_pretrained(tmp_path / "encoder", mask_ratio=0.0).eval()
    with torch.no_grad():
        expected = encoder(pixel_values=pixels, noise=in_order).last_hidden_state
        torch.testing.assert_close(model.encode(pixels).tokens, expected, **TOL)
    assert load_pretraining(tmp_path / "encoder")[1] is None
    convert(tmp_path / "encoder", tmp_path / "back", to="hf_mae")
    again = ViTMAEModel.from_pretrained(tmp_path / "back", mask_ratio=0.0).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(pixel_values=pixels, noise=in_order).last_hidden_state, expected, **TOL)
