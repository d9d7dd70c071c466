"""Notebook 07 (contrastive loss): the loss by hand, the symmetric loss, the loss at chance, SigLIP's loss."""

from __future__ import annotations

import torch

from clipedu.grade.exercise import Exercise
from clipedu.loss import clip_loss, image_to_text_loss, siglip_loss, text_to_image_loss
from clipedu.model import l2_normalize

TABLE = [[0.9, 0.2, 0.1], [0.3, 0.8, 0.2], [0.1, 0.4, 0.7]]  # an article's 3 x 3 table, used as logits
THREE_TEXTS = [[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.0, 0.3, 0.7]]  # the 3-pair example: cat, dog, bird


def reference_loss_at_chance_256() -> float:
    uniform_logits = torch.zeros(256, 256, dtype=torch.float64)
    return ((image_to_text_loss(uniform_logits) + text_to_image_loss(uniform_logits)) / 2).item()


def by_hand_visible() -> list:
    g = torch.Generator().manual_seed(0)
    return [
        torch.tensor(TABLE),  # the article's table used as logits: 0.7540
        5 * torch.randn(5, 5, generator=g),  # a random batch of 5
        torch.tensor([[100.0, 95.0], [30.0, 100.0]]),  # logits at CLIP's scale: exp(100) overflows float32
    ]


def by_hand_hidden() -> list:
    g = torch.Generator().manual_seed(107)
    return [
        torch.tensor([[3.0]]),  # one pair: the loss is 0
        torch.randn(7, 7, generator=g, dtype=torch.float64),
        100 * torch.randn(32, 32, generator=g),  # a larger batch at CLIP's scale
        torch.tensor([[-1000.0, -900.0], [-950.0, -1000.0]]),  # very negative: exp underflows to 0
        torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [9.0, 0.0, 0.0]]),  # rows, not columns
    ]


def unit(*shape: int, g: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return l2_normalize(torch.randn(*shape, generator=g, dtype=dtype))


def symmetric_visible() -> list:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.eye(3), l2_normalize(torch.tensor(THREE_TEXTS)), 1 / 0.07),
        (unit(8, 16, g=g), unit(8, 16, g=g), 14.2857),
        (unit(6, 64, g=g), unit(6, 64, g=g), 100.0),  # a batch at the clamp value s = 100
    ]


def symmetric_hidden() -> list:
    g = torch.Generator().manual_seed(117)
    return [
        (unit(5, 8, g=g), unit(5, 8, g=g), torch.tensor(2.5)),  # the scale as a 0-d tensor, as the model returns it
        (unit(4, 3, g=g, dtype=torch.float64), unit(4, 3, g=g, dtype=torch.float64), 30.0),
        (unit(1, 4, g=g), unit(1, 4, g=g), 100.0),  # one pair: 0
        (unit(16, 2, g=g), unit(16, 2, g=g), 50.0),  # more pairs than dimensions
        (torch.eye(3), l2_normalize(torch.tensor(THREE_TEXTS))[[1, 0, 2]], 1 / 0.07),  # not symmetric: both terms
    ]


def sigmoid_visible() -> list:
    g = torch.Generator().manual_seed(2)
    return [
        (torch.eye(2), torch.eye(2), 1.0, 0.0),  # logits 1 on the diagonal, 0 elsewhere
        (torch.eye(3), l2_normalize(torch.tensor(THREE_TEXTS)), 10.0, -10.0),  # the 3-pair example, SigLIP's init
        (unit(8, 16, g=g), unit(8, 16, g=g), 10.0, -10.0),
    ]


def sigmoid_hidden() -> list:
    g = torch.Generator().manual_seed(127)
    return [
        (unit(5, 4, g=g), unit(5, 4, g=g), torch.tensor(10.0), torch.tensor(-10.0)),  # 0-d tensors
        (unit(3, 6, g=g, dtype=torch.float64), unit(3, 6, g=g, dtype=torch.float64), 20.0, 2.0),
        (unit(1, 3, g=g), unit(1, 3, g=g), 10.0, -10.0),  # one pair: no negatives
        (unit(12, 8, g=g), unit(12, 8, g=g), 200.0, -5.0),  # large |z|: sigmoid(x).log() gives -inf
    ]


EXERCISES = [
    Exercise(
        "07-image_to_text_loss_by_hand", image_to_text_loss, by_hand_visible, hidden=by_hand_hidden, points=2,
        forbidden=("cross_entropy", "log_softmax", "nll_loss", "image_to_text_loss", "clip_loss"),
        hints=("Per row i the loss is -log softmax(row)[i] = log(sum_k exp(L_ik)) - L_ii. Which torch function "
               "computes the first term without overflowing?",
               "torch.logsumexp(logits, dim=1) - logits.diagonal(), then .mean()."),
    ),
    Exercise(
        "07-symmetric_clip_loss", clip_loss, symmetric_visible, hidden=symmetric_hidden, points=2, atol=1e-5,
        forbidden=("clip_loss",),
        hints=("Both directions use the same logits: rows for image -> text, columns for text -> image. What are "
               "the targets, and where do they live?",
               "logits = scale * image_embed @ text_embed.T; targets = torch.arange(N); the mean of "
               "F.cross_entropy(logits, targets) and F.cross_entropy(logits.T, targets)."),
    ),
    Exercise(
        "07-loss_at_chance_256", reference_loss_at_chance_256, list, value=True, points=1,
        hints=("With all logits equal, every row's softmax is uniform. What is p_ii, and what is -log of it?",
               "p_ii = 1/256 in every row and every column, so both terms are ln 256: return math.log(256)."),
    ),
    Exercise(
        "07-sigmoid_loss", siglip_loss, sigmoid_visible, hidden=sigmoid_hidden, points=2, atol=1e-5,
        forbidden=("siglip_loss",),
        hints=("Every one of the N * N pairs is a yes/no question. Labels +1 or -1 where? And the sum is divided "
               "by N, not N * N.",
               "z = scale * I @ T.T + bias; y = 2 * torch.eye(N, dtype=z.dtype) - 1; "
               "return -F.logsigmoid(y * z).sum() / N."),
    ),
]
