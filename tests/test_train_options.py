"""The two TrainConfig options the experiments of notebooks 18 and 19 need: `loss` and `learn_temperature`."""

import contextlib
import json
import math

import pytest
import torch
from test_train import (  # the same tiny model and short runs as the loop's own tests
    TINY,
    run,
)

from clipedu.checkpoint import load_checkpoint
from clipedu.loss import clip_loss, siglip_loss
from clipedu.train.config import apply_overrides, get_preset
from clipedu.train.distributed import DistState
from clipedu.train.loop import contrastive_backward
from clipedu.train.setup import init_model


def history(out):
    return json.loads((out / "metrics.json").read_text())["history"]


def batch(model, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 24, 24, generator=g)
    tokens = torch.randint(1, 500, (n, 24), generator=g)
    tokens[:, 10] = model.vocab_size - 1  # end of text: the largest id
    return images, tokens


def test_defaults_are_clip_with_a_learned_temperature():
    config = get_preset("shapes-tiny")
    assert config.loss == "clip" and config.learn_temperature is True
    model = init_model(get_preset("shapes-tiny"), vocab_size=600)
    assert not hasattr(model, "logit_bias") and model.logit_scale.requires_grad


def test_siglip_starts_at_scale_10_and_bias_minus_10():
    model = init_model(apply_overrides(get_preset("shapes-tiny"), **TINY, loss="siglip"), vocab_size=600)
    assert model.logit_scale.item() == pytest.approx(math.log(10))
    assert model.logit_bias.item() == pytest.approx(-10.0) and model.logit_bias.requires_grad


def test_contrastive_backward_computes_the_chosen_loss_and_accumulates_it_exactly():
    for loss_name in ("clip", "siglip"):
        model = init_model(apply_overrides(get_preset("shapes-tiny"), **TINY, loss=loss_name), vocab_size=600)
        images, tokens = batch(model)
        with torch.no_grad():
            img, txt, scale = model(images, tokens)
            want = (siglip_loss(img, txt, scale, model.logit_bias) if loss_name == "siglip"
                    else clip_loss(img, txt, scale)).item()
        grads = []
        for accum in (1, 2):
            model.zero_grad()
            got = contrastive_backward(model, images, tokens, accum, DistState(), contextlib.nullcontext(),
                                       loss=loss_name)
            assert got == pytest.approx(want, rel=1e-5), (loss_name, accum)
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys()
        if loss_name == "siglip":
            assert "logit_bias" in grads[0]
        for n in grads[0]:
            assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5), (loss_name, n)


def test_a_siglip_run_learns_its_bias_and_saves_it(tmp_path):
    run(tmp_path, steps=4, loss="siglip")
    h = history(tmp_path)
    # at s = 10, b = -10 a positive pair costs log(1 + exp(10 - 10 cos)), about 10 - 10 cos; negatives almost nothing
    assert 5 < h[0]["loss"] < 12
    assert all(math.isfinite(r["loss"]) for r in h)
    assert h[-1]["logit_bias"] != pytest.approx(-10.0, abs=1e-6)  # learned
    assert "logit_bias" in load_checkpoint(tmp_path / "checkpoint.pt")["model"]


def test_unknown_loss_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown loss 'softmax'; use 'clip' or 'siglip'"):
        run(tmp_path, steps=1, loss="softmax")


def test_a_fixed_temperature_stays_put_while_the_rest_learns(tmp_path):
    run(tmp_path, steps=5, learn_temperature=False, init_temperature=0.5)
    assert [r["logit_scale"] for r in history(tmp_path)] == pytest.approx([2.0] * 5, rel=1e-6)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    config = apply_overrides(get_preset("shapes-tiny"), **TINY, learn_temperature=False, init_temperature=0.5)
    fresh = init_model(config, vocab_size=ckpt["token_embedding.weight"].shape[0])
    assert not torch.equal(fresh.visual.proj, ckpt["visual.proj"])  # the towers did train
    # a learned temperature does move
    run(tmp_path / "learned", steps=5, init_temperature=0.5)
    assert history(tmp_path / "learned")[-1]["logit_scale"] != pytest.approx(2.0, rel=1e-6)
