"""ShapesWorld: the course's synthetic captioned images, with held-out compositions.

Tutorial-scale CLIP training on natural photos stays near chance, so the
course trains on a small world it controls: coloured shapes (8 colours x 6
shapes) of two sizes, at nine positions, on five backgrounds, rendered
offline and deterministically from a seed. Each image gets five captions
drawn from many templates and synonyms; some name every attribute, some only
the colour or only the shape, in varying order ("a photo of a small red
circle on the left", "a crimson disc", "there is a circle"). Like alt-text on
the web, some training captions are loose ("my favourite disc") and some are
wrong: `WRONG_COLOR_RATE` of them name another colour.

Held-out compositions. A few colour-shape pairs (`heldout`) never appear in
any training image or caption, while each of their colours and shapes does
appear with other partners; and each shape has one cell of the 3 x 3 grid
where training never puts it (`heldout_positions`). Zero-shot classification
of held-out test images among all 48 classes, from text prompts alone, then
measures whether the model composes "green" and "triangle" into "green
triangle"; `test(n, "heldout-position")` asks the same of "a star in the
bottom left". The hard suite (`clipedu.data.hard_suite`) asks for every
attribute at once.

False negatives. Captions overlap: "something red", "a crimson disc" and "a
red circle" are all true of one red circle. In a batch, the contrastive loss
treats every other caption as a negative, including those that are true of
the image. `UniqueCaptionBatchSampler` removes exact duplicate strings only;
`clipedu.data.meaning` knows which captions are true of which images, and
`clipedu.data.negatives` measures how often a batch holds such a caption.

Multi-object variants (`relations`, `counts`) probe CLIP's known limits:
spatial relations ("a red circle left of a blue square", whose swapped
version is a hard negative made of the same words) and counting.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from clipedu.data.contract import CaptionedImages
from clipedu.data.render import BACKGROUNDS, COLORS, RGB, SHAPES, canvases, jittered_rgb, keyed_rng, paint  # noqa: F401
from clipedu.data.scenes import COUNT_WORDS, RELATIONS, counts, relations  # noqa: F401  (the world's names, here)
from clipedu.data.words import (
    BACKGROUND_WORDS,
    CANONICAL_WORD_PROB,
    CAPTION_TEMPLATES,
    CAPTIONS_PER_IMAGE,
    COLOR_WORDS,
    DEFAULT_PROMPTS,
    POSITION_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
    WRONG_COLOR_RATE,
    fix_articles,
)

SIZES = ["small", "large"]
POSITIONS = ["top left", "top", "top right", "left", "centre", "right",
             "bottom left", "bottom", "bottom right"]  # a 3x3 grid, row by row

# one pair per colour; every colour and shape keeps >= 5 seen partners
DEFAULT_HELDOUT = [("red", "square"), ("orange", "star"), ("yellow", "heart"),
                   ("green", "triangle"), ("cyan", "cross"), ("blue", "circle"),
                   ("purple", "triangle"), ("pink", "circle")]
# one cell per shape where training never puts it: a composition of shape and position
DEFAULT_HELDOUT_POSITIONS = [("circle", "top left"), ("square", "bottom right"), ("triangle", "top right"),
                             ("star", "bottom left"), ("cross", "top"), ("heart", "bottom")]

# ------------------------------------------------------------------ captions

def _synonyms(table: dict[str, list[str]], names: list[str], value: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Vectorised word choice: the canonical word with CANONICAL_WORD_PROB, else a synonym (uniform)."""
    p = CANONICAL_WORD_PROB
    n_words = np.array([len(table[name]) for name in names])[value][:, None]
    synonym = 1 + ((u - p) / (1 - p) * (n_words - 1)).astype(int)
    return np.where((u < p) | (n_words == 1), 0, np.minimum(synonym, n_words - 1))


def _color_word(color: int, pick: int) -> str:
    words = COLOR_WORDS[COLORS[color]]
    return words[min(pick, len(words) - 1)]


def _describe(rng: Callable[[str], np.random.Generator], color, shape, size, position, background,
              said_color: np.ndarray | None = None) -> list[list[str]]:
    """CAPTIONS_PER_IMAGE captions per image: distinct templates, words with synonyms.

    said_color [n, CAPTIONS_PER_IMAGE], if given, is the colour each caption names (a wrong one for noise).
    """
    n = len(color)
    # weighted sampling of distinct templates per image (Gumbel top-k)
    log_w = np.log([wt for _, wt in CAPTION_TEMPLATES])
    order = np.argsort(-(log_w + rng("templates").gumbel(size=(n, len(CAPTION_TEMPLATES)))), 1)
    u = rng("words").random((n, CAPTIONS_PER_IMAGE, 5))  # (image, caption, attribute)
    tables = [(COLOR_WORDS, COLORS, color), (SHAPE_WORDS, SHAPES, shape), (SIZE_WORDS, SIZES, size),
              (POSITION_WORDS, POSITIONS, position), (BACKGROUND_WORDS, BACKGROUNDS, background)]
    picks = [_synonyms(table, names, value, u[..., a]) for a, (table, names, value) in enumerate(tables)]
    captions = []
    said = np.repeat(color[:, None], CAPTIONS_PER_IMAGE, 1) if said_color is None else said_color
    for i in range(n):
        _, s, z, p, b = (table[names[value[i]]] for table, names, value in tables)
        wc, ws, wz, wp, wb = (pick[i] for pick in picks)
        captions.append([fix_articles(CAPTION_TEMPLATES[t][0].format(
            c=_color_word(said[i, j], wc[j]), s=s[ws[j]], z=z[wz[j]], p=p[wp[j]], b=b[wb[j]]))
            for j, t in enumerate(order[i, :CAPTIONS_PER_IMAGE])])
    return captions


# ------------------------------------------------------------------ the world

class ShapesWorld:
    """The colour x shape world: classes, held-out pairs, and dataset generators.

    Every dataset is a deterministic function of (seed, n) and, for the
    multi-object ones, their own `seed`; item i does not depend on n, so
    `train(1000)` is the first 1000 images of `train(20000)`. Labels index
    `classes` (all colour-shape pairs, held-out ones included).
    """

    def __init__(self, seed: int = 0, image_size: int = 64,
                 heldout: list[tuple[str, str]] | None = None,
                 heldout_positions: list[tuple[str, str]] | None = None):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        if image_size < 24:
            raise ValueError(f"image_size must be at least 24 pixels for shapes to be legible, got {image_size}")
        self.seed, self.image_size = seed, image_size
        self.classes = [(c, s) for c in COLORS for s in SHAPES]
        self.class_names = [f"{c} {s}" for c, s in self.classes]
        held = set(DEFAULT_HELDOUT if heldout is None else (tuple(p) for p in heldout))
        for pair in held:
            if pair not in self.classes:
                raise ValueError(f"held-out pair {pair} is not a (colour, shape) with colour in "
                                 f"{COLORS} and shape in {SHAPES}")
        self.heldout_classes = [p for p in self.classes if p in held]
        self.seen_classes = [p for p in self.classes if p not in held]
        for name, axis, values in (("colour", 0, COLORS), ("shape", 1, SHAPES)):
            missing = set(values) - {p[axis] for p in self.seen_classes}
            if missing:
                raise ValueError(f"held-out pairs leave no training example of {name}(s) "
                                 f"{sorted(missing)}: keep each {name} in at least one seen pair")
        self.heldout_positions = [tuple(p) for p in (DEFAULT_HELDOUT_POSITIONS if heldout_positions is None
                                                     else heldout_positions)]
        self._allowed = np.ones((len(SHAPES), len(POSITIONS)), dtype=bool)  # where training may put each shape
        for shape, position in self.heldout_positions:
            if shape not in SHAPES or position not in POSITIONS:
                raise ValueError(f"held-out position {(shape, position)} is not a (shape, position) with shape in "
                                 f"{SHAPES} and position in {POSITIONS}")
            self._allowed[SHAPES.index(shape), POSITIONS.index(position)] = False
        self._seen_pairs = np.array([[(c, s) not in held for s in SHAPES] for c in COLORS])  # [colour, shape]
        self.heldout_labels = torch.tensor([self.classes.index(p) for p in self.heldout_classes], dtype=torch.long)
        self.seen_labels = torch.tensor([self.classes.index(p) for p in self.seen_classes], dtype=torch.long)

    def __repr__(self) -> str:
        return (f"ShapesWorld(seed={self.seed}, image_size={self.image_size}, {len(self.classes)} classes, "
                f"{len(self.heldout_classes)} held out)")

    def class_pool(self, split: str) -> np.ndarray:
        pools = {"seen": self.seen_labels, "heldout": self.heldout_labels,
                 "all": torch.arange(len(self.classes))}
        if split not in pools:
            raise ValueError(f"split must be 'heldout', 'seen' or 'all', got {split!r}")
        if len(pools[split]) == 0:
            raise ValueError(f"this world has no {split} classes")
        return pools[split].numpy()

    def train(self, n: int) -> CaptionedImages:
        """n training images of seen colour-shape pairs at allowed positions, 5 captions each, some noisy."""
        return self._single(n, "train", self.class_pool("seen"), train=True)

    def test(self, n: int, split: str = "heldout") -> CaptionedImages:
        """n test images of held-out, seen or all pairs at any position (fresh images, not in train).

        split="heldout-position": seen colour-shape pairs, each at its shape's held-out position.
        """
        if split == "heldout-position":
            if not self.heldout_positions:
                raise ValueError("this world has no held-out positions")
            return self._single(n, f"test {split}", self.class_pool("seen"), heldout_position=True)
        return self._single(n, f"test {split}", self.class_pool(split))

    def prompts(self, templates: list[str] | None = None) -> dict[str, list[str]]:
        """Zero-shot prompts per class name, e.g. {"red circle": ["a red circle", ...]}."""
        templates = DEFAULT_PROMPTS if templates is None else templates
        return {name: [fix_articles(t.format(name)) for t in templates] for name in self.class_names}

    # -- one shape per image

    def _single(self, n: int, stream: str, pool: np.ndarray, train: bool = False,
                heldout_position: bool = False) -> CaptionedImages:
        def rng(name: str) -> np.random.Generator:
            return keyed_rng(self.seed, stream, name)

        w = self.image_size
        cls = pool[rng("class").integers(len(pool), size=n)]
        color, shape = cls // len(SHAPES), cls % len(SHAPES)
        size = rng("size").integers(len(SIZES), size=n)
        diameter = np.round(w * np.array([0.22, 0.40])[size] * rng("diameter").uniform(0.92, 1.08, n)).astype(int)
        position = rng("position").integers(len(POSITIONS), size=n)
        if train or heldout_position:  # training: redraw among the allowed cells; else only the held-out one
            if heldout_position:
                pool = pool[~self._allowed[pool % len(SHAPES)].all(1)]  # shapes that have a held-out cell
                cls = pool[rng("class").integers(len(pool), size=n)]
                color, shape = cls // len(SHAPES), cls % len(SHAPES)
            cells = ~self._allowed[shape] if heldout_position else self._allowed[shape]  # [n, 9]
            rank = (rng("allowed position").random(n) * cells.sum(1)).astype(int)
            position = np.argmax(np.cumsum(cells, 1) > rank[:, None], 1)
        grid = np.array([0.27, 0.5, 0.73]) * w
        centre = np.stack([grid[position % 3], grid[position // 3]], 1)
        centre += rng("offset").uniform(-0.03, 0.03, (n, 2)) * w
        color_jitter = rng("colour jitter").uniform(-12, 12, (n, 3))

        images, background = canvases(rng, n, w)
        canvas, rgb = images.numpy(), jittered_rgb(color, color_jitter)
        for i in range(n):
            paint(canvas[i], SHAPES[shape[i]], diameter[i], rgb[i], *centre[i])
        said_color = None
        if train:  # web-like noise: some captions name a wrong colour (never making a held-out pair)
            said_color = np.repeat(color[:, None], CAPTIONS_PER_IMAGE, 1)
            wrong = rng("wrong").random(said_color.shape) < WRONG_COLOR_RATE
            options = self._seen_pairs[:, shape].T.copy()  # [n, colours]: colours seen with this shape
            options[np.arange(n), color] = False
            pick = (rng("wrong colour").random(said_color.shape) * options.sum(1)[:, None]).astype(int)
            replacement = np.argmax(np.cumsum(options, 1)[:, None, :] > pick[..., None], -1)
            said_color = np.where(wrong, replacement, said_color)
        captions = _describe(rng, color, shape, size, position, background, said_color)
        attributes = {"color": color, "shape": shape, "size": size, "position": position, "background": background}
        return CaptionedImages(images, captions, torch.from_numpy(cls).long(), list(self.class_names),
                               {k: torch.from_numpy(v).long() for k, v in attributes.items()})

    # -- several shapes per image: CLIP's known weak spots (clipedu.data.scenes)

    def relations(self, n: int, seed: int = 0, split: str = "seen") -> CaptionedImages:
        """Two shapes in a spatial relation: "a red circle left of a blue square" (`scenes.relations`)."""
        return relations(self, n, seed, split)

    def counts(self, n: int, seed: int = 0, split: str = "seen") -> CaptionedImages:
        """One to four copies of one coloured shape: "three green stars" (`scenes.counts`)."""
        return counts(self, n, seed, split)
