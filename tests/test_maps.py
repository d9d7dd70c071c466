import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.collections import PathCollection

from clipedu.course.maps import (
    class_similarity,
    mean_pairwise_cosine,
    modality_gap,
    plot_attribute_maps,
    plot_embeddings_2d,
    plot_joint_map,
    plot_modality_gap,
    project,
)


def test_project_pca_recovers_a_plane():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(50, 2)) * [5.0, 2.0]
    basis = np.linalg.qr(rng.normal(size=(6, 2)))[0].T  # 2 orthonormal rows in 6-d
    x = plane @ basis + 3.0
    xy = project(x, "pca")
    assert xy.shape == (50, 2)
    # PCA coordinates are the plane's up to rotation/sign: pairwise distances are kept
    d_in = np.linalg.norm(x[:, None] - x[None], axis=-1)
    d_out = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    assert np.allclose(d_in, d_out, atol=1e-8)
    with pytest.raises(ValueError, match="at least 3"):
        project(x[:2])
    with pytest.raises(ValueError, match="method"):
        project(x, "isomap")


def test_project_tsne_is_deterministic_and_separates_clusters():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(20, 5)), rng.normal(size=(20, 5)) + 20])
    a, b = project(x, "tsne", seed=0), project(x, "tsne", seed=0)
    assert np.allclose(a, b)
    gap = np.linalg.norm(a[:20].mean(0) - a[20:].mean(0))
    spread = max(a[:20].std(0).max(), a[20:].std(0).max())
    assert gap > 3 * spread


def test_class_similarity_against_a_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=g)
    labels = torch.arange(30) % 3
    got = class_similarity(x, labels)
    centres = []
    for c in range(3):
        unit = x[labels == c] / x[labels == c].norm(dim=1, keepdim=True)
        m = unit.mean(0)
        centres.append(m / m.norm())
    want = torch.stack(centres) @ torch.stack(centres).T
    assert got.shape == (3, 3)
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="every class"):
        class_similarity(x, labels, num_classes=4)


def test_modality_gap_on_hand_made_cones():
    # images at +e1, texts at +e2, all identical: gap sqrt(2), cones 1, image-text cosine 0
    img = torch.tensor([[1.0, 0.0, 0.0]]).repeat(4, 1)
    txt = torch.tensor([[0.0, 2.0, 0.0]]).repeat(4, 1)  # lengths do not matter
    s = modality_gap(img, txt)
    assert s["gap"] == pytest.approx(2**0.5)
    assert s["image_cone"] == pytest.approx(1.0) and s["text_cone"] == pytest.approx(1.0)
    assert s["image_text"] == pytest.approx(0.0) and s["pair"] == pytest.approx(0.0)
    # the same points for both modalities: no gap
    assert modality_gap(img, img * 3)["gap"] == pytest.approx(0.0, abs=1e-12)


def test_modality_gap_of_two_opposite_clouds_by_hand():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = modality_gap(3 * img, -img)  # lengths do not matter: measured on unit vectors
    assert s["gap"] == pytest.approx(2**0.5)
    assert s["pair"] == pytest.approx(-1.0)
    assert s["image_cone"] == pytest.approx(0.0) and s["text_cone"] == pytest.approx(0.0)


def test_mean_pairwise_cosine_ignores_lengths_and_needs_two_rows():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # cosines 0, 1/sqrt(2), 1/sqrt(2)
    assert mean_pairwise_cosine(x * torch.tensor([[2.0], [5.0], [0.5]])) == pytest.approx(2**0.5 / 3)
    with pytest.raises(ValueError, match="two"):
        mean_pairwise_cosine(x[:1])


def test_modality_gap_cones_match_brute_force():
    g = torch.Generator().manual_seed(2)
    img = F.normalize(torch.randn(6, 5, generator=g) + torch.tensor([3.0, 0, 0, 0, 0]), dim=-1)
    txt = F.normalize(torch.randn(9, 5, generator=g) - torch.tensor([3.0, 0, 0, 0, 0]), dim=-1)
    s = modality_gap(img, txt)
    cone = np.mean([float(img[i] @ img[j]) for i in range(6) for j in range(6) if i != j])
    assert s["image_cone"] == pytest.approx(cone, abs=1e-6)
    assert mean_pairwise_cosine(img) == pytest.approx(cone, abs=1e-6)
    assert s["image_text"] == pytest.approx(float((img @ txt.T).mean()), abs=1e-6)
    assert "pair" not in s  # 6 images, 9 texts: not paired
    assert s["gap"] > 1.0


def test_figures_build():
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(40, 8, generator=g)
    xy = project(emb)
    colour, shape = torch.arange(40) % 4, torch.arange(40) % 3
    fig = plot_attribute_maps(xy, {"colour": (colour, ["red", "green", "blue", "pink"]),
                                   "shape": (shape, ["circle", "square", "star"])}, palette={"red": "red"})
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="labels for"):
        plot_attribute_maps(xy, {"colour": (colour[:5], ["a"])})
    fig = plot_joint_map(xy[:30], xy[30:], colour[:30], colour[30:], ["red", "green", "blue", "pink"], annotate=True)
    plt.close(fig)
    fig = plot_modality_gap({"untrained": (emb[:20], emb[20:]), "trained": (emb[:20], -emb[:20])})
    assert len(fig.axes) == 4
    plt.close(fig)


def test_plot_embeddings_2d_pca_two_modalities():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    fig = plot_embeddings_2d(img, txt, labels=list("abcdef"), connect_pairs=True)
    ax = fig.axes[0]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(fig.axes) == 1 and len(scatters) == 2
    assert [len(s.get_offsets()) for s in scatters] == [6, 6]
    assert len(ax.lines) == 6 and len(ax.texts) == 12
    again = plot_embeddings_2d(img, txt).axes[0].collections[0].get_offsets()
    assert np.allclose(scatters[0].get_offsets(), again)  # deterministic


@pytest.mark.slow  # importing and warming up scikit-learn's t-SNE takes seconds
def test_plot_embeddings_2d_images_only_and_tsne():
    x = np.random.default_rng(0).normal(size=(12, 5))
    fig = plot_embeddings_2d(x, method="tsne", seed=0)
    assert len(fig.axes[0].collections) == 1


def test_plot_embeddings_2d_bad_input():
    with pytest.raises(ValueError, match="share the embedding size"):
        plot_embeddings_2d(torch.zeros(4, 8), torch.zeros(4, 6))
    with pytest.raises(ValueError, match="image_emb must be 2-D"):
        plot_embeddings_2d(torch.zeros(8))
    with pytest.raises(ValueError, match="method must be"):
        plot_embeddings_2d(torch.randn(5, 3), method="mds")
    with pytest.raises(ValueError, match="connect_pairs needs as many texts"):
        plot_embeddings_2d(torch.randn(5, 3), torch.randn(4, 3), connect_pairs=True)
    with pytest.raises(ValueError, match="labels must have 5"):
        plot_embeddings_2d(torch.randn(5, 3), labels=["a"])
