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
