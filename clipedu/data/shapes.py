"""ShapesWorld: the course's synthetic captioned images, with held-out compositions.

Tutorial-scale CLIP training on natural photos stays near chance, so the
course trains on a small world it controls: coloured shapes (8 colours x 6
shapes) of two sizes, at nine positions, on five backgrounds, rendered
offline and deterministically from a seed. Each image gets five captions
drawn from many templates and synonyms; some name every attribute, some only
the colour or only the shape, in varying order ("a photo of a small red
circle on the left", "a crimson disc", "there is a circle").

Held-out compositions. A few colour-shape pairs (`heldout`) never appear in
any training image or caption, while each of their colours and shapes does
appear with other partners. Zero-shot classification of held-out test
images among all 48 classes, from text prompts alone, then measures whether
the model composes "green" and "triangle" into "green triangle".

False negatives. Captions repeat: many images are "a red circle" or "there is
a star". If two pairs in one batch have the same caption, the contrastive
loss treats the second image as a negative for a caption that describes it
equally well, pushing apart what should be close. The training loop avoids
this with `clipedu.data.sampler.UniqueCaptionBatchSampler`, which builds batches
in which no caption string appears twice.

Multi-object variants (`relations`, `counts`) probe CLIP's known limits:
spatial relations ("a red circle left of a blue square", whose swapped
version is a hard negative made of the same words) and counting.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import torch

from clipedu.data.contract import CaptionedImages
from clipedu.data.render import BACKGROUND_VARIANTS, BACKGROUNDS, SHAPES, background_bank, paint
from clipedu.data.words import (
    BACKGROUND_WORDS,
    CANONICAL_WORD_PROB,
    CAPTION_TEMPLATES,
    CAPTIONS_PER_IMAGE,
    COLOR_WORDS,
    COUNT_TEMPLATES,
    DEFAULT_PROMPTS,
    INVERSE,
    LONG_FORM,
    ONE_TEMPLATES,
    PLURALS,
    POSITION_WORDS,
    RELATION_TEMPLATES,
    SHAPE_WORDS,
    SIZE_WORDS,
    fix_articles,
)

COLORS = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"]
SIZES = ["small", "large"]
POSITIONS = ["top left", "top", "top right", "left", "centre", "right",
             "bottom left", "bottom", "bottom right"]  # a 3x3 grid, row by row
RELATIONS = ["left of", "right of", "above", "below"]
COUNT_WORDS = ["one", "two", "three", "four"]

# saturated RGB values whose hues are at least ~30 degrees apart
RGB = {"red": (220, 30, 30), "orange": (255, 140, 0), "yellow": (240, 210, 20),
       "green": (40, 180, 50), "cyan": (0, 195, 205), "blue": (30, 80, 230),
       "purple": (140, 50, 200), "pink": (255, 90, 180)}

# one pair per colour; every colour and shape keeps >= 5 seen partners
DEFAULT_HELDOUT = [("red", "square"), ("orange", "star"), ("yellow", "heart"),
                   ("green", "triangle"), ("cyan", "cross"), ("blue", "circle"),
                   ("purple", "triangle"), ("pink", "circle")]

def _rng(*keys: int | str) -> np.random.Generator:
    """A numpy generator keyed by (seed, stream name, ...): one stream per purpose."""
    ints = [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(ints)


# ------------------------------------------------------------------ drawing

def _canvases(rng: Callable[[str], np.random.Generator], n: int, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """n random backgrounds: the uint8 tensor [n, 3, size, size] and each one's kind.

    Draw on `images.numpy()`, a view of the same memory.
    """
    kind = rng("background").integers(len(BACKGROUNDS), size=n)
    variant = rng("background variant").integers(BACKGROUND_VARIANTS, size=n)
    # torch's allocator maps big buffers faster than numpy's (first-touch page faults)
    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    np.take(background_bank(size), kind * BACKGROUND_VARIANTS + variant, axis=0, out=images.numpy())
    return images, kind


def _jittered_rgb(color: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """float32 RGB of colour indices `color` plus per-channel jitter (same leading shape)."""
    base = np.array([RGB[c] for c in COLORS], dtype=np.float32)
    return np.clip(base[color] + jitter, 0, 255).astype(np.float32)


def _synonyms(table: dict[str, list[str]], names: list[str], value: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Vectorised word choice: the canonical word with CANONICAL_WORD_PROB, else a synonym (uniform)."""
    p = CANONICAL_WORD_PROB
    n_words = np.array([len(table[name]) for name in names])[value][:, None]
    synonym = 1 + ((u - p) / (1 - p) * (n_words - 1)).astype(int)
    return np.where((u < p) | (n_words == 1), 0, np.minimum(synonym, n_words - 1))


def _describe(rng: Callable[[str], np.random.Generator], color, shape, size, position, background) -> list[list[str]]:
    """CAPTIONS_PER_IMAGE captions per image: distinct templates, words with synonyms."""
    n = len(color)
    # weighted sampling of distinct templates per image (Gumbel top-k)
    log_w = np.log([wt for _, wt in CAPTION_TEMPLATES])
    order = np.argsort(-(log_w + rng("templates").gumbel(size=(n, len(CAPTION_TEMPLATES)))), 1)
    u = rng("words").random((n, CAPTIONS_PER_IMAGE, 5))  # (image, caption, attribute)
    tables = [(COLOR_WORDS, COLORS, color), (SHAPE_WORDS, SHAPES, shape), (SIZE_WORDS, SIZES, size),
              (POSITION_WORDS, POSITIONS, position), (BACKGROUND_WORDS, BACKGROUNDS, background)]
    picks = [_synonyms(table, names, value, u[..., a]) for a, (table, names, value) in enumerate(tables)]
    captions = []
    for i in range(n):
        c, s, z, p, b = (table[names[value[i]]] for table, names, value in tables)
        wc, ws, wz, wp, wb = (pick[i] for pick in picks)
        captions.append([fix_articles(CAPTION_TEMPLATES[t][0].format(
            c=c[wc[j]], s=s[ws[j]], z=z[wz[j]], p=p[wp[j]], b=b[wb[j]]))
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
                 heldout: list[tuple[str, str]] | None = None):
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
        self.heldout_labels = torch.tensor([self.classes.index(p) for p in self.heldout_classes], dtype=torch.long)
        self.seen_labels = torch.tensor([self.classes.index(p) for p in self.seen_classes], dtype=torch.long)

    def __repr__(self) -> str:
        return (f"ShapesWorld(seed={self.seed}, image_size={self.image_size}, {len(self.classes)} classes, "
                f"{len(self.heldout_classes)} held out)")

    def _pool(self, split: str) -> np.ndarray:
        pools = {"seen": self.seen_labels, "heldout": self.heldout_labels,
                 "all": torch.arange(len(self.classes))}
        if split not in pools:
            raise ValueError(f"split must be 'heldout', 'seen' or 'all', got {split!r}")
        if len(pools[split]) == 0:
            raise ValueError(f"this world has no {split} classes")
        return pools[split].numpy()

    def train(self, n: int) -> CaptionedImages:
        """n training images of seen colour-shape pairs, 5 captions each."""
        return self._single(n, "train", self._pool("seen"))

    def test(self, n: int, split: str = "heldout") -> CaptionedImages:
        """n test images of held-out, seen or all pairs (fresh images, not in train)."""
        return self._single(n, f"test {split}", self._pool(split))

    def prompts(self, templates: list[str] | None = None) -> dict[str, list[str]]:
        """Zero-shot prompts per class name, e.g. {"red circle": ["a red circle", ...]}."""
        templates = DEFAULT_PROMPTS if templates is None else templates
        return {name: [fix_articles(t.format(name)) for t in templates] for name in self.class_names}

    # -- one shape per image

    def _single(self, n: int, stream: str, pool: np.ndarray) -> CaptionedImages:
        def rng(name: str) -> np.random.Generator:
            return _rng(self.seed, stream, name)

        w = self.image_size
        cls = pool[rng("class").integers(len(pool), size=n)]
        color, shape = cls // len(SHAPES), cls % len(SHAPES)
        size = rng("size").integers(len(SIZES), size=n)
        diameter = np.round(w * np.array([0.22, 0.40])[size] * rng("diameter").uniform(0.92, 1.08, n)).astype(int)
        position = rng("position").integers(len(POSITIONS), size=n)
        grid = np.array([0.27, 0.5, 0.73]) * w
        centre = np.stack([grid[position % 3], grid[position // 3]], 1)
        centre += rng("offset").uniform(-0.03, 0.03, (n, 2)) * w
        color_jitter = rng("colour jitter").uniform(-12, 12, (n, 3))

        images, background = _canvases(rng, n, w)
        canvas, rgb = images.numpy(), _jittered_rgb(color, color_jitter)
        for i in range(n):
            paint(canvas[i], SHAPES[shape[i]], diameter[i], rgb[i], *centre[i])
        captions = _describe(rng, color, shape, size, position, background)
        attributes = {"color": color, "shape": shape, "size": size, "position": position, "background": background}
        return CaptionedImages(images, captions, torch.from_numpy(cls).long(), list(self.class_names),
                               {k: torch.from_numpy(v).long() for k, v in attributes.items()})

    # -- several shapes per image: CLIP's known weak spots

    def relations(self, n: int, seed: int = 0, split: str = "seen") -> CaptionedImages:
        """Two shapes in a spatial relation: "a red circle left of a blue square".

        labels index RELATIONS; attributes["first"] / ["second"] are the class
        indices of the two shapes (different colour and different shape), and
        attributes["swapped"] the hard negative caption with the shapes swapped.
        """
        def rng(name: str) -> np.random.Generator:
            return _rng(self.seed, "relations", seed, split, name)

        w, pool, k = self.image_size, self._pool(split), len(SHAPES)
        first = pool[rng("first").integers(len(pool), size=n)]
        # the first candidate that differs in both colour and shape
        cand = pool[rng("second").integers(len(pool), size=(n, 64))]
        ok = (cand // k != first[:, None] // k) & (cand % k != first[:, None] % k)
        if n and not ok.any(1).all():
            raise ValueError(f"the {split} classes have no two pairs differing in both colour and shape")
        second = cand[np.arange(n), ok.argmax(1)]
        relation = rng("relation").integers(len(RELATIONS), size=n)
        line = rng("line").integers(3, size=n)  # the shared row (or column)
        cells = np.array([(0, 1), (0, 2), (1, 2)])[rng("cells").integers(3, size=n)]
        jitter = rng("offset").uniform(-0.02, 0.02, (n, 2, 2)) * w
        diameter = np.round(0.24 * w * rng("diameter").uniform(0.95, 1.05, (n, 2))).astype(int)
        color_jitter = rng("colour jitter").uniform(-12, 12, (n, 2, 3))

        grid = np.array([1, 3, 5]) / 6 * w
        images, _ = _canvases(rng, n, w)
        canvas, rgb = images.numpy(), _jittered_rgb(np.stack([first, second], 1) // k, color_jitter)
        captions, swapped = [], []
        for i in range(n):
            rel = RELATIONS[relation[i]]
            lo, hi = cells[i]
            a_cell, b_cell = (lo, hi) if rel in ("left of", "above") else (hi, lo)
            for j, (cls, cell) in enumerate(((first[i], a_cell), (second[i], b_cell))):
                x, y = (cell, line[i]) if rel in ("left of", "right of") else (line[i], cell)
                paint(canvas[i], SHAPES[cls % k], diameter[i, j], rgb[i, j],
                       grid[x] + jitter[i, j, 0], grid[y] + jitter[i, j, 1])
            a, b = self.class_names[first[i]], self.class_names[second[i]]
            words = dict(r=rel, l=LONG_FORM[rel], i=INVERSE[rel], j=LONG_FORM[INVERSE[rel]])
            captions.append([fix_articles(t.format(a=a, b=b, **words)) for t in RELATION_TEMPLATES])
            swapped.append(fix_articles(RELATION_TEMPLATES[0].format(a=b, b=a, **words)))
        return CaptionedImages(images, captions, torch.from_numpy(relation).long(), list(RELATIONS),
                               {"first": torch.from_numpy(first).long(), "second": torch.from_numpy(second).long(),
                                "swapped": swapped})

    def counts(self, n: int, seed: int = 0, split: str = "seen") -> CaptionedImages:
        """One to four copies of one coloured shape: "three green stars".

        labels are count - 1 (class_names COUNT_WORDS); attributes["count"] holds
        the count itself and attributes["object"] the colour-shape class index.
        """
        def rng(name: str) -> np.random.Generator:
            return _rng(self.seed, "counts", seed, split, name)

        w, pool, k = self.image_size, self._pool(split), len(SHAPES)
        obj = pool[rng("object").integers(len(pool), size=n)]
        count = rng("count").integers(1, 5, size=n)
        cells = np.argsort(rng("cells").random((n, 9)), 1)  # the first `count` cells are used
        jitter = rng("offset").uniform(-0.025, 0.025, (n, 4, 2)) * w
        diameter = np.round(0.2 * w * rng("diameter").uniform(0.95, 1.05, n)).astype(int)
        color_jitter = rng("colour jitter").uniform(-12, 12, (n, 3))

        grid = np.array([1, 3, 5]) / 6 * w
        images, _ = _canvases(rng, n, w)
        canvas, rgb = images.numpy(), _jittered_rgb(obj // k, color_jitter)
        captions = []
        for i in range(n):
            c, s = COLORS[obj[i] // k], SHAPES[obj[i] % k]
            for j in range(count[i]):
                paint(canvas[i], s, diameter[i], rgb[i], grid[cells[i, j] % 3] + jitter[i, j, 0],
                       grid[cells[i, j] // 3] + jitter[i, j, 1])
            templates, noun = (ONE_TEMPLATES, s) if count[i] == 1 else (COUNT_TEMPLATES, PLURALS[s])
            captions.append([fix_articles(t.format(w=COUNT_WORDS[count[i] - 1], k=count[i], c=c, s=noun))
                             for t in templates])
        return CaptionedImages(images, captions, torch.from_numpy(count - 1).long(), list(COUNT_WORDS),
                               {"count": torch.from_numpy(count).long(), "object": torch.from_numpy(obj).long()})
