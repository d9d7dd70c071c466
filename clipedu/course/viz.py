"""The course's figures.

Every function builds a matplotlib Figure and returns it without showing it;
notebooks end a plot cell with `plt.show()`. Inputs may be torch tensors or
numpy arrays; images follow the data contract (uint8 `[3, H, W]`, RGB) or
are PIL images.

This module draws matrices and curves; maps of the embedding space live in
`clipedu.course.maps`, and the image figures (grids of
images, search results, a ViT's patches) live in `clipedu.course.gallery` and are
re-exported here, so every figure is `viz.<name>`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from clipedu.course.gallery import (
    draw_image,
    show_images,
    show_patches,
    show_retrieval,
    to_hwc,
)

__all__ = ["plot_logits", "plot_softmax_temperatures", "plot_zeroshot_bars",
           "plot_confusion", "plot_history", "plot_attention", "plot_position_similarity",
           "show_images", "show_retrieval", "show_patches"]

IMAGE_COLOR, TEXT_COLOR = "tab:blue", "tab:orange"
MAX_ANNOTATED = 20  # matrices larger than this per side are not annotated cell by cell


def as_array(x: Any, name: str, ndim: int | None = None) -> np.ndarray:
    """A float numpy copy of a tensor/array/list, with a clear error on the wrong rank."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    a = np.asarray(x, dtype=np.float64)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(a.shape)}")
    return a


def _check_labels(labels: Sequence[str] | None, n: int, name: str) -> None:
    if labels is not None and len(labels) != n:
        raise ValueError(f"{name} has {len(labels)} entries but the matrix has {n} along that axis")


def _heatmap(ax, m: np.ndarray, row_labels, col_labels, annotate: bool, fmt: str, cmap: str,
             vmin: float | None = None, vmax: float | None = None) -> None:
    im = ax.imshow(m, cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    ax.figure.colorbar(im, ax=ax)
    rows, cols = m.shape
    if row_labels is not None:
        ax.set_yticks(range(rows), labels=list(row_labels))
    if col_labels is not None:
        ax.set_xticks(range(cols), labels=list(col_labels), rotation=45, ha="right")
    if annotate and max(rows, cols) <= MAX_ANNOTATED:
        lo = np.nanmin(m) if vmin is None else vmin
        mid = (lo + (np.nanmax(m) if vmax is None else vmax)) / 2
        for i in range(rows):
            for j in range(cols):
                ax.text(j, i, format(m[i, j], fmt), ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] < mid else "black")


def plot_logits(logits, row_labels=None, col_labels=None, title: str = "image-text similarity",
                annotate: bool = True, fmt: str = ".2f", vmin: float | None = None,
                vmax: float | None = None) -> Figure:
    """Heatmap of a [rows, cols] logit, similarity or probability matrix; matching pairs (the diagonal) boxed.

    `vmin`/`vmax` fix the colour scale (e.g. 0 and 1 for probabilities), so that
    several figures can be compared by colour.
    """
    m = as_array(logits, "logits", ndim=2)
    _check_labels(row_labels, m.shape[0], "row_labels")
    _check_labels(col_labels, m.shape[1], "col_labels")
    size = (min(12, 3 + 0.8 * m.shape[1]), min(10, 2 + 0.6 * m.shape[0]))
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    _heatmap(ax, m, row_labels, col_labels, annotate, fmt, "viridis", vmin, vmax)
    for i in range(min(m.shape)):
        ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xlabel("texts")
    ax.set_ylabel("images")
    ax.set_title(title)
    return fig


def plot_softmax_temperatures(logits, temperatures: Sequence[float], labels=None) -> Figure:
    """One bar chart per temperature of softmax(logits / T) for one row of logits."""
    z = as_array(logits, "logits (one row of logits)", ndim=1)
    if len(temperatures) == 0 or any(t <= 0 for t in temperatures):
        raise ValueError(f"temperatures must be a non-empty list of positive numbers, got {list(temperatures)}")
    _check_labels(labels, len(z), "labels")
    names = list(labels) if labels is not None else [str(i) for i in range(len(z))]
    fig, axes = plt.subplots(1, len(temperatures), figsize=(3 * len(temperatures), 2.8),
                             sharey=True, layout="constrained", squeeze=False)
    for ax, t in zip(axes[0], temperatures):
        p = np.exp((z - z.max()) / t)
        p /= p.sum()
        ax.bar(range(len(z)), p, color=TEXT_COLOR)
        ax.set_xticks(range(len(z)), labels=names, rotation=45, ha="right")
        ax.set_title(f"T = {t:g}")
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("probability")
    return fig


def plot_zeroshot_bars(probs, class_names: Sequence[str], image=None, top: int = 5) -> Figure:
    """Horizontal bars of the `top` most probable classes, each labelled with its probability, with the image
    beside them if given."""
    p = as_array(probs, "probs (one image's class probabilities)", ndim=1)
    if len(class_names) != len(p):
        raise ValueError(f"got {len(class_names)} class names for {len(p)} probabilities")
    order = np.argsort(-p, kind="stable")[:top][::-1]  # best at the top
    ncols = 1 if image is None else 2
    height = max(2.6, 0.8 + 0.35 * len(order))
    fig, axes = plt.subplots(1, ncols, figsize=(3.2 * ncols + 1, height), layout="constrained", squeeze=False)
    if image is not None:
        draw_image(axes[0, 0], to_hwc(image))
    ax = axes[0, -1]
    bars = ax.barh(range(len(order)), p[order], color=TEXT_COLOR)
    ax.bar_label(bars, fmt="%.3f", padding=3, fontsize=8, clip_on=False)
    ax.set_yticks(range(len(order)), labels=[class_names[i] for i in order])
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    return fig


def plot_confusion(cm, class_names: Sequence[str], normalize: bool = False) -> Figure:
    """Confusion matrix: rows are true classes, columns predicted ones."""
    m = as_array(cm, "cm", ndim=2)
    if m.shape[0] != m.shape[1]:
        raise ValueError(f"cm must be square [C, C], got shape {m.shape}")
    _check_labels(class_names, m.shape[0], "class_names")
    if normalize:
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    side = 2 + 0.45 * len(m)
    fig, ax = plt.subplots(figsize=(side + 1, side), layout="constrained")
    _heatmap(ax, m, class_names, class_names, True, ".2f" if normalize else ".0f", "Blues")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig


def plot_history(history: Sequence[dict], keys: Sequence[str] = ("loss",), x: str = "step") -> Figure:
    """One panel per key of a training history (a list of dicts, one per logged step)."""
    if x not in ("step", "seconds", "images_seen"):
        raise ValueError(f"x must be 'step', 'seconds' or 'images_seen', got {x!r}")
    if isinstance(keys, str):
        keys = (keys,)
    if not history:
        raise ValueError("history is empty: nothing was logged")
    available = sorted({k for record in history for k in record})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), layout="constrained", squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(r[x], r[key]) for r in history if key in r and x in r]
        if not points:
            plt.close(fig)
            raise ValueError(f"no record of history has both {x!r} and {key!r}; keys logged: {available}")
        xs, ys = zip(*points)
        ax.plot(xs, ys)
        ax.set_xlabel(x.replace("_", " "))
        ax.set_title(key)
    return fig


def plot_attention(weights, row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
                   title: str | None = None, titles: Sequence[str] | None = None, vmax: float | None = None,
                   ncols: int = 4) -> Figure:
    """Heatmaps of attention weights: one [L, S] matrix, or one panel per head for [H, L, S].

    Rows are queries (the token that attends), columns keys (the token attended
    to); `row_labels`/`col_labels` name them (col_labels default to row_labels
    when the matrix is square). A 0/1 mask draws the same way. Entries that are
    -inf or NaN (an additive mask, a masked score) are drawn grey. All panels
    share one colour scale, from 0 (or the smallest value) to `vmax` (default:
    the largest value), so panels can be compared by colour.
    """
    w = as_array(weights, "weights")
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3:
        raise ValueError(f"weights must be [L, S] or [H, L, S] (one matrix per head), got shape {w.shape}")
    heads, rows, cols = w.shape
    if col_labels is None and row_labels is not None and rows == cols:
        col_labels = row_labels
    _check_labels(row_labels, rows, "row_labels")
    _check_labels(col_labels, cols, "col_labels")
    if titles is not None and len(titles) != heads:
        raise ValueError(f"got {len(titles)} titles for {heads} panels")
    finite = w[np.isfinite(w)]
    vmin = min(0.0, float(finite.min())) if finite.size else 0.0
    if vmax is None:
        vmax = float(finite.max()) if finite.size else 1.0
    ncols = min(ncols, heads)
    nrows = math.ceil(heads / ncols)
    side = (max(2.5, 0.32 * cols + 1.2), max(2.2, 0.32 * rows + 1.0))
    fig, axes = plt.subplots(nrows, ncols, figsize=(side[0] * ncols + 0.8, side[1] * nrows + 0.4),
                             squeeze=False, layout="constrained")
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgray")
    for k, ax in enumerate(axes.flat):
        if k >= heads:
            ax.remove()
            continue
        im = ax.imshow(np.ma.masked_invalid(w[k]), cmap=cmap, vmin=vmin, vmax=vmax)
        if row_labels is not None:
            ax.set_yticks(range(rows), labels=list(row_labels))
        if col_labels is not None:
            ax.set_xticks(range(cols), labels=list(col_labels), rotation=90)
        if titles is not None or heads > 1:
            ax.set_title(titles[k] if titles is not None else f"head {k}", fontsize=10)
        if k % ncols == 0:
            ax.set_ylabel("query (attending)")
        if k + ncols >= heads:  # the lowest panel of its column
            ax.set_xlabel("key (attended to)")
    fig.colorbar(im, ax=axes, shrink=0.8, label="weight")
    if title:
        fig.suptitle(title)
    return fig


def _position_mosaic(table: np.ndarray, grid: int) -> np.ndarray:
    """Cosine similarity of each grid position with every other, as grid x grid tiles with a gap between."""
    unit = F.normalize(torch.as_tensor(table, dtype=torch.float64), dim=-1)
    sims = (unit @ unit.T).view(grid, grid, grid, grid).numpy()
    step = grid + 1
    mosaic = np.full((grid * step - 1, grid * step - 1), np.nan)
    for r in range(grid):
        for c in range(grid):
            mosaic[r * step:r * step + grid, c * step:c * step + grid] = sims[r, c]
    return mosaic


def plot_position_similarity(positional_embedding, grid: int, titles: Sequence[str] | None = None) -> Figure:
    """What a ViT's position table has learned: tile (r, c) shows the cosine similarity of position (r, c)
    with every position of the grid.

    `positional_embedding` is one table [grid*grid (+1), W] or a list of them
    (one panel each); a first row for the class token is dropped.
    """
    tables = [positional_embedding] if isinstance(positional_embedding, (torch.Tensor, np.ndarray)) \
        else list(positional_embedding)
    if titles is not None and len(titles) != len(tables):
        raise ValueError(f"got {len(titles)} titles for {len(tables)} tables")
    mosaics = []
    for k, table in enumerate(tables):
        t = as_array(table, f"positional_embedding[{k}]", ndim=2)
        if len(t) == grid * grid + 1:
            t = t[1:]  # the class token's row has no place on the grid
        if len(t) != grid * grid:
            raise ValueError(f"a {grid}x{grid} grid needs {grid * grid} positions (+1 for the class token), "
                             f"got a table with {len(t)} rows")
        mosaics.append(_position_mosaic(t, grid))
    fig, axes = plt.subplots(1, len(mosaics), figsize=(4.6 * len(mosaics) + 1, 4.6), squeeze=False,
                             layout="constrained")
    for k, (ax, mosaic) in enumerate(zip(axes[0], mosaics)):
        im = ax.imshow(mosaic, cmap="viridis", vmin=-1, vmax=1)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[k], fontsize=10)
    fig.colorbar(im, ax=axes, shrink=0.8, label="cosine similarity")
    return fig
