import dataclasses
import math

import pytest
import torch

from clipedu.model import CLIP, get_config
from clipedu.train.optim import build_optimizer, cosine_schedule, param_groups, set_lr


def small(name):
    cfg = get_config(name)
    return CLIP(dataclasses.replace(cfg, vocab_size=600, image_resolution=32, transformer_layers=1,
                                    vision_layers=1 if cfg.is_vit else (1, 1, 1, 1)))


def names_in(model, group):
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_vit_groups_decay_exactly_the_matmul_and_conv_weights():
    model = small("course-vit")
    decay, no_decay = param_groups(model, weight_decay=0.2)
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    block = ["attn.in_proj_weight", "attn.out_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"]
    expected = {"visual.conv1.weight", "visual.proj", "text_projection"}
    expected |= {f"visual.transformer.resblocks.0.{b}" for b in block}
    expected |= {f"transformer.resblocks.0.{b}" for b in block}
    assert names_in(model, decay) == expected
    everything = {n for n, _ in model.named_parameters()}
    assert names_in(model, no_decay) == everything - expected
    for name in ["logit_scale", "token_embedding.weight", "positional_embedding",
                 "visual.class_embedding", "visual.positional_embedding", "ln_final.weight",
                 "visual.ln_pre.bias", "transformer.resblocks.0.attn.in_proj_bias"]:
        assert name in names_in(model, no_decay)


def test_resnet_groups_exclude_batchnorm_and_attnpool_positions():
    model = small("course-rn")
    decay, no_decay = param_groups(model, weight_decay=0.1)
    d, nd = names_in(model, decay), names_in(model, no_decay)
    assert "visual.conv1.weight" in d and "visual.layer1.0.conv3.weight" in d
    assert "visual.layer2.0.downsample.0.weight" in d and "visual.attnpool.q_proj.weight" in d
    assert "visual.bn1.weight" in nd and "visual.layer1.0.bn3.weight" in nd
    assert "visual.attnpool.positional_embedding" in nd and "visual.attnpool.q_proj.bias" in nd
    # every decayed parameter is a matrix or a conv kernel
    assert all(p.ndim >= 2 for p in decay["params"])


def test_frozen_parameters_are_left_out():
    model = small("course-vit")
    model.visual.requires_grad_(False)
    groups = param_groups(model, 0.2)
    assert not any(n.startswith("visual.") for g in groups for n in names_in(model, g))


def test_build_optimizer_uses_the_papers_adamw_settings():
    model = small("course-vit")
    opt = build_optimizer(model, lr=1e-3)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.98) and opt.defaults["eps"] == 1e-6
    assert [g["weight_decay"] for g in opt.param_groups] == [0.2, 0.0]
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))  # each parameter once


def test_decoupled_decay_leaves_logit_scale_alone():
    model = small("course-vit")
    opt = build_optimizer(model, lr=0.1, weight_decay=0.5)
    before_scale = model.logit_scale.item()
    before_proj = model.text_projection.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # zero gradient: only decay can move anything
    opt.step()
    assert model.logit_scale.item() == before_scale
    assert torch.allclose(model.text_projection, before_proj * (1 - 0.1 * 0.5))


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, 1e-4),  # warmup: base * 1/10
        (4, 5e-4),  # base * 5/10
        (9, 1e-3),  # last warmup step reaches base
        (10, 1e-3),  # cosine starts at the top
        (55, 0.5e-3),  # halfway through the 90 decay steps: cos(pi/2) = 0
        (40, 0.5 * (1 + math.cos(math.pi / 3)) * 1e-3),  # a third of the way: 0.75 * base
        (100, 0.0),
        (150, 0.0),  # past the end it stays at min_lr
    ],
)
def test_cosine_schedule_at_hand_computed_points(step, expected):
    assert cosine_schedule(step, total_steps=100, warmup_steps=10, base_lr=1e-3) == pytest.approx(expected)


def test_cosine_schedule_with_min_lr_and_no_warmup():
    f = lambda s: cosine_schedule(s, total_steps=20, warmup_steps=0, base_lr=2e-3, min_lr=2e-4)
    assert f(0) == pytest.approx(2e-3)
    assert f(10) == pytest.approx(2e-4 + 0.5 * 1.8e-3)
    assert f(20) == pytest.approx(2e-4)
    lrs = [f(s) for s in range(21)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay


def test_set_lr_applies_to_every_group():
    opt = build_optimizer(small("course-vit"), lr=1.0)
    set_lr(opt, 3e-4)
    assert [g["lr"] for g in opt.param_groups] == [3e-4, 3e-4]
