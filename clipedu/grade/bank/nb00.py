"""Notebook 00 (welcome): cosine similarity, softmax with a temperature, zero-shot by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipedu.grade.exercise import Exercise


def reference_cosine_similarity(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    # torch's cosine similarity, broadcast over all (image, text) pairs: [N, 1, d] with [1, M, d]
    return F.cosine_similarity(images[:, None, :], texts[None, :, :], dim=-1)


def reference_softmax_with_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits / temperature, dim=-1)


def reference_p_cat() -> float:
    # with two captions, softmax is a sigmoid of the difference of the two logits
    return torch.sigmoid(torch.tensor((0.2832 - 0.2036) / 0.01)).item()


def hand_made_sims() -> torch.Tensor:
    """The notebook's batch of three hand-made (image, caption) pairs, as cosine similarities."""
    images = torch.eye(3)
    texts = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.0, 0.3, 0.7]])
    return reference_cosine_similarity(images, texts)


def cosine_visible() -> list:
    g = torch.Generator().manual_seed(0)
    return [
        (torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 3.0]])),  # two vectors: 24 / 25
        (torch.randn(4, 8, generator=g), torch.randn(5, 8, generator=g)),  # 4 images, 5 captions
        (10 * torch.randn(3, 16, generator=g), torch.randn(3, 16, generator=g)),  # lengths must not matter
    ]


def cosine_hidden() -> list:
    g = torch.Generator().manual_seed(100)
    return [
        (torch.randn(2, 32, generator=g), torch.randn(7, 32, generator=g)),  # N < M: a transpose shows
        (torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)),
        (1e3 * torch.randn(1, 5, generator=g), 1e-3 * torch.randn(4, 5, generator=g)),  # very long and short
        (torch.randn(3, 1, generator=g), torch.randn(3, 1, generator=g)),  # d = 1: every cosine is +-1
    ]


def softmax_visible() -> list:
    return [
        (torch.tensor([2.0, 1.0, 0.1]), 1.0),
        (torch.tensor([2.0, 1.0, 0.1]), 0.1),
        (hand_made_sims(), 0.07),  # the notebook's batch at the temperature CLIP starts training with
        (torch.tensor([[1000.0, 999.0, 0.0]]), 1.0),  # large logits: exp overflows unless you shift
    ]


def softmax_hidden() -> list:
    g = torch.Generator().manual_seed(101)
    return [
        (torch.randn(2, 3, 5, generator=g), 0.5),  # a batch of matrices: the last dimension
        (torch.randn(4, 6, generator=g, dtype=torch.float64), 0.01),
        (torch.tensor([[-1000.0, -1001.0, -2000.0]]), 1.0),  # all very negative: exp underflows to 0
        (torch.tensor([0.3, 0.3, 0.3, 0.3]), 100.0),  # equal logits: uniform
        (torch.tensor([[5.0]]), 0.2),  # one caption: probability 1
    ]


EXERCISES = [
    Exercise(
        "00-cosine_similarity", reference_cosine_similarity, cosine_visible, hidden=cosine_hidden,
        points=1, atol=1e-5, forbidden=("cosine_similarity",),
        hints=("Normalise first: each row divided by its own length. Which dimension is a row's length taken "
               "over, and must the norm keep that dimension to divide?",
               "images / images.norm(dim=-1, keepdim=True), the same for texts, then one matrix product "
               "images @ texts.T gives the [N, M] cosines."),
    ),
    Exercise(
        "00-softmax_with_temperature", reference_softmax_with_temperature, softmax_visible, hidden=softmax_hidden,
        points=2, forbidden=("softmax", "log_softmax"),
        hints=("Divide by the temperature first. exp(1000) is inf in float32: what can you subtract from every "
               "logit of a row without changing the probabilities?",
               "z = logits / temperature; z = z - z.max(dim=-1, keepdim=True).values; e = z.exp(); "
               "return e / e.sum(dim=-1, keepdim=True)."),
    ),
    Exercise(
        "00-p_cat_caption_for_cat_image", reference_p_cat, list, value=True, points=1,
        hints=("Use your softmax_with_temperature on the whole matrix. Which row is the cat image, which column "
               "the cat caption? The answer must be a Python float.",
               "softmax_with_temperature(cat_pineapple, 0.01)[0, 0].item()"),
    ),
]
