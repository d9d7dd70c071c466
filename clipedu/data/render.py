"""Drawing the shapes world: anti-aliased shapes on plain and textured backgrounds.

`clipedu.data.shapes` decides *what* each image shows (colour, shape, size,
position, background, captions); this module only turns those choices into
pixels. Shapes are drawn 4x larger with PIL and box-filtered down, so edges
are anti-aliased; backgrounds are grey-toned so that a shape's colour is
never ambiguous.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw

COLORS = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"]
# saturated RGB values whose hues are at least ~30 degrees apart
RGB = {"red": (220, 30, 30), "orange": (255, 140, 0), "yellow": (240, 210, 20),
       "green": (40, 180, 50), "cyan": (0, 195, 205), "blue": (30, 80, 230),
       "purple": (140, 50, 200), "pink": (255, 90, 180)}
SHAPES = ["circle", "square", "triangle", "star", "cross", "heart"]
BACKGROUNDS = ["white", "black", "grey", "striped", "checkered"]
BACKGROUND_VARIANTS = 8  # brightnesses (plain) or orientations and phases (textures) of each background


def outline(shape: str, n: int) -> list[tuple[float, float]]:
    """Polygon of `shape` in pixel coordinates of an n x n canvas (y points down)."""
    if shape == "square":
        pts = [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]
    elif shape == "triangle":
        pts = [(0.0, -0.95), (1.0, 0.8), (-1.0, 0.8)]
    elif shape == "star":
        a = np.pi / 2 + np.arange(10) * np.pi / 5  # 5 outer and 5 inner corners
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = list(zip(r * np.cos(a), -r * np.sin(a) + 0.095))  # 0.095 centres it vertically
    elif shape == "cross":
        w = 0.33
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1),
               (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]
    elif shape == "heart":
        t = np.linspace(0, 2 * np.pi, 80, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        pts = list(zip(x / 17, (y + 2.5) / 15))
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return [((x + 1) / 2 * n, (y + 1) / 2 * n) for x, y in pts]


@lru_cache(maxsize=512)
def shape_mask(shape: str, diameter: int) -> np.ndarray:
    """Coverage in [0, 1] of `shape` on a diameter x diameter grid (float32).

    Drawn 4x larger with PIL and box-filtered down, which anti-aliases edges.
    """
    n = diameter * 4
    canvas = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse([0, 0, n - 1, n - 1], fill=255)
    else:
        draw.polygon(outline(shape, n), fill=255)
    return np.asarray(canvas.resize((diameter, diameter), Image.BOX), dtype=np.float32) / 255


@lru_cache(maxsize=8)
def background_bank(size: int) -> np.ndarray:
    """BACKGROUND_VARIANTS of each background, uint8 [len(BACKGROUNDS) * BACKGROUND_VARIANTS, 3, size, size].

    Plain backgrounds vary in brightness; textures (grey, so that shape
    colours stay unambiguous) vary in orientation and phase.
    """
    bank = np.empty((len(BACKGROUNDS), BACKGROUND_VARIANTS, 3, size, size), dtype=np.uint8)
    period = max(4, size // 8)
    yy, xx = np.mgrid[0:size, 0:size]
    for k, name in enumerate(BACKGROUNDS):
        for v in range(BACKGROUND_VARIANTS):
            shift = v * period // 4
            if name == "striped":
                coord = [xx, yy, xx + yy, xx - yy][v % 4] + shift
                bank[k, v] = np.where(coord % period < period // 2, 228, 188)
            elif name == "checkered":
                bank[k, v] = np.where(((xx + shift) // period + (yy + shift) // period) % 2 == 0, 205, 165)
            else:
                lo, hi = {"white": (225, 255), "black": (10, 45), "grey": (115, 150)}[name]
                bank[k, v] = round(lo + (hi - lo) * v / (BACKGROUND_VARIANTS - 1))
    return bank.reshape(-1, 3, size, size)


def paint(out: np.ndarray, shape: str, diameter: int, rgb: np.ndarray, cx: float, cy: float) -> None:
    """Alpha-blend one anti-aliased shape, centred at (cx, cy), into out [3, H, W]."""
    mask = shape_mask(shape, int(diameter))
    limit = out.shape[-1] - diameter
    x0 = min(max(round(cx - diameter / 2), 0), limit)  # keep the shape inside the canvas
    y0 = min(max(round(cy - diameter / 2), 0), limit)
    region = out[:, y0:y0 + diameter, x0:x0 + diameter].astype(np.float32)
    region += (rgb[:, None, None] - region) * mask
    out[:, y0:y0 + diameter, x0:x0 + diameter] = (region + 0.5).astype(np.uint8)


def keyed_rng(*keys: int | str) -> np.random.Generator:
    """A numpy generator keyed by (seed, stream name, ...): one stream per purpose."""
    ints = [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(ints)


def canvases(rng: Callable[[str], np.random.Generator], n: int, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """n random backgrounds: the uint8 tensor [n, 3, size, size] and each one's kind.

    Draw on `images.numpy()`, a view of the same memory.
    """
    kind = rng("background").integers(len(BACKGROUNDS), size=n)
    variant = rng("background variant").integers(BACKGROUND_VARIANTS, size=n)
    # torch's allocator maps big buffers faster than numpy's (first-touch page faults)
    images = torch.empty((n, 3, size, size), dtype=torch.uint8)
    np.take(background_bank(size), kind * BACKGROUND_VARIANTS + variant, axis=0, out=images.numpy())
    return images, kind


def jittered_rgb(color: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """float32 RGB of colour indices `color` plus per-channel jitter (same leading shape)."""
    base = np.array([RGB[c] for c in COLORS], dtype=np.float32)
    return np.clip(base[color] + jitter, 0, 255).astype(np.float32)
