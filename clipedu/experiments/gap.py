"""The modality gap (notebook 19): measure it, then close or widen it and watch zero-shot accuracy.

Image and text embeddings of a trained CLIP sit in two separate cones of the
sphere (Liang et al. 2022). `gap_vector` is the difference of their centres;
`close_gap` moves each side half-way along it; `shifted_accuracy` reports what
that shift does to zero-shot classification.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clipedu.embed import encode_images, encode_texts
from clipedu.train.setup import (
    TrainData,
)
from clipedu.zeroshot import (
    classifier_from_prompts,
    classify_features,
)


def gap_vector(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """The gap vector: the mean of the unit image embeddings minus the mean of the unit text embeddings.

    Its length and the cones' widths are `clipedu.course.maps.modality_gap`'s.
    """
    return F.normalize(image_features.float(), dim=-1).mean(0) - F.normalize(text_features.float(), dim=-1).mean(0)


def shift_embeddings(features: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Unit features moved by `shift` and renormalised."""
    return F.normalize(F.normalize(features.float(), dim=-1) + shift, dim=-1)


def close_gap(image_features: torch.Tensor, text_features: torch.Tensor, lam: float,
              gap: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Move images by -lam/2 gap and texts by +lam/2 gap (renormalised): lam = 1 closes the gap, lam < 0 widens it."""
    gap = gap_vector(image_features, text_features) if gap is None else gap
    return shift_embeddings(image_features, -lam / 2 * gap), shift_embeddings(text_features, lam / 2 * gap)


def pair_features(model: nn.Module, tokenizer, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit embeddings of each image and of its first caption: [N, D] each."""
    return (encode_images(model, dataset.images),
            encode_texts(model, tokenizer, [c[0] for c in dataset.captions], truncate=True))


def shifted_accuracy(model: nn.Module, tokenizer, data: TrainData, lams, gap: torch.Tensor) -> dict[str, list[float]]:
    """Zero-shot accuracy per test split of `data` after `close_gap` with each lam (class vectors as texts)."""
    classifier = classifier_from_prompts(model, tokenizer, data.class_prompts).T  # [C, D]
    out = {}
    for name, dataset in data.zeroshot_sets.items():
        img = encode_images(model, dataset.images)
        out[name] = []
        for lam in lams:
            i, c = close_gap(img, classifier, lam, gap)
            out[name].append(classify_features(i, c.T).eq(dataset.labels).double().mean().item())
    return out
