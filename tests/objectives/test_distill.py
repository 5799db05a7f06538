"""Distillation from a teacher (DeiT §4; issue 27, item 2's mechanism): the loss equals a hand
computation for hard and soft distillation, the teacher gets no gradient and stays in eval mode, a few
steps with a teacher lower the loss, and what cannot be distilled is a one-line error."""

from __future__ import annotations

import math

import pytest
import torch

from vitkit import VitkitError, create_model
from vitkit.objectives.distill import Distillation, teacher_view


def student(distilled: bool = True, seed: int = 0):
    return create_model("DeiT-Ti/16-distilled" if distilled else "ViT-Ti/16", image_size=32, patch_size=8, depth=1,
                        hidden_size=32, num_heads=2, mlp_dim=64, num_classes=4, seed=seed,
                        **({} if distilled else {"mlp_act": "gelu"}))


def teacher():
    model = create_model("BiT-R26x1", image_size=16, layers=(1, 1), base_width=8, num_groups=4, num_classes=4, seed=3)
    with torch.no_grad():
        model.head.weight.normal_(0, 1.0)  # a zero head would tie every class
    return model


def _softmax(row):
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    return [e / sum(exps) for e in exps]


def test_hard_and_soft_losses_equal_a_hand_computation():
    s, t = student(), teacher()
    with torch.no_grad():
        s.head.weight.normal_(0, 0.5)
        s.head_dist.weight.normal_(0, 0.5)
    images, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    cls_logits, dist_logits = s.head_logits(s.encode(images).tokens)
    with torch.no_grad():
        t_logits = t.eval()(teacher_view(s, t, images))
    for kind, alpha, tau in (("hard", 0.5, 1.0), ("soft", 0.3, 2.0)):
        objective = Distillation(t, kind=kind, alpha=alpha, tau=tau)
        objective.prepare(s)
        s.train()
        losses = objective(s, images, labels)
        for i in range(3):
            ce = -math.log(_softmax(cls_logits[i].tolist())[labels[i]])
            if kind == "hard":
                target = int(t_logits[i].argmax())
                term = -math.log(_softmax(dist_logits[i].tolist())[target])
            else:
                p_t = _softmax((t_logits[i] / tau).tolist())
                p_s = _softmax((dist_logits[i] / tau).tolist())
                term = tau * tau * sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s, strict=True))
            assert losses[i].item() == pytest.approx((1 - alpha) * ce + alpha * term, rel=1e-4), (kind, i)


def test_the_teacher_sees_the_same_batch_through_its_own_preprocessing():
    s, t = student(), teacher()
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    view = teacher_view(s, t, images)
    assert view.shape == (2, 3, 16, 16)  # the teacher's resolution
    pixels = images * torch.tensor(s.preprocessing.std).view(1, 3, 1, 1) + torch.tensor(s.preprocessing.mean).view(
        1, 3, 1, 1)
    mean, std = torch.tensor(t.preprocessing.mean).view(1, 3, 1, 1), torch.tensor(t.preprocessing.std).view(1, 3, 1, 1)
    back = view * std + mean  # the teacher's normalisation undone: the student's pixels, resized
    torch.testing.assert_close(back.mean(dim=(2, 3)), pixels.clamp(0, 1).mean(dim=(2, 3)), atol=0.05, rtol=0)


def test_the_teacher_gets_no_gradient_stays_in_eval_and_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    s, t = student(), teacher()
    t.train()  # whatever mode it comes in, distillation runs it in eval mode
    objective = Distillation(t, kind="hard", alpha=0.5)
    objective.prepare(s)
    assert not t.training and all(not p.requires_grad for p in t.parameters())
    assert list(objective.parameters()) == []  # neither optimised nor saved with the run
    s.train()
    optimizer = torch.optim.AdamW(s.parameters(), lr=3e-3)
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 4, (16,))
    losses = []
    for _ in range(15):
        loss = objective(s, images, labels).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert not t.training and all(p.grad is None for p in t.parameters())
    assert losses[-1] < 0.7 * losses[0], losses


def test_soft_distillation_takes_any_student_and_hard_needs_the_distillation_token():
    vit = student(distilled=False)
    Distillation(teacher(), kind="soft").prepare(vit)  # any student
    with pytest.raises(VitkitError, match="--distill hard .* ViT-Ti/16 has none") as caught:
        Distillation(teacher(), kind="hard").prepare(vit)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("options", "message"), [({"kind": "warm"}, "distill must be one of hard, soft"),
                                                   ({"alpha": 1.5}, "distill_alpha must be in \\[0, 1\\]"),
                                                   ({"tau": 0.0}, "distill_tau > 0")])
def test_bad_distillation_options_are_one_line(options, message):
    with pytest.raises(VitkitError, match=message):
        Distillation(teacher(), **options)


def test_an_all_corrupt_micro_batch_joins_the_step_with_both_heads_in_the_graph():
    s = student()
    objective = Distillation(teacher(), kind="hard")
    objective.prepare(s)
    s.train()
    losses = objective(s, torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long))
    assert losses.shape == (0,)
    losses.sum().backward()  # DDP's all-reduce needs every trained parameter to have a gradient
    assert torch.equal(s.head.weight.grad, torch.zeros_like(s.head.weight))
    assert torch.equal(s.head_dist.weight.grad, torch.zeros_like(s.head_dist.weight))
