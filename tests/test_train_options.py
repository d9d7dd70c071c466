"""The two TrainConfig options the experiments of notebooks 18 and 19 need (`loss`, `learn_temperature`),
and the one training step every loop takes (`train_step`, `step_record`)."""

import contextlib
import math

import pytest
import torch

from clipedu.checkpoint import load_checkpoint
from clipedu.loss import clamp_logit_scale, clip_loss, siglip_loss
from clipedu.train.config import apply_overrides, get_preset
from clipedu.train.distributed import DistState
from clipedu.train.loop import contrastive_backward, train_step
from clipedu.train.optim import build_optimizer, set_lr
from clipedu.train.setup import init_model
from clipedu.train.state import load_model


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
    assert model.logit_bias is None and "logit_bias" not in model.state_dict() and model.logit_scale.requires_grad


def test_siglip_starts_at_scale_10_and_bias_minus_10(tiny_clip):
    model = tiny_clip("siglip")
    assert model.logit_scale.item() == pytest.approx(math.log(10))
    assert model.logit_bias.item() == pytest.approx(-10.0) and model.logit_bias.requires_grad
    # the bias is the model's own parameter, registered after CLIP's: the other parameters keep their order
    clip = tiny_clip()
    names = [n for n, _ in model.named_parameters()]
    assert names[:4] == ["positional_embedding", "text_projection", "logit_scale", "logit_bias"]
    assert [n for n in names if n != "logit_bias"] == [n for n, _ in clip.named_parameters()]
    assert [k for k in model.state_dict() if k != "logit_bias"] == list(clip.state_dict())
    assert model.config.init_logit_bias == -10.0


def test_contrastive_backward_computes_the_chosen_loss_and_accumulates_it_exactly(tiny_clip):
    for loss_name in ("clip", "siglip"):
        model = tiny_clip(loss_name)
        images, tokens = batch(model)
        with torch.no_grad():
            img, txt, scale = model(images, tokens)
            want = (siglip_loss(img, txt, scale, model.logit_bias) if loss_name == "siglip"
                    else clip_loss(img, txt, scale)).item()
        grads = []
        for accum in (1, 2):
            model.zero_grad()
            got = contrastive_backward(model, images, tokens, accum_steps=accum, dist=DistState(),
                                       autocast=contextlib.nullcontext())
            assert got == pytest.approx(want, rel=1e-5), (loss_name, accum)
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys()
        if loss_name == "siglip":
            assert "logit_bias" in grads[0]
        for n in grads[0]:
            assert torch.allclose(grads[0][n], grads[1][n], atol=1e-5), (loss_name, n)


def test_a_siglip_run_learns_its_bias_and_saves_it(tmp_path, tiny_run, read_history):
    tiny_run(tmp_path, steps=4, loss="siglip")
    h = read_history(tmp_path)
    # at s = 10, b = -10 a positive pair costs log(1 + exp(10 - 10 cos)), about 10 - 10 cos; negatives almost nothing
    assert 5 < h[0]["loss"] < 12
    assert all(math.isfinite(r["loss"]) for r in h)
    assert h[-1]["logit_bias"] != pytest.approx(-10.0, abs=1e-6)  # learned
    assert "logit_bias" in load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    model, _, _ = load_model(tmp_path / "checkpoint.pt")  # rebuilt with its bias from the saved config
    assert model.logit_bias.item() == pytest.approx(h[-1]["logit_bias"])


def test_unknown_loss_is_rejected(tmp_path, tiny_run):
    with pytest.raises(ValueError, match="unknown loss 'softmax'; choose one of clip, siglip"):
        tiny_run(tmp_path, steps=1, loss="softmax")


def test_a_fixed_temperature_stays_put_while_the_rest_learns(tmp_path, tiny_run, tiny_config, read_history):
    tiny_run(tmp_path, steps=5, learn_temperature=False, init_temperature=0.5)
    assert [r["logit_scale"] for r in read_history(tmp_path)] == pytest.approx([2.0] * 5, rel=1e-6)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    config = apply_overrides(get_preset("shapes-tiny"), **tiny_config, learn_temperature=False, init_temperature=0.5)
    fresh = init_model(config, vocab_size=ckpt["token_embedding.weight"].shape[0])
    assert not torch.equal(fresh.visual.proj, ckpt["visual.proj"])  # the towers did train
    # a learned temperature does move
    tiny_run(tmp_path / "learned", steps=5, init_temperature=0.5)
    assert read_history(tmp_path / "learned")[-1]["logit_scale"] != pytest.approx(2.0, rel=1e-6)


# ------------------------------------------------------------------ one training step

def test_train_step_is_the_step_written_out(tiny_clip):
    """Set the lr, zero the gradients, loss + backward, clip, AdamW step, clamp: bit for bit."""
    for loss_name in ("clip", "siglip"):
        a, b = tiny_clip(loss_name), tiny_clip(loss_name)
        images, tokens = batch(a)
        opt_a, opt_b = build_optimizer(a, 1e-3, 0.2), build_optimizer(b, 1e-3, 0.2)
        got = train_step(a, (images, tokens), opt_a, lr=5e-3, grad_clip=0.5, max_logit_scale=100.0)
        set_lr(opt_b, 5e-3)
        opt_b.zero_grad()
        img, txt, scale = b(images, tokens)
        want = siglip_loss(img, txt, scale, b.logit_bias) if loss_name == "siglip" else clip_loss(img, txt, scale)
        want.backward()
        torch.nn.utils.clip_grad_norm_(b.parameters(), 0.5)
        opt_b.step()
        clamp_logit_scale(b, 100.0)
        assert got == want.item()
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            assert torch.equal(p, q), (loss_name, name)


def test_train_step_options_switch_off_the_schedule_clipping_and_clamp(tiny_clip):
    model = tiny_clip()
    images, tokens = batch(model)
    optimizer = build_optimizer(model, 1e-3, 0.2)
    set_lr(optimizer, 0.0)
    before = [p.detach().clone() for p in model.parameters()]
    train_step(model, (images, tokens), optimizer)  # lr=None: the optimizer's rate (0) is kept
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(200.0))
    train_step(model, (images, tokens), optimizer, lr=1e-3)  # no max_logit_scale: no clamp
    assert model.logit_scale.exp().item() > 150
    train_step(model, (images, tokens), optimizer, lr=1e-3, max_logit_scale=100.0)
    assert model.logit_scale.exp().item() == pytest.approx(100.0)
    clipped, unclipped = tiny_clip(), tiny_clip()
    for model, clip in ((clipped, 1e-3), (unclipped, None)):
        train_step(model, (images, tokens), build_optimizer(model, 1e-3, 0.2), lr=1e-2, grad_clip=clip)
    assert not torch.equal(clipped.visual.proj, unclipped.visual.proj)


def test_a_loss_fn_that_backpropagates_itself_is_not_backpropagated_again(tiny_clip):
    a, b = tiny_clip(), tiny_clip()
    images, tokens = batch(a)
    got = train_step(a, (images, tokens), build_optimizer(a, 1e-3, 0.2), contrastive_backward, lr=1e-3)
    want = train_step(b, (images, tokens), build_optimizer(b, 1e-3, 0.2), lr=1e-3)
    assert isinstance(got, float) and got == want
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_one_process_scores_with_clipedu_loss_not_the_distributed_module(tmp_path, monkeypatch, tiny_run):
    import clipedu.train.contrastive as contrastive

    def refuse(*args, **kwargs):
        raise AssertionError("a single-process run went through clipedu.train.distributed's loss")

    for name in ("distributed_clip_loss", "distributed_siglip_loss", "all_reduce_mean"):
        monkeypatch.setattr(contrastive, name, refuse)
    tiny_run(tmp_path / "clip", steps=2, evaluate_model=False)
    tiny_run(tmp_path / "siglip", steps=2, loss="siglip", accum_steps=2, evaluate_model=False)


def test_every_record_of_the_course_loop_has_the_shared_keys(tmp_path, tiny_run, read_history):
    tiny_run(tmp_path, steps=2, loss="siglip", evaluate_model=False)
    for record in read_history(tmp_path):
        assert list(record) == ["step", "images_seen", "seconds", "loss", "lr", "logit_scale", "logit_bias"]
