"""What a ShapesWorld caption means, and which images it is true of.

A caption such as "a crimson disc in the upper left" states some attributes
(colour red, shape circle, position top left) and is silent on the others
(size, background). `caption_meaning` reads those statements back from the
words (`clipedu.data.words`): one value per attribute of `ATTRIBUTES`, or
`UNSTATED`. A caption is *true of* an image when every attribute it states
matches the image (`compatible`); "something blue" is true of every blue
image, and a caption that states nothing would be true of all of them.

This is what a contrastive batch gets wrong: the loss calls every other
caption of the batch a negative, including those that are true of the image
(semantic false negatives, `clipedu.data.negatives`), and a multi-positive
loss (`clipedu.loss.multi_positive_clip_loss`) needs exactly this matrix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import torch

from clipedu.data.render import BACKGROUNDS, SHAPES
from clipedu.data.shapes import COLORS, POSITIONS, SIZES
from clipedu.data.words import BACKGROUND_WORDS, COLOR_WORDS, POSITION_WORDS, SHAPE_WORDS, SIZE_WORDS

ATTRIBUTES = ("color", "shape", "size", "position", "background")  # the keys of ShapesWorld's attributes
UNSTATED = -1  # the caption says nothing about this attribute

_TABLES = ((COLOR_WORDS, COLORS), (SHAPE_WORDS, SHAPES), (SIZE_WORDS, SIZES),
           (POSITION_WORDS, POSITIONS), (BACKGROUND_WORDS, BACKGROUNDS))


@lru_cache(maxsize=1)
def _phrases() -> tuple[re.Pattern, dict[str, tuple[int, int]]]:
    """One regex over every attribute phrase (longest first, so "grassy green" beats "green"),
    and phrase -> (attribute index, value index)."""
    lookup: dict[str, tuple[int, int]] = {}
    for a, (table, names) in enumerate(_TABLES):
        for v, name in enumerate(names):
            for phrase in table[name]:
                if lookup.setdefault(phrase, (a, v)) != (a, v):
                    raise ValueError(f"the phrase {phrase!r} names two attribute values: fix clipedu.data.words")
    ordered = sorted(lookup, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(map(re.escape, ordered)) + r")\b"), lookup


def caption_meaning(caption: str) -> tuple[int, ...]:
    """The attribute values a single-shape caption states: one int per ATTRIBUTES, UNSTATED where silent.

    >>> caption_meaning("a crimson disc in the upper left")  # red, circle, -, top left, -
    (0, 0, -1, 0, -1)

    Raises ValueError for a caption that states two values of one attribute ("a red circle left of a
    blue square" describes two shapes: its meaning is not a single shape's).
    """
    pattern, lookup = _phrases()
    meaning = [UNSTATED] * len(ATTRIBUTES)
    for match in pattern.finditer(" ".join(caption.lower().split())):
        a, v = lookup[match.group(1)]
        if meaning[a] not in (UNSTATED, v):
            raise ValueError(f"{caption!r} states two values of {ATTRIBUTES[a]} ({_TABLES[a][1][meaning[a]]!r} "
                             f"and {_TABLES[a][1][v]!r}): only single-shape captions have a meaning here")
        meaning[a] = v
    return tuple(meaning)


def meaning_table(captions: Sequence[str] | Sequence[Sequence[str]]) -> torch.Tensor:
    """caption_meaning of every caption: int8 [M, 5] for a list of strings, [N, K, 5] for N lists of K."""
    nested = len(captions) > 0 and not isinstance(captions[0], str)
    flat = [c for caps in captions for c in caps] if nested else list(captions)
    cache: dict[str, tuple[int, ...]] = {}
    rows = [cache[c] if c in cache else cache.setdefault(c, caption_meaning(c)) for c in flat]
    table = torch.tensor(rows, dtype=torch.int8).reshape(len(flat), len(ATTRIBUTES))
    if nested:
        sizes = {len(caps) for caps in captions}
        if len(sizes) != 1:
            raise ValueError(f"every image needs the same number of captions for a [N, K, 5] table, got {sorted(sizes)}")
        table = table.reshape(len(captions), sizes.pop(), len(ATTRIBUTES))
    return table


def image_table(attributes: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each image's attribute values as int8 [N, 5], from a CaptionedImages' `attributes`."""
    missing = [a for a in ATTRIBUTES if a not in attributes]
    if missing:
        raise ValueError(f"these images have no {missing} annotation: compatibility needs a ShapesWorld "
                         "single-shape set (world.train / world.test)")
    return torch.stack([torch.as_tensor(attributes[a]) for a in ATTRIBUTES], 1).to(torch.int8)


def compatible(image_values: torch.Tensor, caption_values: torch.Tensor) -> torch.Tensor:
    """bool [N, M]: caption m is true of image n (every attribute it states matches).

    image_values int [N, 5] (`image_table`), caption_values int [M, 5] (`meaning_table`).
    """
    stated = caption_values[None] != UNSTATED
    return ((caption_values[None] == image_values[:, None]) | ~stated).all(-1)
