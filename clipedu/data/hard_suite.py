"""The hard evaluation suite: tasks the course model cannot solve by colour and shape alone.

Colour-shape zero-shot (48 classes) is nearly solved by the course model, so
it cannot show a difference between two ways of training. These tasks ask
for every attribute a caption can state, and stay well below the ceiling:

- fine-grained zero-shot: each test image classified among all
  8 colours x 6 shapes x 2 sizes x 9 positions = 864 classes, from one prompt
  each ("a small red circle in the top left corner"); chance is 1/864;
- full-caption retrieval: each image's one caption that states all five
  attributes, background included; Recall@1 in both directions among the
  test images.

Both read a test set's `attributes` (`ShapesWorld.test`); the metrics live
in `clipedu.train.evaluation`.
"""

from __future__ import annotations

import itertools

import torch

from clipedu.data.render import BACKGROUNDS, SHAPES
from clipedu.data.shapes import COLORS, POSITIONS, SIZES
from clipedu.data.words import BACKGROUND_WORDS, POSITION_WORDS, fix_articles

FINE_ATTRIBUTES = ("color", "shape", "size", "position")


def fine_classes() -> list[tuple[int, int, int, int]]:
    """Every (colour, shape, size, position) as value indices: 864 classes, colour slowest."""
    return list(itertools.product(range(len(COLORS)), range(len(SHAPES)), range(len(SIZES)), range(len(POSITIONS))))


def describe(color: int, shape: int, size: int, position: int, background: int | None = None) -> str:
    """The caption that states these attributes in canonical words: "a small red circle in the centre"."""
    text = f"a {SIZES[size]} {COLORS[color]} {SHAPES[shape]} {POSITION_WORDS[POSITIONS[position]][0]}"
    if background is not None:
        text += " " + BACKGROUND_WORDS[BACKGROUNDS[background]][0]
    return fix_articles(text)


def fine_prompts() -> list[list[str]]:
    """One prompt per fine class, in `fine_classes` order (a list of one, as classifier_from_prompts takes)."""
    return [[describe(*c)] for c in fine_classes()]


def fine_labels(attributes: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each image's fine class index [N] (`fine_classes` order), from a test set's attributes."""
    index = torch.zeros_like(torch.as_tensor(attributes["color"]))
    for name, values in zip(FINE_ATTRIBUTES, (COLORS, SHAPES, SIZES, POSITIONS)):
        index = index * len(values) + torch.as_tensor(attributes[name])
    return index.long()


def full_captions(attributes: dict[str, torch.Tensor]) -> list[str]:
    """Each image's caption stating all five attributes, background included."""
    columns = [torch.as_tensor(attributes[a]).tolist() for a in (*FINE_ATTRIBUTES, "background")]
    return [describe(*values) for values in zip(*columns)]
