"""Token merging (Bolya et al., ICLR 2023) against the paper's description written out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from formats_testing import randomised

import vitkit
from vitkit import VitkitError
from vitkit.deploy.tome import (
    TokenMerging,
    bipartite_soft_matching,
    merge_schedule_tokens,
    merge_weighted,
    proportional_bias,
)
from vitkit.models.flops import count_flops
from vitkit.models.layers import Attention

SMALL = dict(image_size=32, patch_size=4, depth=3, hidden_size=64, num_heads=2, mlp_dim=128)  # 64 patches


def small_model(classifier: str = "token") -> vitkit.VisionTransformer:
    model = vitkit.create_model("ViT-Ti/16", num_classes=5, classifier=classifier, seed=0, **SMALL).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, generator=torch.Generator().manual_seed(1))
    return model


#: the families built on ViT's encoder, each with its own prefix tokens in front of the patches: DeiT's
#: [class] and distillation tokens (two heads, averaged), DINOv2's [class] token and registers (LayerScale)
FAMILY_MODELS = {"deit": ("DeiT-Ti/16", {}), "deit-distilled": ("DeiT-Ti/16-distilled", {}),
                 "dinov2": ("DINOv2-S/14", {}), "dinov2-registers": ("DINOv2-S/14-reg", {"num_registers": 3})}


def family_model(key: str, depth: int = 3) -> vitkit.VisionTransformer:
    """A tiny randomised model of another family (every weight noise: both DeiT heads differ, DINOv2's
    LayerScale is far from its 1e-5 start), 64 patches at 32 px as :func:`small_model`."""
    name, extra = FAMILY_MODELS[key]
    return randomised(vitkit.create_model(name, num_classes=5, **{**SMALL, "depth": depth}, **extra), std=0.1)


@pytest.mark.parametrize("classifier", ["token", "gap"])
def test_r_zero_is_the_plain_model_bit_for_bit(classifier):
    model = small_model(classifier)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(TokenMerging(model, 0)(x), model(x))


@pytest.mark.parametrize("key", FAMILY_MODELS)
@pytest.mark.parametrize("size", [32, 40])  # 40 px: DINOv2 interpolates its position embeddings, DeiT resamples
def test_r_zero_is_the_plain_model_bit_for_bit_in_every_family(key, size):
    model = family_model(key)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(TokenMerging(model, 0)(x), model(x))
        assert torch.equal(TokenMerging(model, 0).forward_features(x), model.forward_features(x))


@pytest.mark.parametrize("key", FAMILY_MODELS)
@pytest.mark.parametrize("r", [5, 100])
def test_merging_never_touches_the_prefix_tokens_of_any_family(key, r):
    """One layer: attention and the merge come before the prefix tokens' MLP, and the prefix tokens
    are no part of the matching, so they leave the layer exactly as in the plain model, each of size
    one, in front; only the patches are merged (to their schedule's count)."""
    model = family_model(key, depth=1)
    prefix = model.num_prefix_tokens
    assert prefix == {"deit": 1, "deit-distilled": 2, "dinov2": 1, "dinov2-registers": 4}[key]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        plain = model.encode(x).tokens
        out = TokenMerging(model, r).encode(x)
    assert out.merged and out.tokens.shape[1] == merge_schedule_tokens(64 + prefix, prefix, [r])[-1] < 64 + prefix
    torch.testing.assert_close(out.tokens[:, :prefix], plain[:, :prefix], rtol=1e-5, atol=1e-5)
    assert torch.equal(out.sizes[:, :prefix], torch.ones(2, prefix))
    assert torch.equal(out.sizes.sum(dim=1), torch.full((2,), 64.0 + prefix))


@pytest.mark.parametrize("key", ["deit-distilled", "dinov2-registers"])
def test_a_merged_family_model_stays_close_and_runs_through_apply_fast_path(key):
    """A little merging moves the logits a little (all layers, 4 of 64 patches each); the fast path
    the CLI takes (``--merge``) builds the same wrapper for these families as for ViT."""
    from vitkit.deploy.fastpath import FastPath, apply_fast_path

    model = family_model(key)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        plain, merged = model(x), apply_fast_path(model, FastPath(merge=4))(x)
    assert merged.shape == plain.shape == (4, 5)
    assert 0 < float((merged - plain).norm() / plain.norm()) < 0.5


@pytest.mark.parametrize("classifier", ["token", "gap"])
@pytest.mark.parametrize("r", [1, 7, 16, 100])
def test_sizes_sum_to_the_token_count_and_the_class_token_is_never_merged(classifier, r):
    model = small_model(classifier)
    prefix = model.num_prefix_tokens
    with torch.no_grad():
        out = TokenMerging(model, r).encode(torch.randn(2, 3, 32, 32))
    total = 64 + prefix
    assert out.sizes.shape[1] == merge_schedule_tokens(total, prefix, [r] * 3)[-1] < total
    assert torch.equal(out.sizes.sum(dim=1), torch.full((2,), float(total)))
    assert (out.sizes >= 1).all()
    if prefix:
        assert (out.sizes[:, 0] == 1).all()


def test_token_lengths_follow_the_schedule_independently_counted():
    # 64 mergeable tokens: at most half of them (32) can go in a layer, then 16, then 8 ...
    assert merge_schedule_tokens(65, 1, [8, 8, 8]) == [65, 57, 49, 41]
    assert merge_schedule_tokens(65, 1, [100, 100, 100]) == [65, 33, 17, 9]
    assert merge_schedule_tokens(64, 0, [0, 3]) == [64, 64, 61]


def reference_merge(metric, x, size, r):
    """ToMe §3 written with loops: A = even tokens, B = odd tokens; each A token's most similar B
    token (cosine); the r A tokens with the highest similarity are averaged into their B token,
    weighted by size; output = remaining A tokens in order, then the B tokens."""
    out_x, out_s = [], []
    for m, xs, ss in zip(metric, x, size, strict=True):
        a_idx, b_idx = list(range(0, len(m), 2)), list(range(1, len(m), 2))
        best = []
        for i in a_idx:
            sims = [float(torch.dot(m[i], m[j]) / (m[i].norm() * m[j].norm())) for j in b_idx]
            j = max(range(len(b_idx)), key=lambda t: sims[t])
            best.append((sims[j], i, b_idx[j]))
        moved = sorted(best, key=lambda t: -t[0])[:r]
        moved_from = {i for _, i, _ in moved}
        acc = {j: (xs[j] * ss[j], ss[j].clone()) for j in b_idx}
        for _, i, j in moved:
            acc[j] = (acc[j][0] + xs[i] * ss[i], acc[j][1] + ss[i])
        kept = [i for i in a_idx if i not in moved_from]
        rows = [xs[i] for i in kept] + [acc[j][0] / acc[j][1] for j in b_idx]
        sizes = [ss[i] for i in kept] + [acc[j][1] for j in b_idx]
        out_x.append(torch.stack(rows))
        out_s.append(torch.stack(sizes))
    return torch.stack(out_x), torch.stack(out_s)


@pytest.mark.parametrize("tokens,r", [(9, 3), (10, 5), (12, 1)])
def test_matching_and_weighted_merge_match_a_loop_reference(tokens, r):
    g = torch.Generator().manual_seed(tokens)
    metric = torch.randn(2, tokens, 6, generator=g)
    x = torch.randn(2, tokens, 4, generator=g)
    size = torch.randint(1, 4, (2, tokens, 1), generator=g).float()
    got_x, got_s = merge_weighted(x, size, bipartite_soft_matching(metric, r))
    want_x, want_s = reference_merge(metric, x, size, r)
    torch.testing.assert_close(got_x, want_x)
    torch.testing.assert_close(got_s, want_s)


def test_proportional_attention_treats_a_merged_token_like_the_copies_it_stands_for():
    """Eq. 1's log(size) bias: a key/value of size 2 attends exactly like two identical copies."""
    attn = Attention(8, 2)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 3, 4, generator=g)
    k, v = torch.randn(1, 2, 3, 4, generator=g), torch.randn(1, 2, 3, 4, generator=g)
    duplicated = (torch.cat([k, k[:, :, :1]], dim=2), torch.cat([v, v[:, :, :1]], dim=2))
    plain, _ = attn.attend(q, *duplicated)
    size = torch.tensor([[[2.0], [1.0], [1.0]]])
    merged, _ = attn.attend(q, k, v, proportional_bias(size))
    torch.testing.assert_close(merged, plain)


def test_merging_lowers_the_counted_flops_as_the_token_counts_say():
    model = small_model()
    d, mlp = 64, 128
    lengths = merge_schedule_tokens(65, 1, [8, 8, 8])

    def layer(t_attn: int, t_mlp: int) -> int:  # multiply-adds: qkv, QK^T and AV, proj (attention length), MLP
        return t_attn * d * 3 * d + 2 * t_attn * t_attn * d + t_attn * d * d + t_mlp * 2 * d * mlp

    macs = 64 * 3 * 16 * d + sum(layer(lengths[i], lengths[i + 1]) for i in range(3)) + d * 5
    assert count_flops(TokenMerging(model, 8)) == pytest.approx(2 * macs / 1e9)
    assert count_flops(TokenMerging(model, 0)) == pytest.approx(count_flops(model))


def test_bad_merge_settings_are_one_line_errors():
    with pytest.raises(VitkitError, match="relative"):
        TokenMerging(vitkit.create_model("ViT-Ti/16", posemb="relative", **SMALL), 4)
    with pytest.raises(VitkitError, match="one per layer"):
        TokenMerging(small_model(), [1, 2])
    with pytest.raises(VitkitError, match="non-negative"):
        TokenMerging(small_model(), -1)


def test_log_of_size_is_the_bias():
    size = torch.tensor([[[1.0], [3.0]]])
    assert torch.allclose(proportional_bias(size), torch.tensor([[[[0.0, math.log(3.0)]]]]))
