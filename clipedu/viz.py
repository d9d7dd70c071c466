"""The course's figures.

Every function builds a matplotlib Figure and returns it without showing it;
notebooks end a plot cell with `plt.show()`. Inputs may be torch tensors or
numpy arrays; images follow the data contract (uint8 `[3, H, W]`, RGB) or
are PIL images.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

IMAGE_COLOR, TEXT_COLOR = "tab:blue", "tab:orange"
MAX_ANNOTATED = 20  # matrices larger than this per side are not annotated cell by cell


def _array(x: Any, name: str, ndim: int | None = None) -> np.ndarray:
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


def _heatmap(ax, m: np.ndarray, row_labels, col_labels, annotate: bool, fmt: str, cmap: str) -> None:
    im = ax.imshow(m, cmap=cmap, aspect="auto")
    ax.figure.colorbar(im, ax=ax)
    rows, cols = m.shape
    if row_labels is not None:
        ax.set_yticks(range(rows), labels=list(row_labels))
    if col_labels is not None:
        ax.set_xticks(range(cols), labels=list(col_labels), rotation=45, ha="right")
    if annotate and max(rows, cols) <= MAX_ANNOTATED:
        mid = (np.nanmax(m) + np.nanmin(m)) / 2
        for i in range(rows):
            for j in range(cols):
                ax.text(j, i, format(m[i, j], fmt), ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] < mid else "black")


def plot_logits(logits, row_labels=None, col_labels=None, title: str = "image-text similarity",
                annotate: bool = True, fmt: str = ".2f") -> Figure:
    """Heatmap of a [rows, cols] logit, similarity or probability matrix; matching pairs (the diagonal) boxed."""
    m = _array(logits, "logits", ndim=2)
    _check_labels(row_labels, m.shape[0], "row_labels")
    _check_labels(col_labels, m.shape[1], "col_labels")
    size = (min(12, 3 + 0.8 * m.shape[1]), min(10, 2 + 0.6 * m.shape[0]))
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    _heatmap(ax, m, row_labels, col_labels, annotate, fmt, "viridis")
    for i in range(min(m.shape)):
        ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xlabel("texts")
    ax.set_ylabel("images")
    ax.set_title(title)
    return fig


def plot_softmax_temperatures(logits, temperatures: Sequence[float], labels=None) -> Figure:
    """One bar chart per temperature of softmax(logits / T) for one row of logits."""
    z = _array(logits, "logits (one row of logits)", ndim=1)
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


def _project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    """[N, D] -> [N, 2] with PCA, t-SNE or UMAP (deterministic for a seed)."""
    if method == "pca":
        centered = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        vt = vt[:2]
        signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])  # a fixed sign per axis
        out = centered @ (vt * signs[:, None]).T
        return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    if method == "tsne":
        from sklearn.manifold import TSNE
        perplexity = min(30.0, (len(x) - 1) / 3)
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    if method == "umap":
        import umap  # imported here: slow to import
        return umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(x)
    raise ValueError(f"method must be 'pca', 'tsne' or 'umap', got {method!r}")


def plot_embeddings_2d(image_emb, text_emb=None, labels=None, method: str = "pca", seed: int = 0,
                       connect_pairs: bool = False) -> Figure:
    """Image (circles) and text (triangles) embeddings projected together into one 2-D map.

    `labels` annotates the points: N labels (images only, and texts too when
    there are N of them, paired) or N + M (images then texts).
    `connect_pairs` draws a line from image i to text i (needs N == M).
    """
    img = _array(image_emb, "image_emb", ndim=2)
    txt = None if text_emb is None else _array(text_emb, "text_emb", ndim=2)
    if txt is not None and txt.shape[1] != img.shape[1]:
        raise ValueError(f"image_emb and text_emb must share the embedding size, got {img.shape[1]} and "
                         f"{txt.shape[1]}")
    n, m = len(img), 0 if txt is None else len(txt)
    if n + m < 3:
        raise ValueError(f"need at least 3 points to draw a map, got {n + m}")
    if connect_pairs and n != m:
        raise ValueError(f"connect_pairs needs as many texts as images, got {n} images and {m} texts")
    if labels is not None and len(labels) not in (n, n + m):
        raise ValueError(f"labels must have {n} (images) or {n + m} (images then texts) entries, got {len(labels)}")
    xy = _project(img if txt is None else np.concatenate([img, txt]), method, seed)
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    if connect_pairs:
        for i in range(n):
            ax.plot(xy[[i, n + i], 0], xy[[i, n + i], 1], color="gray", linewidth=0.5, alpha=0.6)
    ax.scatter(xy[:n, 0], xy[:n, 1], c=IMAGE_COLOR, marker="o", label="images")
    if m:
        ax.scatter(xy[n:, 0], xy[n:, 1], c=TEXT_COLOR, marker="^", label="texts")
    if labels is not None:
        full = list(labels) * (2 if len(labels) == n and m == n else 1)
        for (px, py), text in zip(xy, full):
            ax.annotate(str(text), (px, py), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.legend()
    ax.set_title(f"embeddings ({method.upper() if method == 'pca' else method})")
    return fig


def _to_hwc(image: Any, name: str = "image") -> np.ndarray:
    """A uint8 [3, H, W] tensor/array or a PIL image -> an [H, W, C] array for imshow."""
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


def _image_list(images: Any) -> list[np.ndarray]:
    if isinstance(images, (torch.Tensor, np.ndarray)):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4:
            raise ValueError(f"images must be a uint8 batch [N, 3, H, W] or a list of images, got shape "
                             f"{tuple(images.shape)}")
    return [_to_hwc(im, f"images[{i}]") for i, im in enumerate(images)]


def _show(ax, hwc: np.ndarray, title: str | None = None) -> None:
    ax.imshow(hwc, cmap="gray" if hwc.ndim == 2 else None)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def show_images(images, titles: Sequence[str] | None = None, ncols: int = 8) -> Figure:
    """A grid of images with optional titles; one axes per image."""
    ims = _image_list(images)
    if not ims:
        raise ValueError("images is empty")
    if titles is not None and len(titles) != len(ims):
        raise ValueError(f"got {len(titles)} titles for {len(ims)} images")
    cols = min(ncols, len(ims))
    rows = math.ceil(len(ims) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False, layout="constrained")
    for k, ax in enumerate(axes.flat):
        if k < len(ims):
            _show(ax, ims[k], None if titles is None else str(titles[k]))
        else:
            ax.remove()
    return fig


def show_retrieval(query, images, scores, k: int = 5) -> Figure:
    """The query (a text or an image) then the k best-scoring images, titled with rank and score."""
    ims = _image_list(images)
    s = _array(scores, "scores", ndim=1)
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
        _show(axes[0], _to_hwc(query, "query"), "query")
    for rank, (ax, i) in enumerate(zip(axes[1:], order), start=1):
        _show(ax, ims[i], f"#{rank}  {s[i]:.3f}")
    return fig


def plot_zeroshot_bars(probs, class_names: Sequence[str], image=None, top: int = 5) -> Figure:
    """Horizontal bars of the `top` most probable classes, with the image beside them if given."""
    p = _array(probs, "probs (one image's class probabilities)", ndim=1)
    if len(class_names) != len(p):
        raise ValueError(f"got {len(class_names)} class names for {len(p)} probabilities")
    order = np.argsort(-p, kind="stable")[:top][::-1]  # best at the top
    ncols = 1 if image is None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(3.2 * ncols + 1, 2.6), layout="constrained", squeeze=False)
    if image is not None:
        _show(axes[0, 0], _to_hwc(image))
    ax = axes[0, -1]
    ax.barh(range(len(order)), p[order], color=TEXT_COLOR)
    ax.set_yticks(range(len(order)), labels=[class_names[i] for i in order])
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    return fig


def plot_confusion(cm, class_names: Sequence[str], normalize: bool = False) -> Figure:
    """Confusion matrix: rows are true classes, columns predicted ones."""
    m = _array(cm, "cm", ndim=2)
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
