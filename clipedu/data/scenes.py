"""Scenes with several shapes: spatial relations and counts, CLIP's known weak spots (paper section 6).

`ShapesWorld.relations` and `ShapesWorld.counts` call these with the world
(`world`: a ShapesWorld, for its seed, image size and class pools); they draw
with the same palette, backgrounds and random streams as the single shapes.
"""

from __future__ import annotations

import numpy as np
import torch

from clipedu.data.contract import CaptionedImages
from clipedu.data.render import COLORS, SHAPES, canvases, jittered_rgb, keyed_rng, paint
from clipedu.data.words import (
    COUNT_TEMPLATES,
    INVERSE,
    LONG_FORM,
    ONE_TEMPLATES,
    PLURALS,
    RELATION_TEMPLATES,
    fix_articles,
)

RELATIONS = ["left of", "right of", "above", "below"]
COUNT_WORDS = ["one", "two", "three", "four"]


def relations(world, n: int, seed: int = 0, split: str = "seen") -> CaptionedImages:
    """Two shapes in a spatial relation: "a red circle left of a blue square".

    labels index RELATIONS; attributes["first"] / ["second"] are the class
    indices of the two shapes (different colour and different shape), and
    attributes["swapped"] the hard negative caption with the shapes swapped.
    """
    def rng(name: str) -> np.random.Generator:
        return keyed_rng(world.seed, "relations", seed, split, name)

    w, pool, k = world.image_size, world.class_pool(split), len(SHAPES)
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
    images, _ = canvases(rng, n, w)
    canvas, rgb = images.numpy(), jittered_rgb(np.stack([first, second], 1) // k, color_jitter)
    captions, swapped = [], []
    for i in range(n):
        rel = RELATIONS[relation[i]]
        lo, hi = cells[i]
        a_cell, b_cell = (lo, hi) if rel in ("left of", "above") else (hi, lo)
        for j, (cls, cell) in enumerate(((first[i], a_cell), (second[i], b_cell))):
            x, y = (cell, line[i]) if rel in ("left of", "right of") else (line[i], cell)
            paint(canvas[i], SHAPES[cls % k], diameter[i, j], rgb[i, j],
                   grid[x] + jitter[i, j, 0], grid[y] + jitter[i, j, 1])
        a, b = world.class_names[first[i]], world.class_names[second[i]]
        words = dict(r=rel, l=LONG_FORM[rel], i=INVERSE[rel], j=LONG_FORM[INVERSE[rel]])
        captions.append([fix_articles(t.format(a=a, b=b, **words)) for t in RELATION_TEMPLATES])
        swapped.append(fix_articles(RELATION_TEMPLATES[0].format(a=b, b=a, **words)))
    return CaptionedImages(images, captions, torch.from_numpy(relation).long(), list(RELATIONS),
                           {"first": torch.from_numpy(first).long(), "second": torch.from_numpy(second).long(),
                            "swapped": swapped})

def counts(world, n: int, seed: int = 0, split: str = "seen") -> CaptionedImages:
    """One to four copies of one coloured shape: "three green stars".

    labels are count - 1 (class_names COUNT_WORDS); attributes["count"] holds
    the count itself and attributes["object"] the colour-shape class index.
    """
    def rng(name: str) -> np.random.Generator:
        return keyed_rng(world.seed, "counts", seed, split, name)

    w, pool, k = world.image_size, world.class_pool(split), len(SHAPES)
    obj = pool[rng("object").integers(len(pool), size=n)]
    count = rng("count").integers(1, 5, size=n)
    cells = np.argsort(rng("cells").random((n, 9)), 1)  # the first `count` cells are used
    jitter = rng("offset").uniform(-0.025, 0.025, (n, 4, 2)) * w
    diameter = np.round(0.2 * w * rng("diameter").uniform(0.95, 1.05, n)).astype(int)
    color_jitter = rng("colour jitter").uniform(-12, 12, (n, 3))

    grid = np.array([1, 3, 5]) / 6 * w
    images, _ = canvases(rng, n, w)
    canvas, rgb = images.numpy(), jittered_rgb(obj // k, color_jitter)
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
