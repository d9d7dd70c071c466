import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from clipedu.probe import extract_features, few_shot_curve, linear_probe, sample_shots


def blobs(n_per_class, n_classes=4, dim=16, spread=0.3, seed=0):
    """Gaussian clusters around well separated random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 3
    labels = np.repeat(np.arange(n_classes), n_per_class)
    feats = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return feats.astype(np.float32), labels


def test_separable_features_are_probed_perfectly():
    xtr, ytr = blobs(20, seed=0)
    xte, yte = blobs(50, seed=0)  # same centres, more points
    assert linear_probe(xtr, ytr, xte, yte) == 1.0


def test_probe_equals_sklearn_reference_on_noisy_data():
    xtr, ytr = blobs(30, spread=3.0, seed=2)
    rng = np.random.default_rng(3)
    xte = xtr + rng.normal(size=xtr.shape).astype(np.float32) * 2
    yte = ytr
    acc = linear_probe(xtr, ytr, xte, yte, C=0.05)
    ref = LogisticRegression(C=0.05, max_iter=1000).fit(xtr, ytr).predict(xte)
    assert acc == pytest.approx((ref == yte).mean())
    assert 0.3 < acc < 1.0  # a non-trivial case


def test_random_labels_probe_near_chance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    y = rng.integers(0, 4, 400)
    acc = linear_probe(x[:200], y[:200], x[200:], y[200:])
    assert acc < 0.45  # chance is 0.25


def test_sample_shots_takes_k_per_class_deterministically():
    labels = np.array([0] * 5 + [1] * 7 + [2] * 4)
    idx = sample_shots(labels, 3, seed=0)
    assert np.bincount(labels[idx]).tolist() == [3, 3, 3]
    assert len(set(idx.tolist())) == 9
    assert np.array_equal(idx, sample_shots(labels, 3, seed=0))
    assert not np.array_equal(idx, sample_shots(labels, 3, seed=1))
    with pytest.raises(ValueError, match="class 2 has 4 training examples, fewer than 5"):
        sample_shots(labels, 5, seed=0)


def test_few_shot_curve_rises_with_shots():
    xtr, ytr = blobs(20, n_classes=5, spread=2.5, seed=4)
    rng = np.random.default_rng(5)
    xte = xtr + rng.normal(size=xtr.shape).astype(np.float32)
    curve = few_shot_curve(xtr, ytr, xte, ytr, shots=(1, 16), seeds=(0, 1, 2))
    assert set(curve) == {1, 16}
    assert len(curve[1]["runs"]) == 3
    assert curve[1]["mean"] == pytest.approx(np.mean(curve[1]["runs"]))
    assert curve[16]["mean"] > curve[1]["mean"]


class IdentityTower(torch.nn.Module):
    """A stand-in image tower: the feature is the mean colour of the image."""

    class config:
        image_resolution = 4

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode_image(self, x):
        return x.float().mean(dim=(2, 3))


class TinyDataset:
    def __init__(self):
        self.images = torch.zeros(6, 3, 4, 4)
        self.images[:3, 0] = 1.0  # red
        self.images[3:, 2] = 1.0  # blue
        self.labels = torch.tensor([0, 0, 0, 1, 1, 1])


def test_extract_features_runs_the_tower_in_batches():
    feats, labels = extract_features(IdentityTower(), TinyDataset(), batch_size=4)
    assert feats.shape == (6, 3) and feats.dtype == np.float32
    assert np.allclose(feats[0], [1, 0, 0]) and np.allclose(feats[5], [0, 0, 1])
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="labelled"):
        ds = TinyDataset()
        ds.labels = None
        extract_features(IdentityTower(), ds)


def test_torch_probe_sgd_matches_hand_written_gradient_descent():
    from clipedu.probe import torch_linear_probe

    x, y = blobs(10, n_classes=3, dim=4, spread=1.0, seed=6)
    layer = torch_linear_probe(x, y, 3, steps=5, lr=0.1, optimizer="sgd")
    # independent reference: softmax regression gradients written out in numpy, float64
    w, b = np.zeros((3, 4)), np.zeros(3)
    onehot = np.eye(3)[y]
    for _ in range(5):
        z = x @ w.T + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) / len(x)
        w, b = w - 0.1 * g.T @ x, b - 0.1 * g.sum(0)
    assert np.allclose(layer.weight.detach().numpy(), w, atol=1e-5)
    assert np.allclose(layer.bias.detach().numpy(), b, atol=1e-6)


def test_torch_probe_with_adam_separates_blobs():
    from clipedu.probe import torch_linear_probe

    xtr, ytr = blobs(20, seed=0)
    xte, yte = blobs(50, seed=0)
    layer = torch_linear_probe(xtr, ytr, 4, steps=200, lr=1e-2)
    with torch.no_grad():
        pred = layer(torch.tensor(xte)).argmax(-1).numpy()
    assert (pred == yte).mean() == 1.0
    with pytest.raises(ValueError, match="optimizer"):
        torch_linear_probe(xtr, ytr, 4, optimizer="lbfgs")


class ColourTower(torch.nn.Module):
    """A tiny trainable image tower: mean colour -> linear map to a 3-d embedding."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.proj(x.float().mean(dim=(2, 3)))


class TinyCLIP(torch.nn.Module):
    class config:
        image_resolution = 4
        embed_dim = 3

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.visual = ColourTower()


def colour_images(n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(3, (n,), generator=g)
    images = torch.full((n, 3, 4, 4), 40, dtype=torch.uint8)
    images[torch.arange(n), labels] = 220  # one bright channel per class
    return images, labels


def test_image_classifier_uses_the_head_on_normalised_features():
    from clipedu.probe import ImageClassifier
    from clipedu.transforms import normalize

    model = TinyCLIP()
    head = torch.nn.Linear(3, 2)
    clf = ImageClassifier(model, head=head)
    images, _ = colour_images(5, seed=0)
    with torch.no_grad():
        feats = model.visual(normalize(images))
        want = head(feats / feats.norm(dim=-1, keepdim=True))
        assert torch.allclose(clf(images), want, atol=1e-6)
    assert torch.equal(clf.predict(images, batch_size=2), want.argmax(-1))
    with pytest.raises(ValueError, match="num_classes or a head"):
        ImageClassifier(model)


def test_finetune_classifier_learns_and_respects_a_frozen_backbone():
    from clipedu.probe import ImageClassifier
    from clipedu.train.finetune import finetune_classifier

    images, labels = colour_images(60, seed=1)
    clf = ImageClassifier(TinyCLIP(), num_classes=3)
    losses = finetune_classifier(clf, images, labels, steps=150, batch_size=16, lr_backbone=1e-2, lr_head=5e-2)
    assert len(losses) == 150 and np.mean(losses[-10:]) < np.mean(losses[:10])
    test_images, test_labels = colour_images(30, seed=2)
    assert (clf.predict(test_images) == test_labels).float().mean() > 0.9
    frozen = ImageClassifier(TinyCLIP(), num_classes=3)
    before = frozen.visual.proj.weight.detach().clone()
    finetune_classifier(frozen, images, labels, steps=5, batch_size=8, lr_backbone=0.0)
    assert torch.equal(frozen.visual.proj.weight, before)


def tiny_clip_and_data():
    from clipedu.data.contract import CaptionedImages
    from clipedu.model import CLIP, CLIPConfig
    from clipedu.tokenizer import BPETokenizer

    images, labels = colour_images(32, seed=3)
    names = ["red", "green", "blue"]
    captions = [[f"a {names[c]} square", f"something {names[c]}", f"a {names[c]} thing, number {i % 4}"]
                for i, c in enumerate(labels.tolist())]  # 18 distinct captions: batches of 8 need no duplicates
    tokenizer = BPETokenizer.train([c for caps in captions for c in caps], vocab_size=540)
    config = CLIPConfig(embed_dim=16, image_resolution=4, vision_layers=1, vision_width=16, vision_patch_size=2,
                        context_length=8, vocab_size=tokenizer.vocab_size, transformer_width=16,
                        transformer_heads=2, transformer_layers=1, vision_heads=2)
    torch.manual_seed(0)
    return CLIP(config), tokenizer, CaptionedImages(images, captions, labels, names)


def test_finetune_contrastive_halves_average_to_the_symmetric_loss():
    import copy

    from clipedu.train.finetune import finetune_contrastive

    model, tokenizer, data = tiny_clip_and_data()
    first = {d: finetune_contrastive(copy.deepcopy(model), tokenizer, data, steps=1, batch_size=8, directions=d)[0]
             for d in ("both", "image_to_text", "text_to_image")}
    # the same seed draws the same first batch, so the symmetric loss is the mean of its halves
    assert first["both"] == pytest.approx((first["image_to_text"] + first["text_to_image"]) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="directions"):
        finetune_contrastive(model, tokenizer, data, steps=1, directions="sideways")


def test_finetune_contrastive_lowers_the_loss_and_clamps_the_temperature():
    import math

    from clipedu.train.finetune import finetune_contrastive

    model, tokenizer, data = tiny_clip_and_data()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0) - 1e-4)
    losses = finetune_contrastive(model, tokenizer, data, steps=60, batch_size=8, lr=3e-3)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert model.logit_scale.exp().item() <= 100.0 + 1e-3
    assert not model.training


def test_fit_probe_returns_the_model_linear_probe_scores():
    from clipedu.probe import fit_probe

    xtr, ytr = blobs(30, spread=3.0, seed=2)
    xte, yte = blobs(40, spread=3.0, seed=2)
    clf = fit_probe(xtr, ytr, C=0.05)
    assert linear_probe(xtr, ytr, xte, yte, C=0.05) == pytest.approx((clf.predict(xte) == yte).mean())
    with pytest.raises(ValueError, match="at least two classes"):
        fit_probe(xtr[:3], np.zeros(3))
