"""Linear probes on frozen image features, and few-shot curves (paper 3.2, Fig. 6).

The image tower is frozen; a multinomial logistic regression (scikit-learn,
L-BFGS) is fit on its features. This measures what the representation holds,
independently of the text tower. The paper compares zero-shot CLIP with probes
trained on k examples per class: zero-shot matches about a 4-shot probe.
"""

from typing import Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from clipedu.zeroshot import encode_images


def extract_features(
    model: nn.Module, dataset, batch_size: int = 256, normalize: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, D] float32, labels [N]) of a labelled dataset through the image tower.

    Like openai's probe recipe, features are the unnormalised `encode_image` output
    unless normalize=True. `dataset` needs `.labels` and either `.images` (uint8
    [N, 3, H, W]) or items `(image, captions)`.
    """
    if getattr(dataset, "labels", None) is None:
        raise ValueError("extract_features needs a labelled dataset (with a .labels attribute)")
    images = getattr(dataset, "images", None)
    if images is None:
        images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    feats = encode_images(model, images, batch_size=batch_size, normalize=normalize)
    return feats.numpy().astype(np.float32), np.asarray(dataset.labels)


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    C: float = 0.316,
    max_iter: int = 1000,
) -> float:
    """Fit an L-BFGS logistic regression on train features; return test accuracy.

    C is the inverse L2 strength; 0.316 is openai's README value (the paper tunes it
    per dataset on a validation split).
    """
    train_labels = np.asarray(train_labels)
    if len(np.unique(train_labels)) < 2:
        raise ValueError("a linear probe needs training examples from at least two classes")
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=0)
    clf.fit(np.asarray(train_features), train_labels)
    return float((clf.predict(np.asarray(test_features)) == np.asarray(test_labels)).mean())


def sample_shots(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """Indices of `shots` randomly chosen examples of every class (sorted)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < shots:
            raise ValueError(f"class {c} has {len(members)} training examples, fewer than {shots} shots")
        chosen.append(rng.choice(members, size=shots, replace=False))
    return np.sort(np.concatenate(chosen))


def few_shot_curve(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    shots: Sequence[int] = (1, 2, 4, 8, 16),
    seeds: Sequence[int] = (0, 1, 2),
    C: float = 0.316,
) -> dict[int, dict]:
    """Probe accuracy with k examples per class, for each k: {k: {"mean", "std", "runs"}}."""
    curve = {}
    for k in shots:
        runs = []
        for seed in seeds:
            idx = sample_shots(train_labels, k, seed)
            runs.append(linear_probe(train_features[idx], np.asarray(train_labels)[idx],
                                     test_features, test_labels, C=C))
        curve[k] = {"mean": float(np.mean(runs)), "std": float(np.std(runs)), "runs": runs}
    return curve
