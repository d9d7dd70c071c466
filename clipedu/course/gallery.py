"""The course's image figures: grids of images, search results, a ViT's patch grid.

`clipedu.course.viz` re-exports every function here, so notebooks call them as
`viz.show_images(...)` like the other figures. Each function returns a
matplotlib Figure without showing it; images follow the data contract
(uint8 `[3, H, W]`, RGB) or are PIL images.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

MAX_SEQUENCE = 24  # show_patches draws at most this many patches in its sequence strip
MAX_NUMBERED = 256  # ... and numbers the patches on the image up to this many


def to_hwc(image: Any, name: str = "image") -> np.ndarray:
    """A uint8 [3, H, W] tensor/array or a PIL image -> an [H, W, C] (or [H, W]) array for imshow."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return np.asarray(image.convert("RGB"))
    a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        hint = " (channels last? use .permute(2, 0, 1))" if a.ndim == 3 and a.shape[-1] in (1, 3) else ""
        raise ValueError(f"{name} must be [3, H, W] or [1, H, W] (channels first), got shape {a.shape}{hint}")
    if a.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 (the data contract), got {a.dtype}; show raw images, "
                         "not normalised ones")
    return a.transpose(1, 2, 0) if a.shape[0] == 3 else a[0]


def image_list(images: Any) -> list[np.ndarray]:
    """A uint8 batch [N, 3, H, W], one image [3, H, W], or a list of images -> a list of [H, W, C] arrays."""
    if isinstance(images, (torch.Tensor, np.ndarray)):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4:
            raise ValueError(f"images must be a uint8 batch [N, 3, H, W] or a list of images, got shape "
                             f"{tuple(images.shape)}")
    return [to_hwc(im, f"images[{i}]") for i, im in enumerate(images)]


def draw_image(ax, hwc: np.ndarray, title: str | None = None) -> None:
    """One image on an axes, without ticks."""
    ax.imshow(hwc, cmap="gray" if hwc.ndim == 2 else None)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def show_images(images, titles: Sequence[str] | None = None, ncols: int = 8,
                panel: tuple[float, float] = (1.6, 1.8)) -> Figure:
    """A grid of images with optional titles; one axes per image, `panel` inches (width, height) each."""
    ims = image_list(images)
    if not ims:
        raise ValueError("images is empty")
    if titles is not None and len(titles) != len(ims):
        raise ValueError(f"got {len(titles)} titles for {len(ims)} images")
    cols = min(ncols, len(ims))
    rows = math.ceil(len(ims) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel[0] * cols, panel[1] * rows), squeeze=False,
                             layout="constrained")
    for k, ax in enumerate(axes.flat):
        if k < len(ims):
            draw_image(ax, ims[k], None if titles is None else str(titles[k]))
        else:
            ax.remove()
    return fig


def show_retrieval(query, images, scores, k: int = 5) -> Figure:
    """The query (a text or an image) then the k best-scoring images, titled with rank and score."""
    ims = image_list(images)
    s = np.asarray(scores.detach().cpu().float() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D (one score per image), got shape {s.shape}")
    if len(s) != len(ims):
        raise ValueError(f"scores has {len(s)} entries for {len(ims)} images")
    k = min(k, len(ims))
    if k < 1:
        raise ValueError("k must be at least 1")
    order = np.argsort(-s, kind="stable")[:k]
    fig, axes = plt.subplots(1, k + 1, figsize=(1.8 * (k + 1), 2.2), layout="constrained")
    if isinstance(query, str):
        axes[0].text(0.5, 0.5, query, ha="center", va="center", wrap=True, fontsize=9)
        axes[0].set_axis_off()
        axes[0].set_title("query", fontsize=8)
    else:
        draw_image(axes[0], to_hwc(query, "query"), "query")
    for rank, (ax, i) in enumerate(zip(axes[1:], order), start=1):
        draw_image(ax, ims[i], f"#{rank}  {s[i]:.3f}")
    return fig


def show_patches(image, patch_size: int, sequence: bool = True) -> Figure:
    """An image cut into its patch grid, each patch numbered in the order a ViT reads it (row by row).

    With `sequence`, a strip below shows the same patches one after another, as
    the transformer receives them (the first MAX_SEQUENCE of them).
    """
    hwc = to_hwc(image)
    h, w = hwc.shape[:2]
    p = int(patch_size)
    if p < 1 or h % p or w % p:
        raise ValueError(f"a {h}x{w} image cannot be cut into {patch_size}-pixel patches: a ViT needs both sides "
                         f"divisible by the patch size (resize or crop first)")
    rows, cols = h // p, w // p
    n = rows * cols
    fig = plt.figure(figsize=(7, 6.4 if sequence else 5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.5, 1]) if sequence else (fig, None)
    ax = top.subplots()
    ax.imshow(hwc, cmap="gray" if hwc.ndim == 2 else None)
    for r in range(1, rows):
        ax.axhline(r * p - 0.5, color="white", linewidth=1.5)
    for c in range(1, cols):
        ax.axvline(c * p - 0.5, color="white", linewidth=1.5)
    if n <= MAX_NUMBERED:
        size = max(5, min(10, 120 / max(rows, cols)))
        for k in range(n):
            ax.text((k % cols) * p + 0.5, (k // cols) * p + 0.5, str(k), color="white", fontsize=size,
                    ha="left", va="top", bbox=dict(facecolor="black", alpha=0.6, pad=1, linewidth=0))
    ax.set_axis_off()
    ax.set_title(f"a {h}x{w} image cut into {rows}x{cols} = {n} patches of {p}x{p} pixels")
    if sequence:
        shown = min(n, MAX_SEQUENCE)
        axes = bottom.subplots(1, shown + (shown < n), squeeze=False)[0]
        for k, tile_ax in enumerate(axes[:shown]):
            r, c = divmod(k, cols)
            draw_image(tile_ax, hwc[r * p:(r + 1) * p, c * p:(c + 1) * p], str(k))
        if shown < n:
            axes[-1].text(0.5, 0.5, f"... {n - shown}\nmore", ha="center", va="center", fontsize=8)
            axes[-1].set_axis_off()
        bottom.suptitle("the sequence the transformer reads: one token per patch, row by row", fontsize=10)
    return fig
