"""Linear probes on frozen image features, few-shot curves (paper 3.2, Fig. 6), and fine-tuning.

The image tower is frozen; a multinomial logistic regression (scikit-learn,
L-BFGS) is fit on its features. This measures what the representation holds,
independently of the text tower. The paper compares zero-shot CLIP with probes
trained on k examples per class: zero-shot matches about a 4-shot probe.

`torch_linear_probe` is the same probe as an `nn.Linear` trained by gradient
descent. Fine-tuning unfreezes the tower: `ImageClassifier` puts a linear head on
the image tower (optionally initialised from the zero-shot classifier) and
`finetune_classifier` trains both with two learning rates; `finetune_contrastive`
continues CLIP's own contrastive training on new captioned data.
"""

import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import nn

from clipedu.embed import encode_images, input_resolution, prepare_images


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


def fit_probe(train_features: np.ndarray, train_labels: np.ndarray, C: float = 0.316,
              max_iter: int = 1000) -> LogisticRegression:
    """The fitted L-BFGS logistic regression (use its `.predict` on any test split).

    C is the inverse L2 strength; 0.316 is openai's README value (the paper tunes it
    per dataset on a validation split).
    """
    train_labels = np.asarray(train_labels)
    if len(np.unique(train_labels)) < 2:
        raise ValueError("a linear probe needs training examples from at least two classes")
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=0)
    with warnings.catch_warnings():  # a 1-shot probe has as many classes as samples, which sklearn warns about
        warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
        return clf.fit(np.asarray(train_features), train_labels)


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    C: float = 0.316,
    max_iter: int = 1000,
) -> float:
    """Fit an L-BFGS logistic regression on train features (`fit_probe`); return test accuracy."""
    clf = fit_probe(train_features, train_labels, C=C, max_iter=max_iter)
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


def torch_linear_probe(features, labels, num_classes: int, steps: int = 300, lr: float = 1e-3,
                       optimizer: str = "adam", weight_decay: float = 0.0, seed: int = 0) -> nn.Linear:
    """An `nn.Linear(D, num_classes)` fit on frozen features by full-batch gradient descent.

    The torch version of the probe (the "freeze, add nn.Linear, Adam 1e-3" recipe).
    optimizer="sgd" is plain gradient descent from zero weights, which is fully
    determined by (features, labels, steps, lr); "adam" starts from nn.Linear's
    seeded random initialisation.
    """
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    torch.manual_seed(seed)
    layer = nn.Linear(x.shape[1], num_classes)
    if optimizer == "sgd":
        with torch.no_grad():
            layer.weight.zero_()
            layer.bias.zero_()
        opt = torch.optim.SGD(layer.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(layer.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(layer(x), y).backward()
        opt.step()
    return layer


class ImageClassifier(nn.Module):
    """A CLIP image tower with a linear head on its L2-normalised embedding: an ordinary classifier.

    `head` defaults to a fresh nn.Linear(embed_dim, num_classes); pass
    `clipedu.zeroshot.linear_classifier(classifier)` to start from the zero-shot
    classifier, so that fine-tuning starts at zero-shot accuracy.
    """

    def __init__(self, model: nn.Module, num_classes: int | None = None, head: nn.Linear | None = None):
        super().__init__()
        if head is None and num_classes is None:
            raise ValueError("ImageClassifier needs num_classes or a head")
        self.visual = model.visual
        self.resolution = input_resolution(model)
        self.head = head if head is not None else nn.Linear(model.config.embed_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed (float) or uint8 images -> class logits [N, C]."""
        x = prepare_images(images, self.resolution).to(self.head.weight.device)
        return self.head(F.normalize(self.visual(x), dim=-1))

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted classes [N] (in eval mode; the training mode is restored)."""
        was_training = self.training
        self.eval()
        out = torch.cat([self(images[i:i + batch_size]).argmax(-1).cpu() for i in range(0, len(images), batch_size)])
        self.train(was_training)
        return out


