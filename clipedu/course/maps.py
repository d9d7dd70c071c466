"""Maps of the shared embedding space: 2-D projections by attribute, class similarities, the modality gap.

CLIP's space has no named axes; what it learned shows up as clusters and
directions. `project` flattens embeddings to 2-D (PCA, t-SNE or UMAP);
`plot_embeddings_2d` draws images and texts of a few examples on one map, with
labels; `plot_attribute_maps` draws one projection several times, coloured by
one attribute per panel (colour, shape, ...), and `plot_joint_map` puts images
and texts of whole datasets on one map.

The modality gap (Liang et al. 2022): image embeddings and text embeddings of
a CLIP model lie in two separate narrow cones of the unit sphere, so the
centre of the images and the centre of the texts are far apart, and every
image-text cosine is modest. `modality_gap` measures it and
`plot_modality_gap` draws it, for one model or for several (before and after
training).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from clipedu.course.viz import IMAGE_COLOR, TEXT_COLOR, as_array

__all__ = ["project", "plot_embeddings_2d", "class_similarity", "mean_pairwise_cosine", "modality_gap",
           "plot_attribute_maps", "plot_joint_map", "plot_modality_gap"]


def project(embeddings, method: str = "pca", seed: int = 0) -> np.ndarray:
    """[N, D] embeddings -> [N, 2] coordinates by PCA, t-SNE or UMAP (deterministic for a seed).

    t-SNE and UMAP keep neighbourhoods, not distances: the size of a cluster and the
    space between clusters carry little meaning. PCA keeps the two directions of
    largest spread, so distances along them are real.
    """
    x = as_array(embeddings, "embeddings", ndim=2)
    if len(x) < 3:
        raise ValueError(f"need at least 3 points to draw a map, got {len(x)}")
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
    img = as_array(image_emb, "image_emb", ndim=2)
    txt = None if text_emb is None else as_array(text_emb, "text_emb", ndim=2)
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
    xy = project(img if txt is None else np.concatenate([img, txt]), method, seed)
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


def _unit(x) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return F.normalize(t.double(), dim=-1)


def class_similarity(features, labels, num_classes: int | None = None) -> torch.Tensor:
    """Cosine similarity [C, C] between the (normalised) mean embeddings of each class."""
    x = _unit(features)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(labels) != len(x):
        raise ValueError(f"{len(x)} embeddings but {len(labels)} labels")
    c = int(labels.max()) + 1 if num_classes is None else num_classes
    sums = torch.zeros(c, x.shape[1], dtype=x.dtype).index_add_(0, labels, x)
    if (torch.bincount(labels, minlength=c) == 0).any():
        raise ValueError("every class needs at least one embedding")
    centres = F.normalize(sums, dim=-1)
    return (centres @ centres.T).float()


def mean_pairwise_cosine(x: torch.Tensor) -> float:
    """The mean cosine between distinct rows of x [N, D]: how narrow the cone of one modality is."""
    x = _unit(x)
    n = len(x)
    if n < 2:
        raise ValueError("need at least two embeddings to compare")
    return (((x.sum(0) ** 2).sum() - n) / (n * (n - 1))).item()  # sum over i != j of x_i . x_j


def modality_gap(image_features, text_features) -> dict[str, float]:
    """How far apart the two modalities sit, from unit image [N, D] and text [M, D] embeddings.

    gap: |mean image - mean text| (0 when both clouds share a centre, at most 2);
    image_cone / text_cone: the mean cosine between two different images / texts
    (near 1: a narrow cone); image_text: the mean cosine of all image-text pairs;
    pair: the mean cosine of matching pairs (row i with row i), when N == M.
    """
    img, txt = _unit(image_features), _unit(text_features)
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"image and text embeddings differ in size: {img.shape[1]} and {txt.shape[1]}")
    if len(img) < 2 or len(txt) < 2:
        raise ValueError("need at least two image and two text embeddings")
    out = {"gap": (img.mean(0) - txt.mean(0)).norm().item(),
           "image_cone": mean_pairwise_cosine(img), "text_cone": mean_pairwise_cosine(txt),
           "image_text": (img @ txt.T).mean().item()}
    if len(img) == len(txt):
        out["pair"] = (img * txt).sum(-1).mean().item()
    return out


def _colours(names: Sequence[str], palette: Mapping[str, str] | None) -> list:
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return [(palette or {}).get(str(n), cmap(k % cmap.N)) for k, n in enumerate(names)]


def plot_attribute_maps(xy, attributes: Mapping[str, tuple[Sequence[int], Sequence[str]]],
                        palette: Mapping[str, str] | None = None, title: str | None = None,
                        point_size: float = 8) -> Figure:
    """The same 2-D map once per attribute, each panel coloured by one attribute.

    xy: [N, 2] coordinates (from `project`). attributes: {panel title: (labels [N],
    names)}, labels indexing names. palette: a colour per name where one is natural
    ({"red": "red"}); other names get tab10/tab20 colours.
    """
    xy = as_array(xy, "xy", ndim=2)
    if xy.shape[1] != 2:
        raise ValueError(f"xy must be [N, 2] coordinates (use project first), got shape {xy.shape}")
    if not attributes:
        raise ValueError("attributes is empty: give at least one {title: (labels, names)}")
    fig, axes = plt.subplots(1, len(attributes), figsize=(4.6 * len(attributes) + 1.2, 4.2), squeeze=False,
                             layout="constrained")
    for ax, (panel, (labels, names)) in zip(axes[0], attributes.items()):
        labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=int)
        if len(labels) != len(xy):
            raise ValueError(f"{panel!r}: {len(labels)} labels for {len(xy)} points")
        colours = _colours(names, palette)
        for k, name in enumerate(names):
            mask = labels == k
            if mask.any():
                ax.scatter(xy[mask, 0], xy[mask, 1], s=point_size, color=colours[k], label=str(name),
                           edgecolors="none")
        ax.set_title(f"coloured by {panel}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=1.5, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def plot_joint_map(image_xy, text_xy, image_labels, text_labels, names: Sequence[str],
                   palette: Mapping[str, str] | None = None, title: str | None = None,
                   annotate: bool = False) -> Figure:
    """Images (small dots) and texts (large triangles) on one 2-D map, both coloured by class.

    Project images and texts together (`project(torch.cat([img, txt]))`) and split
    the coordinates; with `annotate`, each text is labelled with its class name.
    """
    img, txt = as_array(image_xy, "image_xy", ndim=2), as_array(text_xy, "text_xy", ndim=2)
    il, tl = np.asarray(image_labels, dtype=int), np.asarray(text_labels, dtype=int)
    if len(il) != len(img) or len(tl) != len(txt):
        raise ValueError(f"got {len(il)} image labels for {len(img)} images and {len(tl)} text labels for "
                         f"{len(txt)} texts")
    colours = np.array(_colours(names, palette), dtype=object)
    fig, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
    ax.scatter(img[:, 0], img[:, 1], s=8, c=list(colours[il]), edgecolors="none", alpha=0.7)
    ax.scatter(txt[:, 0], txt[:, 1], s=70, c=list(colours[tl]), marker="^", edgecolors="black", linewidths=0.8)
    if annotate:
        for (x, y), k in zip(txt, tl):
            ax.annotate(str(names[k]), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.scatter([], [], s=8, c="grey", label="images")
    ax.scatter([], [], s=70, c="white", marker="^", edgecolors="black", label="texts")
    ax.legend(fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "images and texts on one map")
    return fig


def plot_modality_gap(panels: Mapping[str, tuple], bins: int = 40) -> Figure:
    """For each model: its images and texts on a PCA map with both centres and the gap between them (top),
    and histograms of image-image, text-text and matching image-text cosines (bottom).

    panels: {title: (image embeddings [N, D], text embeddings [N, D])}, row i of each a pair.
    """
    if not panels:
        raise ValueError("panels is empty: give {title: (image_embeddings, text_embeddings)}")
    fig, axes = plt.subplots(2, len(panels), figsize=(4.8 * len(panels), 7.4), squeeze=False,
                             layout="constrained")
    for k, (name, (image_emb, text_emb)) in enumerate(panels.items()):
        img, txt = _unit(image_emb), _unit(text_emb)
        if img.shape != txt.shape:
            raise ValueError(f"{name!r}: images {tuple(img.shape)} and texts {tuple(txt.shape)} must be paired")
        stats = modality_gap(img, txt)
        xy = project(torch.cat([img, txt, img.mean(0, keepdim=True), txt.mean(0, keepdim=True)]), "pca")
        n = len(img)
        ax = axes[0, k]
        ax.scatter(xy[:n, 0], xy[:n, 1], s=6, color=IMAGE_COLOR, alpha=0.5, label="images")
        ax.scatter(xy[n:2 * n, 0], xy[n:2 * n, 1], s=6, color=TEXT_COLOR, alpha=0.5, label="texts")
        ci, ct = xy[2 * n], xy[2 * n + 1]
        ax.annotate("", xy=tuple(ct), xytext=tuple(ci), arrowprops=dict(arrowstyle="->", color="black", lw=2))
        ax.scatter(*ci, marker="X", s=120, color=IMAGE_COLOR, edgecolors="black", zorder=3)
        ax.scatter(*ct, marker="X", s=120, color=TEXT_COLOR, edgecolors="black", zorder=3)
        ax.set_title(f"{name}\ngap |mean image - mean text| = {stats['gap']:.2f}", fontsize=10)
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(fontsize=8)
        ax = axes[1, k]
        off = ~torch.eye(n, dtype=torch.bool)
        for values, label, colour in [((img @ img.T)[off], "image-image", IMAGE_COLOR),
                                      ((txt @ txt.T)[off], "text-text", TEXT_COLOR),
                                      ((img * txt).sum(-1), "image-its caption", "tab:green")]:
            ax.hist(values.numpy(), bins=bins, range=(-1, 1), density=True, alpha=0.55, color=colour, label=label)
        ax.set_xlabel("cosine similarity")
        ax.set_yticks([])
        ax.legend(fontsize=8)
    return fig
