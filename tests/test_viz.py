"""clipedu.course.viz: every figure builds on small inputs and rejects bad shapes clearly."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from clipedu.course import gallery, viz  # noqa: E402


def images(n=5, size=8):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def test_plot_logits_heatmap_with_diagonal_and_annotations():
    logits = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    fig = viz.plot_logits(logits, row_labels=list("abc"), col_labels=list("wxyz"), title="t")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # heatmap and colorbar
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [b.get_xy() for b in boxes] == [(-0.5, -0.5), (0.5, 0.5), (1.5, 1.5)]
    assert [t.get_text() for t in ax.texts][:2] == ["0.00", "1.00"] and len(ax.texts) == 12
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert ax.get_title() == "t"
    assert len(viz.plot_logits(np.zeros((30, 30))).axes[0].texts) == 0  # too big to annotate


def test_plot_logits_bad_input():
    with pytest.raises(ValueError, match="logits must be 2-D, got shape"):
        viz.plot_logits(torch.zeros(3))
    with pytest.raises(ValueError, match="col_labels has 2 entries but the matrix has 3"):
        viz.plot_logits(torch.zeros(2, 3), col_labels=["a", "b"])


def test_plot_softmax_temperatures_sums_to_one():
    fig = viz.plot_softmax_temperatures(torch.tensor([2.0, 1.0, 0.1]), [0.1, 1.0, 10.0], labels=["a", "b", "c"])
    assert len(fig.axes) == 3
    for ax in fig.axes:
        heights = [bar.get_height() for bar in ax.patches]
        assert len(heights) == 3 and abs(sum(heights) - 1) < 1e-9
    cold, hot = fig.axes[0].patches[0].get_height(), fig.axes[2].patches[0].get_height()
    assert cold > 0.99 and hot < 0.4  # low temperature is sharp, high is flat
    with pytest.raises(ValueError, match="1-D"):
        viz.plot_softmax_temperatures(torch.zeros(2, 3), [1.0])
    with pytest.raises(ValueError, match="positive"):
        viz.plot_softmax_temperatures(torch.zeros(3), [0.0])


def test_plot_zeroshot_bars_top_k_sorted():
    probs = torch.tensor([0.1, 0.6, 0.05, 0.25])
    names = ["cat", "dog", "car", "cow"]
    fig = viz.plot_zeroshot_bars(probs, names, top=3)
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and len(ax.patches) == 3
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "cow", "dog"]  # best on top
    fig = viz.plot_zeroshot_bars(probs, names, image=images(1)[0])
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="3 class names for 4"):
        viz.plot_zeroshot_bars(probs, names[:3])


def test_show_images_grid_and_titles():
    fig = viz.show_images(images(5), titles=list("abcde"), ncols=3)
    assert len(fig.axes) == 5  # the sixth grid cell is removed
    assert [ax.get_title() for ax in fig.axes] == list("abcde")
    pil = [Image.new("RGB", (8, 6), (255, 0, 0)), Image.new("L", (8, 6))]
    assert len(viz.show_images(pil).axes) == 2
    assert len(viz.show_images(images(1)[0]).axes) == 1  # a single [3, H, W] image


def test_show_images_bad_input():
    with pytest.raises(ValueError, match="channels last"):
        viz.show_images(images(2).permute(0, 2, 3, 1))
    with pytest.raises(ValueError, match="uint8"):
        viz.show_images(images(2).float() / 255)
    with pytest.raises(ValueError, match="got 1 titles for 2 images"):
        viz.show_images(images(2), titles=["a"])
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        viz.show_images(torch.zeros(2, 2, 3, 8, 8, dtype=torch.uint8))


def test_show_retrieval_ranks_by_score():
    fig = viz.show_retrieval("a red square", images(5), torch.tensor([0.1, 0.9, 0.3, 0.8, 0.2]), k=3)
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes[1:]] == ["#1  0.900", "#2  0.800", "#3  0.300"]
    assert len(viz.show_retrieval(images(1)[0], images(2), [0.5, 0.4], k=10).axes) == 3
    with pytest.raises(ValueError, match="scores has 2 entries for 5 images"):
        viz.show_retrieval("q", images(5), [0.1, 0.2])


def test_plot_confusion():
    cm = np.array([[5, 1, 0], [0, 6, 0], [2, 0, 4]])
    fig = viz.plot_confusion(cm, ["a", "b", "c"])
    assert len(fig.axes) == 2 and len(fig.axes[0].texts) == 9
    assert fig.axes[0].texts[0].get_text() == "5"
    fig = viz.plot_confusion(cm, ["a", "b", "c"], normalize=True)
    assert fig.axes[0].texts[0].get_text() == "0.83"
    with pytest.raises(ValueError, match="square"):
        viz.plot_confusion(np.zeros((2, 3)), ["a", "b"])


def test_plot_history_panels_and_sparse_keys():
    history = [{"step": i, "seconds": 0.5 * i, "loss": 2.0 / (i + 1)} for i in range(10)]
    for r in history[::5]:
        r["accuracy"] = 0.1 * r["step"]
    fig = viz.plot_history(history, keys=("loss", "accuracy"), x="seconds")
    assert len(fig.axes) == 2
    assert len(fig.axes[0].lines[0].get_xdata()) == 10
    assert list(fig.axes[1].lines[0].get_xdata()) == [0.0, 2.5]
    with pytest.raises(ValueError, match="keys logged: \\['loss', 'seconds', 'step'\\]"):
        viz.plot_history(history[1:2], keys=("accuracy",))
    with pytest.raises(ValueError, match="x must be"):
        viz.plot_history(history, x="epoch")
    with pytest.raises(ValueError, match="empty"):
        viz.plot_history([])


def test_plot_zeroshot_bars_labels_probabilities():
    fig = viz.plot_zeroshot_bars(torch.tensor([0.25, 0.75]), ["a", "b"], top=2)
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.250", "0.750"]  # bars are drawn bottom-up


def test_plot_logits_fixed_colour_scale():
    fig = viz.plot_logits(torch.tensor([[0.2, 0.3], [0.1, 0.4]]), vmin=0, vmax=1)
    assert fig.axes[0].images[0].get_clim() == (0, 1)


def test_plot_attention_heads_share_a_scale_and_label_tokens():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, 4, generator=g).softmax(-1)
    fig = viz.plot_attention(w, row_labels=list("abcd"), title="t")
    heads = [ax for ax in fig.axes if ax.images]
    assert len(heads) == 3 and len(fig.axes) == 4  # three heads and the colour bar
    assert [ax.get_title() for ax in heads] == ["head 0", "head 1", "head 2"]
    assert {ax.images[0].get_clim() for ax in heads} == {(0.0, float(w.max()))}
    assert np.allclose(heads[1].images[0].get_array(), w[1].numpy())
    assert [t.get_text() for t in heads[0].get_xticklabels()] == list("abcd")  # square: keys reuse the labels
    assert fig._suptitle.get_text() == "t"


def test_plot_attention_masked_entries_and_bad_input():
    mask = torch.full((3, 3), float("-inf")).triu(1)
    fig = viz.plot_attention(mask, titles=["additive mask"])
    shown = fig.axes[0].images[0].get_array()
    assert shown.mask.tolist() == torch.isinf(mask).tolist()  # -inf cells are masked (drawn grey)
    assert fig.axes[0].get_title() == "additive mask"
    assert len(viz.plot_attention(torch.rand(2, 5), row_labels=["q1", "q2"]).axes) == 2  # [L, S], not square
    with pytest.raises(ValueError, match=r"\[L, S\] or \[H, L, S\]"):
        viz.plot_attention(torch.zeros(4))
    with pytest.raises(ValueError, match="row_labels has 2 entries but the matrix has 3"):
        viz.plot_attention(torch.zeros(3, 3), row_labels=["a", "b"])
    with pytest.raises(ValueError, match="got 1 titles for 2 panels"):
        viz.plot_attention(torch.zeros(2, 3, 3), titles=["x"])


def test_show_patches_numbers_patches_in_reading_order():
    image = torch.zeros(3, 8, 12, dtype=torch.uint8)
    image[:, 4:, 8:] = 255  # the last patch of a 2 x 3 grid is white
    fig = viz.show_patches(image, 4)
    main, *tiles = fig.axes
    assert sorted(t.get_text() for t in main.texts) == [str(k) for k in range(6)]
    assert "2x3 = 6 patches of 4x4" in main.get_title()
    assert [ax.get_title() for ax in tiles] == [str(k) for k in range(6)]
    assert tiles[5].images[0].get_array().min() == 255 and tiles[4].images[0].get_array().max() == 0
    assert len(viz.show_patches(image, 4, sequence=False).axes) == 1
    many = viz.show_patches(torch.zeros(3, 32, 32, dtype=torch.uint8), 4)  # 64 patches: strip cut short
    assert len(many.axes) == 1 + gallery.MAX_SEQUENCE + 1  # the image, the strip, "... 40 more"
    assert many.axes[-1].texts[0].get_text() == f"... {64 - gallery.MAX_SEQUENCE}\nmore"
    with pytest.raises(ValueError, match="divisible by the patch size"):
        viz.show_patches(image, 5)


def test_plot_position_similarity_tiles():
    grid = 3
    table = torch.eye(grid * grid + 1)  # orthogonal positions, with a class-token row
    fig = viz.plot_position_similarity([table, torch.ones(grid * grid, 4)], grid, titles=["eye", "ones"])
    eye, ones = (ax.images[0].get_array() for ax in fig.axes[:2])
    assert eye.shape == (grid * (grid + 1) - 1,) * 2
    assert eye[0, 0] == 1 and eye[0, 1] == 0 and eye.mask[0, grid]  # tile (0, 0); the gap after it
    assert eye[grid + 1 + 1, 1] == 0 and eye[grid + 1 + 1, grid + 1 + 1] == 1  # tile (1, 1): itself at (1, 1)
    assert np.nanmin(ones) == 1  # identical positions are all similar
    with pytest.raises(ValueError, match="needs 9 positions"):
        viz.plot_position_similarity(torch.zeros(8, 4), grid)
