"""clipedu.experiments.runs: short runs with SigLIP or a fixed temperature, the modality gap, template ensembles."""

import math

import pytest
import torch
import torch.nn.functional as F

from clipedu.embed import encode_texts
from clipedu.experiments import gap as G
from clipedu.experiments import prompts as P
from clipedu.experiments import runs as E
from clipedu.loss import clip_loss, siglip_loss
from clipedu.train.config import LOSSES
from clipedu.train.loop import contrastive_loss
from clipedu.zeroshot import (
    classifier_from_prompts,
    zeroshot_accuracy,
    zeroshot_classifier,
)

# The model of tests/conftest.py's tiny_vit, on 200 images.
TINY = dict(train_size=200, eval_size=40, image_size=24, context_length=24, vocab_size=600, batch_size=16,
            warmup_steps=2, lr=3e-3, model="course-vit", positives="diagonal")


@pytest.fixture(scope="module")
def tiny(tiny_vit):
    return E.setup("shapes-tiny", **TINY, model_overrides=dict(tiny_vit))


def batch(s, n=8):
    from clipedu.transforms import normalize

    images = normalize(s.data.train.images[:n])
    tokens = s.tokenizer([c[0] for c in s.data.train.captions[:n]], context_length=24, truncate=True)
    return images, tokens


# ------------------------------------------------------------------ the runs


def test_models_start_from_the_same_weights_with_each_loss_and_temperature(tiny):
    clip = E.build_run_model(tiny.config, tiny.tokenizer.vocab_size)
    sig = E.build_run_model(tiny.config, tiny.tokenizer.vocab_size, "siglip")
    fixed = E.build_run_model(tiny.config, tiny.tokenizer.vocab_size, temperature=0.5)
    assert clip.logit_scale.item() == pytest.approx(math.log(1 / 0.07)) and clip.logit_scale.requires_grad
    assert clip.logit_bias is None and fixed.logit_bias is None
    assert sig.logit_scale.item() == pytest.approx(math.log(10)) and sig.logit_bias.item() == -10.0
    assert sig.logit_bias.requires_grad and "logit_bias" in dict(sig.named_parameters())
    assert fixed.logit_scale.item() == pytest.approx(math.log(2)) and not fixed.logit_scale.requires_grad
    a, b = clip.state_dict(), sig.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k != "logit_scale")
    with pytest.raises(ValueError, match="unknown loss 'infonce'; choose one of clip, siglip"):
        E.build_run_model(tiny.config, 600, "infonce")
    with pytest.raises(ValueError, match="positive"):
        E.build_run_model(tiny.config, 600, temperature=0.0)


def test_the_run_loss_is_the_chosen_loss_on_the_model_outputs(tiny):
    images, tokens = batch(tiny)
    for loss in LOSSES:
        model = E.build_run_model(tiny.config, tiny.tokenizer.vocab_size, loss)
        with torch.no_grad():
            img, txt, scale = model(images, tokens)
            want = siglip_loss(img, txt, scale, -10.0) if loss == "siglip" else clip_loss(img, txt, scale)
            assert contrastive_loss(model, images, tokens).item() == pytest.approx(want.item(), rel=1e-6)
    # SigLIP at s = 10, b = -10: the loss is almost all in the N positive pairs, the negatives are nearly free
    positives = F.softplus(-(scale * (img * txt).sum(-1) - 10.0)).sum() / len(img)
    assert want.item() == pytest.approx(positives.item(), abs=0.05) and positives.item() > 5


def test_train_run_learns_and_logs_every_step(tiny):
    run = E.train_run(tiny, "clip", steps=24, eval_every=12)
    assert [h["step"] for h in run.history] == list(range(1, 25))
    assert run.history[-1]["images_seen"] == 24 * 16 == run.final["images_seen"]
    assert list(run.history[0]) == ["step", "images_seen", "seconds", "loss", "lr", "logit_scale"]  # step_record's
    assert run.final["step"] == 24
    assert "zeroshot_acc" in run.history[11] and "zeroshot_acc" in run.history[-1]
    assert 0 <= run.final["zeroshot_heldout_acc"] <= 1 and "t2i_r1" in run.final
    first, last = run.history[0]["loss"], sum(h["loss"] for h in run.history[-4:]) / 4
    assert last < first
    assert run.history[-1]["logit_scale"] != pytest.approx(1 / 0.07)  # learned
    assert not run.model.training


def test_a_fixed_temperature_stays_fixed_even_above_the_clamp(tiny):
    for t in (0.05, 2.0):  # a learned one is clamped to T <= 1; a fixed one is taken as given
        run = E.train_run(tiny, "clip", temperature=t, steps=5)
        assert all(h["logit_scale"] == pytest.approx(1 / t) for h in run.history)


def test_siglip_run_moves_its_bias_at_adams_pace(tiny):
    run = E.train_run(tiny, "siglip", steps=10, lr=1e-2, warmup_steps=1)
    biases = [h["logit_bias"] for h in run.history]
    assert biases[-1] > -10  # almost every pair is a negative: the bias climbs towards the balanced value
    # Adam moves a scalar by about lr per step at most
    assert abs(biases[-1] + 10) <= 10 * 1e-2 * 1.05


def test_batch_sweep_keeps_the_images_seen_equal(tiny):
    lines = []
    results = E.batch_sweep(tiny, (8, 16), images=64, log=lines.append)
    assert [(r["variant"], r["batch_size"], r["step"]) for r in results] == [
        ("clip", 8, 8), ("siglip", 8, 8), ("clip", 16, 4), ("siglip", 16, 4)]
    assert all(r["images_seen"] == 64 for r in results)
    assert "logit_bias" in results[1] and "logit_bias" not in results[0]
    assert len(lines) == 4 and "siglip" in lines[1]
    balanced = E.batch_sweep(tiny, (8,), images=8, variants={"b*": dict(loss="siglip", bias="balanced")}, lr=0.0)
    assert balanced[0]["logit_bias"] == pytest.approx(-math.log(7))  # lr 0: still at its start
    with pytest.raises(ValueError, match="fewer than one batch"):
        E.batch_sweep(tiny, (128,), images=64)


def test_balanced_bias_is_the_log_odds_of_one_match_in_n(tiny):
    for n in (2, 16, 512):
        assert torch.sigmoid(torch.tensor(E.balanced_bias(n), dtype=torch.float64)).item() == pytest.approx(1 / n)
    assert E.balanced_bias(32_768) == pytest.approx(-10.397, abs=1e-3)
    model = E.build_run_model(tiny.config, tiny.tokenizer.vocab_size, "siglip", bias="balanced")
    assert model.logit_bias.item() == pytest.approx(-math.log(15))  # TINY's batch of 16
    assert E.build_run_model(tiny.config, 600, "siglip", bias=-3).logit_bias.item() == -3.0
    with pytest.raises(ValueError, match="only the siglip loss has a bias"):
        E.build_run_model(tiny.config, 600, "clip", bias=-3)
    with pytest.raises(ValueError, match="at least 2"):
        E.balanced_bias(1)


# ------------------------------------------------------------------ the modality gap


def test_gap_of_two_opposite_clouds_by_hand():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = -img
    assert torch.allclose(G.gap_vector(3 * img, txt), torch.tensor([1.0, 1.0]))  # lengths do not matter
    # closing it: images move by -gap/2, texts by +gap/2; here both clouds end centred on 0
    i, t = G.close_gap(img, txt, 1.0)
    assert torch.allclose(i, torch.tensor([[1.0, -1.0], [-1.0, 1.0]]) / math.sqrt(2))
    assert G.gap_vector(i, t).norm() < 1e-6
    assert torch.allclose(i.norm(dim=-1), torch.ones(2))
    i0, t0 = G.close_gap(3 * img, txt, 0.0)
    assert torch.allclose(i0, img) and torch.allclose(t0, txt)


def test_closing_shrinks_the_gap_and_widening_grows_it():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(30, 8, generator=g) + 2.0, dim=-1)  # a narrow cone
    txt = F.normalize(torch.randn(30, 8, generator=g) - 1.0, dim=-1)  # another one
    gap = G.gap_vector(img, txt).norm()
    assert G.gap_vector(*G.close_gap(img, txt, 1.0)).norm() < 0.2 * gap
    assert G.gap_vector(*G.close_gap(img, txt, -1.0)).norm() > gap  # lam < 0 widens it


def test_shifted_accuracy_without_a_shift_is_zero_shot_accuracy(tiny):
    model = E.build_run_model(tiny.config, tiny.tokenizer.vocab_size).eval()
    img, txt = G.pair_features(model, tiny.tokenizer, tiny.data.retrieval_set)
    assert img.shape == txt.shape == (40, 32)
    first_caption = tiny.data.retrieval_set.captions[3][0]
    assert torch.allclose(txt[3], encode_texts(model, tiny.tokenizer, [first_caption], truncate=True)[0])
    out = G.shifted_accuracy(model, tiny.tokenizer, tiny.data, [0.0, 1.0], G.gap_vector(img, txt))
    classifier = classifier_from_prompts(model, tiny.tokenizer, tiny.data.class_prompts)
    for name, dataset in tiny.data.zeroshot_sets.items():
        assert len(out[name]) == 2
        assert out[name][0] == pytest.approx(zeroshot_accuracy(model, dataset.images, dataset.labels, classifier))


# ------------------------------------------------------------------ templates


def test_template_ensembles_match_zeroshot_classifier(tiny):
    model = E.build_run_model(tiny.config, tiny.tokenizer.vocab_size).eval()
    names, templates = ["red circle", "blue square", "green star"], ["a {}", "a photo of a {}", "{}"]
    feats = P.template_features(model, tiny.tokenizer, [[t.format(n) for t in templates] for n in names])
    assert feats.shape == (3, 3, 32)
    with pytest.raises(ValueError, match="same number"):
        P.template_features(model, tiny.tokenizer, [["a red circle"], ["a blue square", "a square"]])
    assert torch.allclose(feats[1, 1], encode_texts(model, tiny.tokenizer, ["a photo of a blue square"])[0])
    g = torch.Generator().manual_seed(0)
    image_features = torch.randn(20, 32, generator=g)
    labels = torch.randint(0, 3, (20,), generator=g)
    for chosen in ([0], [1, 2], [0, 1, 2]):
        want = (image_features @ zeroshot_classifier(model, tiny.tokenizer, names, [templates[t] for t in chosen])
                ).argmax(-1).eq(labels).float()
        assert torch.equal(P.ensemble_correct(image_features, labels, feats, chosen), want)


def test_greedy_templates_pick_the_helpful_ones_and_interval95():
    # class c's template 0 points the wrong way, templates 1 and 2 point at class c's image
    eye = torch.eye(3)
    feats = torch.stack([torch.roll(eye, 1, 0), eye, eye + 0.1], dim=1)  # [C=3, T=3, D=3]
    image_features, labels = eye.repeat(2, 1), torch.arange(3).repeat(2)
    assert P.ensemble_correct(image_features, labels, feats, [0]).sum() == 0
    assert P.greedy_templates(image_features, labels, feats, 2) == [1, 2]  # a tie goes to the earlier template
    assert len(P.greedy_templates(image_features, labels, feats, 10)) == 3
    values = torch.tensor([1.0, 0.0, 1.0, 1.0])
    assert P.interval95(values) == pytest.approx(1.96 * values.std().item() / 2)
    assert P.interval95(torch.tensor([1.0])) == 0.0
