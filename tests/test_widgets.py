"""clipedu.course.widgets: the plain figures draw what the model computes, and the controls redraw them.

The widgets are driven without a front end: setting a control's value fires
the same observers a browser would, and the playground keeps the figure it
drew last.
"""

import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from clipedu.course import widgets  # noqa: E402
from clipedu.model import CLIP, CLIPConfig  # noqa: E402
from clipedu.tokenizer import BPETokenizer  # noqa: E402
from clipedu.transforms import normalize  # noqa: E402

CAPTIONS = ["a red circle", "a blue square", "a green star", "a small red square", "there is a circle"]


@pytest.fixture(scope="module")
def tiny():
    """An untrained tiny CLIP, its tokenizer and a gallery of 8 random 16-px images."""
    tokenizer = BPETokenizer.train(CAPTIONS, vocab_size=540)
    torch.manual_seed(0)
    config = CLIPConfig(embed_dim=16, image_resolution=16, vision_layers=1, vision_width=32, vision_patch_size=8,
                        context_length=12, vocab_size=tokenizer.vocab_size, transformer_width=32,
                        transformer_heads=2, transformer_layers=1, vision_heads=2)
    model = CLIP(config).eval()
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    return model, tokenizer, images


def embed(model, tokenizer, images, texts):
    """Unit image and text embeddings, computed here without clipedu.zeroshot."""
    with torch.no_grad():
        img = F.normalize(model.encode_image(normalize(images)), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer(texts, context_length=12)), dim=-1)
    return img, txt


def drawn_images(fig):
    return [ax.images[0].get_array() for ax in fig.axes if ax.images]


# ----------------------------------------------------------------------------- temperature


def test_temperature_figure_shows_the_row_softmax():
    cos = torch.tensor([[0.9, 0.2, 0.1], [0.3, 0.8, 0.2], [0.1, 0.4, 0.7]])
    fig = widgets.temperature_figure(cos, 0.1, row_labels=list("abc"), col_labels=list("xyz"))
    shown = fig.axes[0].images[0].get_array()
    expected = np.exp(cos.numpy() / 0.1) / np.exp(cos.numpy() / 0.1).sum(axis=1, keepdims=True)
    assert np.allclose(shown, expected)
    assert fig.axes[0].images[0].get_clim() == (0, 1)  # a fixed scale: colours compare across temperatures
    loss = -np.log(np.diag(expected)).mean()
    assert f"image->text loss {loss:.4g}" in fig.axes[0].get_title()
    assert "T = 0.1 (scale 1/T = 10)" in fig.axes[0].get_title()
    assert "loss" not in widgets.temperature_figure(cos[:2], 1.0).axes[0].get_title()  # not square: no pairs
    with pytest.raises(ValueError, match="positive"):
        widgets.temperature_figure(cos, 0.0)


def test_temperature_slider_redraws():
    cos = torch.tensor([[0.9, 0.2], [0.3, 0.8]])
    w = widgets.temperature_slider(cos, temperature=1.0)
    assert isinstance(w, ipywidgets.VBox) and isinstance(w.controls["temperature"], ipywidgets.FloatLogSlider)
    warm = w.figure.axes[0].images[0].get_array().copy()
    assert np.allclose(warm, torch.softmax(cos.double(), -1).numpy())
    w.controls["temperature"].value = 0.01
    cold = w.figure.axes[0].images[0].get_array()
    assert np.allclose(cold, torch.softmax(cos.double() / 0.01, -1).numpy(), atol=1e-12)
    assert cold[0, 0] > warm[0, 0]  # colder is sharper
    assert plt.get_fignums() == []  # each figure was closed once shown


# ----------------------------------------------------------------------------- search


def test_search_figure_shows_the_true_nearest_neighbours(tiny):
    model, tokenizer, images = tiny
    img, txt = embed(model, tokenizer, images, ["a red circle"])
    scores = (txt @ img.T)[0]
    best = scores.argsort(descending=True)[:3]
    fig = widgets.search_figure(model, tokenizer, images, "a red circle", k=3)
    assert fig.axes[0].texts[0].get_text() == "a red circle"
    shown = drawn_images(fig)
    assert len(shown) == 3
    for rank, (i, picture) in enumerate(zip(best.tolist(), shown), start=1):
        assert np.array_equal(picture, images[i].permute(1, 2, 0).numpy())
        assert fig.axes[rank].get_title() == f"#{rank}  {scores[i].item():.3f}"


def test_search_figure_reuses_features_and_rejects_empty_queries(tiny):
    model, tokenizer, images = tiny
    fake = torch.eye(8, 16)  # gallery features chosen by hand: search must use them as given
    scores = widgets.search_scores(model, tokenizer, "a green star", fake)
    _, txt = embed(model, tokenizer, images, ["a green star"])
    assert torch.allclose(scores, txt[0, :8], atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        widgets.search_figure(model, tokenizer, images, "   ")
    with pytest.raises(ValueError, match="3 image features for 8 images"):
        widgets.search_figure(model, tokenizer, images, "a circle", image_features=fake[:3])


def test_search_box_redraws_on_a_new_query(tiny):
    model, tokenizer, images = tiny
    w = widgets.search_box(model, tokenizer, images, query="a red circle", k=4)
    assert isinstance(w.controls["query"], ipywidgets.Text) and len(drawn_images(w.figure)) == 4
    first = w.figure
    w.controls["query"].value = "a blue square"
    assert w.figure is not first and w.figure.axes[0].texts[0].get_text() == "a blue square"
    w.controls["k"].value = 2
    assert len(drawn_images(w.figure)) == 2
    w.controls["query"].value = ""  # an error is reported in the output, not raised
    assert w.figure is None


# ----------------------------------------------------------------------------- prompts


def test_prompt_figure_bars_are_the_zero_shot_softmax(tiny):
    model, tokenizer, images = tiny
    prompts = ["a red circle", "a blue square", "a green star"]
    img, txt = embed(model, tokenizer, images[2:3], prompts)
    expected = torch.softmax(model.logit_scale.exp().item() * (img @ txt.T)[0], dim=-1)
    fig = widgets.prompt_figure(model, tokenizer, images[2], prompts)
    picture, bars_ax = fig.axes
    assert np.array_equal(picture.images[0].get_array(), images[2].permute(1, 2, 0).numpy())
    drawn = {t.get_text(): bar.get_width() for t, bar in zip(bars_ax.get_yticklabels(), bars_ax.patches)}
    assert drawn.keys() == set(prompts)
    for k, p in enumerate(prompts):
        assert drawn[p] == pytest.approx(expected[k].item(), abs=1e-5)
    assert sum(drawn.values()) == pytest.approx(1.0)


def test_prompt_figure_accepts_lines_and_rejects_nothing(tiny):
    model, tokenizer, images = tiny
    fig = widgets.prompt_figure(model, tokenizer, images[0], "a red circle\n\n  a green star  \n")
    assert sorted(t.get_text() for t in fig.axes[1].get_yticklabels()) == ["a green star", "a red circle"]
    with pytest.raises(ValueError, match="no prompts"):
        widgets.prompt_figure(model, tokenizer, images[0], "\n  \n")


def test_prompt_editor_redraws_for_another_image_and_other_prompts(tiny):
    model, tokenizer, images = tiny
    w = widgets.prompt_editor(model, tokenizer, images, ["a red circle", "a blue square"], index=0)
    assert isinstance(w.controls["prompts"], ipywidgets.Textarea)
    assert np.array_equal(w.figure.axes[0].images[0].get_array(), images[0].permute(1, 2, 0).numpy())
    w.controls["index"].value = 5
    assert np.array_equal(w.figure.axes[0].images[0].get_array(), images[5].permute(1, 2, 0).numpy())
    w.controls["prompts"].value = "a green star\nthere is a circle\na red circle"
    assert len(w.figure.axes[1].patches) == 3
    assert w.values() == {"index": 5, "prompts": "a green star\nthere is a circle\na red circle"}
