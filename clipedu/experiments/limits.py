"""Measuring what a CLIP model cannot do (notebook 14): relations, counting, fine words, text in images.

Every test here is a multiple choice. Each image gets its own short list of
candidate captions that differ in one respect only (the order of two shapes,
a number word, a colour word), and the model picks the caption whose embedding
has the largest cosine with the image's. Because the candidates share every
other word, a right answer can only come from the one respect being tested.

- `relation_accuracy`: the true caption of a two-shape scene against the same
  words with the two shapes swapped ("a red circle left of a blue square" vs
  "a blue square left of a red circle"). A text encoder that ignores word order
  (a bag of words) scores both the same and gets exactly 1/2.
- `count_accuracy`: "one / two / three / four {colour} {shape}s"; with
  ``vary="colour"`` or ``"shape"`` the same images and template test colour or
  shape instead, a control for what the model does see.
- `draw_shape`, `draw_word`: single test images, e.g. a shape in a colour no
  caption names, or a word written in pixels.
- `write_on`: a word written on a photo, on a white label, for the typographic
  attack on real CLIP (Goh et al. 2021: an apple labelled "iPod").

Ties are split: an image whose top score is shared by m candidates counts 1/m
if the right one is among them, so a model that cannot tell the candidates
apart scores chance, not 0 or 1 by the accident of argmax's tie-breaking.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from clipedu.data import render, shapes, words
from clipedu.embed import encode_images, encode_texts

__all__ = ["candidate_scores", "choice_accuracy", "relation_candidates", "relation_accuracy",
           "count_phrase", "count_candidates", "count_accuracy", "draw_shape", "draw_word", "write_on"]


# ------------------------------------------------------------------ multiple choice


@torch.no_grad()
def candidate_scores(model, tokenizer, images: torch.Tensor, candidates: Sequence[Sequence[str]],
                     image_features: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine [N, K] of image i with each of its own K candidate captions `candidates[i]`.

    Every distinct caption is encoded once. `image_features` (unit vectors [N, D]) may be
    passed to skip encoding the images again.
    """
    if len(candidates) != len(images):
        raise ValueError(f"{len(images)} images but {len(candidates)} candidate lists")
    k = {len(c) for c in candidates}
    if len(k) != 1 or 0 in k:
        raise ValueError("every image needs the same number (at least one) of candidate captions")
    texts = sorted({t for c in candidates for t in c})
    index = {t: j for j, t in enumerate(texts)}
    text_features = encode_texts(model, tokenizer, texts)
    if image_features is None:
        image_features = encode_images(model, images)
    ids = torch.tensor([[index[t] for t in c] for c in candidates])  # [N, K]
    return torch.einsum("nd,nkd->nk", image_features.float(), text_features[ids])


def choice_accuracy(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean credit of picking the best-scoring candidate: 1 if it is the target, 1/m when m
    candidates tie for the top score and the target is one of them, else 0."""
    scores, targets = scores.float(), torch.as_tensor(targets).long()
    top = scores == scores.max(dim=1, keepdim=True).values  # [N, K] the tied winners
    credit = top.gather(1, targets[:, None]).squeeze(1) / top.sum(dim=1)
    return credit.double().mean().item()


# ------------------------------------------------------------------ relations and counts


def relation_candidates(data) -> list[list[str]]:
    """[true caption, swapped caption] per image of `ShapesWorld.relations` data.

    The true caption is the first (template "a {a} {relation} a {b}"); the swapped one is
    `attributes["swapped"]`, the same template with the shapes exchanged: the same words.
    """
    return [[caps[0], swapped] for caps, swapped in zip(data.captions, data.attributes["swapped"])]


def relation_accuracy(model, tokenizer, data) -> float:
    """How often the true caption of a two-shape scene beats its swapped version (chance: 0.5)."""
    scores = candidate_scores(model, tokenizer, data.images, relation_candidates(data))
    return choice_accuracy(scores, torch.zeros(len(scores), dtype=torch.long))


def count_phrase(count: int, colour: str, shape: str) -> str:
    """The counts' caption "{number} {colour} {shape}", the shape in the plural from two on."""
    return f"{shapes.COUNT_WORDS[count - 1]} {colour} {shape if count == 1 else words.PLURALS[shape]}"


def count_candidates(data, vary: str = "count") -> tuple[list[list[str]], torch.Tensor]:
    """(candidate captions [N][K], target index [N]) for `ShapesWorld.counts` data.

    The template is the counts' own "{number} {colour} {shape}(s)", e.g. "three green stars".
    vary="count": the 4 numbers, target count - 1; "colour": the 8 colours with the true
    number and shape, target the colour; "shape": the 6 shapes, target the shape.
    """
    count = data.attributes["count"].tolist()
    colour = [shapes.COLORS[o // len(shapes.SHAPES)] for o in data.attributes["object"].tolist()]
    shape = [shapes.SHAPES[o % len(shapes.SHAPES)] for o in data.attributes["object"].tolist()]
    rows = list(zip(count, colour, shape))
    if vary == "count":
        candidates = [[count_phrase(k, c, s) for k in range(1, len(shapes.COUNT_WORDS) + 1)] for _, c, s in rows]
        targets = [n - 1 for n, _, _ in rows]
    elif vary == "colour":
        candidates = [[count_phrase(n, c2, s) for c2 in shapes.COLORS] for n, _, s in rows]
        targets = [shapes.COLORS.index(c) for _, c, _ in rows]
    elif vary == "shape":
        candidates = [[count_phrase(n, c, s2) for s2 in shapes.SHAPES] for n, c, _ in rows]
        targets = [shapes.SHAPES.index(s) for _, _, s in rows]
    else:
        raise ValueError(f"vary must be 'count', 'colour' or 'shape', got {vary!r}")
    return candidates, torch.tensor(targets, dtype=torch.long)


def count_accuracy(model, tokenizer, data, vary: str = "count",
                   image_features: torch.Tensor | None = None) -> float:
    """Multiple-choice accuracy on counts data: the number (chance 1/4), or as a control the
    colour (1/8) or the shape (1/6), each with the same template and images."""
    candidates, targets = count_candidates(data, vary)
    return choice_accuracy(candidate_scores(model, tokenizer, data.images, candidates, image_features), targets)


# ------------------------------------------------------------------ drawing test images


def _canvas(size: int, background) -> np.ndarray:
    rgb = np.broadcast_to(np.asarray(background, dtype=np.uint8), (3,))
    return np.ascontiguousarray(np.broadcast_to(rgb[:, None, None], (3, size, size)))


def draw_shape(shape: str, rgb, size: int = 32, diameter: int | None = None,
               background=(255, 255, 255)) -> torch.Tensor:
    """One shape of any RGB colour, centred on a plain background -> uint8 [3, size, size].

    Drawn like ShapesWorld's shapes (`render.paint`); `diameter` defaults to 40% of `size`.
    """
    canvas = _canvas(size, background)
    diameter = int(round(0.4 * size)) if diameter is None else int(diameter)
    render.paint(canvas, shape, diameter, np.asarray(rgb, dtype=np.float32), size / 2, size / 2)
    return torch.from_numpy(canvas)


def draw_word(text: str, ink, size: int = 32, background=(255, 255, 255), font_size: int | None = None) -> torch.Tensor:
    """`text` written in colour `ink` with PIL's built-in font, centred -> uint8 [3, size, size].

    The font ships with Pillow (nothing is downloaded). The text is shrunk until it fits.
    """
    image = Image.new("RGB", (size, size), tuple(int(v) for v in np.broadcast_to(background, (3,))))
    draw = ImageDraw.Draw(image)
    font_size = font_size or size // 2
    while True:
        try:
            font = ImageFont.load_default(size=font_size)
        except TypeError:  # Pillow < 10.1: a fixed bitmap font
            font = ImageFont.load_default()
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= size - 2 or font_size <= 6 or isinstance(font, ImageFont.ImageFont):
            break
        font_size -= 1
    draw.text(((size - (right - left)) / 2 - left, (size - (bottom - top)) / 2 - top), text,
              fill=tuple(int(v) for v in ink), font=font)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


def write_on(image: Image.Image, text: str, width: float = 0.5, centre=(0.5, 0.8), ink=(0, 0, 0),
             paper=(255, 255, 255)) -> Image.Image:
    """A copy of the PIL `image` with `text` written on a paper label: the typographic attack.

    The label (PIL's built-in font, nothing downloaded) is scaled to span `width` of the
    image's width, whatever its resolution, and centred at `centre` (fractions of width, height).
    """
    if not 0 < width <= 1:
        raise ValueError(f"width is a fraction of the image's width, in (0, 1], got {width}")
    if not text.strip():
        raise ValueError("write_on needs a word to write, got an empty text")
    out = image.convert("RGB")  # a copy: the original is left alone
    target = max(1, round(width * out.width))
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    try:  # measure at size 100, then draw at the size that spans the target width
        probe = scratch.textbbox((0, 0), text, font=ImageFont.load_default(size=100))
        font = ImageFont.load_default(size=max(6, round(100 * target / max(1, probe[2] - probe[0]))))
    except TypeError:  # Pillow < 10.1: a fixed bitmap font, enlarged below
        font = ImageFont.load_default()
    left, top, right, bottom = scratch.textbbox((0, 0), text, font=font)
    pad = max(2, (bottom - top) // 4)
    label = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), tuple(paper))
    ImageDraw.Draw(label).text((pad - left, pad - top), text, fill=tuple(ink), font=font)
    label = label.resize((target, max(1, round(label.height * target / label.width))), Image.BICUBIC)
    out.paste(label, (round(centre[0] * out.width - label.width / 2), round(centre[1] * out.height - label.height / 2)))
    return out
