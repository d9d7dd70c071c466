"""Play with a trained CLIP: a temperature slider, a search box and a prompt editor.

Each control has a plain twin that draws the same figure for fixed inputs,
so a notebook shows something without a live kernel (CI, GitHub) and the
tests can check what is drawn:

    temperature_figure(logits, temperature)            temperature_slider(logits)
    search_figure(model, tokenizer, images, query)      search_box(model, tokenizer, images)
    prompt_figure(model, tokenizer, image, prompts)     prompt_editor(model, tokenizer, images, prompts)
    real.search_figure(real, query, photos)             photo_search_box(real, photos)   (real CLIP, photos)

A control is a `Playground`: ipywidgets controls above an Output area. When a
control's value changes, the playground calls its drawing function with the
current values and shows the new figure in the Output area.
"""

from __future__ import annotations

from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display
from matplotlib.figure import Figure

from clipedu.course import viz
from clipedu.course.real import RealCLIP
from clipedu.course.real import search_figure as photo_search_figure
from clipedu.data.photos import Photo
from clipedu.embed import encode_images, encode_texts
from clipedu.retrieval import similarity

# ----------------------------------------------------------------------------- the plain figures


def temperature_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / temperature) over each row (over the texts, for each image), in float64."""
    if temperature <= 0:
        raise ValueError(f"the temperature must be positive, got {temperature}")
    return torch.softmax(torch.as_tensor(logits).double() / temperature, dim=-1)


def temperature_figure(logits: torch.Tensor, temperature: float, row_labels: Sequence[str] | None = None,
                       col_labels: Sequence[str] | None = None) -> Figure:
    """The row softmax of `logits / temperature` as a heatmap on a fixed 0..1 colour scale.

    `logits` are unscaled scores [images, texts], e.g. cosine similarities; CLIP
    multiplies them by exp(logit_scale) = 1 / T. For a square matrix (text i
    describes image i) the title also gives the image->text loss, the mean of
    -log P(matching text | image).
    """
    probs = temperature_probs(logits, temperature)
    if probs.ndim != 2:
        raise ValueError(f"logits must be a matrix [images, texts], got shape {tuple(probs.shape)}")
    title = f"softmax over each row at T = {temperature:.3g} (scale 1/T = {1 / temperature:.3g})"
    if probs.shape[0] == probs.shape[1]:
        loss = -probs.diagonal().clamp_min(1e-300).log().mean().item()
        title += f"\nimage->text loss {loss:.4g}"
    return viz.plot_logits(probs, row_labels, col_labels, title=title, vmin=0, vmax=1)


def search_scores(model, tokenizer, query: str, image_features: torch.Tensor) -> torch.Tensor:
    """Cosine similarity [N] between the text query and each image's embedding."""
    if not query.strip():
        raise ValueError("the query is empty: type a description, e.g. 'a red circle'")
    text = encode_texts(model, tokenizer, [query], truncate=True)
    return similarity(text, image_features)[0]


def search_figure(model, tokenizer, images: torch.Tensor, query: str, k: int = 5,
                  image_features: torch.Tensor | None = None) -> Figure:
    """The query and the k gallery images closest to it in the shared space, with their cosines.

    Pass `image_features` (from `clipedu.embed.encode_images`) to avoid
    encoding the gallery again for every query.
    """
    if image_features is None:
        image_features = encode_images(model, images)
    if len(image_features) != len(images):
        raise ValueError(f"{len(image_features)} image features for {len(images)} images")
    return viz.show_retrieval(query, images, search_scores(model, tokenizer, query, image_features), k=k)


def prompt_probabilities(model, tokenizer, image: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
    """Zero-shot probabilities [P] of the prompts for one uint8 image [3, H, W]: a softmax over the prompts of
    the cosines times the model's learned scale exp(logit_scale)."""
    image_features = encode_images(model, image[None])
    text_features = encode_texts(model, tokenizer, list(prompts), truncate=True)
    scale = model.logit_scale.detach().exp().float().cpu()
    return torch.softmax(scale * similarity(image_features, text_features)[0], dim=-1)


def _clean_prompts(prompts: Sequence[str] | str) -> list[str]:
    lines = prompts.splitlines() if isinstance(prompts, str) else list(prompts)
    cleaned = [p.strip() for p in lines if p.strip()]
    if not cleaned:
        raise ValueError("no prompts: write at least one, e.g. 'a red circle'")
    return cleaned


def prompt_figure(model, tokenizer, image: torch.Tensor, prompts: Sequence[str] | str) -> Figure:
    """The image beside one bar per prompt: the probability that the prompt describes it.

    `prompts` is a list of strings, or one string with one prompt per line; blank
    lines are ignored. The probabilities are relative to these prompts only:
    they always sum to 1, even when no prompt fits.
    """
    prompts = _clean_prompts(prompts)
    probs = prompt_probabilities(model, tokenizer, image, prompts)
    return viz.plot_zeroshot_bars(probs, prompts, image=image, top=len(prompts))


# ----------------------------------------------------------------------------- the controls


class Playground(widgets.VBox):
    """ipywidgets controls above an Output area that shows `draw(**values)`, redrawn on every change.

    `figure` is the last figure drawn (None after an error, whose message is
    printed in the Output area instead); tests read it.
    """

    def __init__(self, draw: Callable[..., Figure], controls: dict[str, widgets.ValueWidget]):
        self.draw, self.controls = draw, controls
        self.output = widgets.Output()
        self.figure: Figure | None = None
        super().__init__([*controls.values(), self.output])
        for control in controls.values():
            control.observe(self.redraw, names="value")
        self.redraw()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self, change=None) -> None:
        with self.output:
            self.output.clear_output(wait=True)
            try:
                fig = self.draw(**self.values())
            except ValueError as error:  # an empty query, no prompts: say so and wait for the next change
                self.figure = None
                print(error)
                return
            display(fig)
            plt.close(fig)  # shown once, here: not again when the cell ends
            self.figure = fig


def temperature_slider(logits: torch.Tensor, row_labels: Sequence[str] | None = None,
                       col_labels: Sequence[str] | None = None, temperature: float = 0.07) -> Playground:
    """A log-scale temperature slider (T from 0.001 to 3) redrawing `temperature_figure`."""
    slider = widgets.FloatLogSlider(value=temperature, base=10, min=-3, max=0.5, step=0.05,
                                    description="T", readout_format=".3g",
                                    layout=widgets.Layout(width="450px"))
    return Playground(lambda temperature: temperature_figure(logits, temperature, row_labels, col_labels),
                      {"temperature": slider})


def search_box(model, tokenizer, images: torch.Tensor, query: str = "a red circle", k: int = 5) -> Playground:
    """A text box (search on Enter) and a k slider, redrawing `search_figure`; the gallery is encoded once."""
    image_features = encode_images(model, images)
    box = widgets.Text(value=query, description="query", continuous_update=False,
                       placeholder="describe an image, then press Enter", layout=widgets.Layout(width="450px"))
    top = widgets.IntSlider(value=k, min=1, max=min(10, len(images)), description="k")
    return Playground(lambda query, k: search_figure(model, tokenizer, images, query, k, image_features),
                      {"query": box, "k": top})


def prompt_editor(model, tokenizer, images: torch.Tensor, prompts: Sequence[str], index: int = 0) -> Playground:
    """An image slider and a box of prompts (one per line), redrawing `prompt_figure`.

    The prompts are scored when the box loses focus (click outside it).
    """
    chooser = widgets.IntSlider(value=index, min=0, max=len(images) - 1, description="image")
    box = widgets.Textarea(value="\n".join(prompts), description="prompts", continuous_update=False,
                           layout=widgets.Layout(width="450px", height="140px"))
    return Playground(lambda index, prompts: prompt_figure(model, tokenizer, images[index], prompts),
                      {"index": chooser, "prompts": box})


def photo_search_box(real: RealCLIP, photos: Sequence[Photo], query: str = "a cup of coffee",
                     k: int = 5) -> Playground:
    """`search_box` for released CLIP over photo files (`clipedu.data.photos`): the photos are encoded once,
    through `RealCLIP`'s disk cache, and each query redraws `clipedu.course.real.search_figure`."""
    features = real.encode_photos(photos)
    box = widgets.Text(value=query, description="query", continuous_update=False,
                       placeholder="describe a photo, then press Enter", layout=widgets.Layout(width="450px"))
    top = widgets.IntSlider(value=min(k, len(photos)), min=1, max=min(10, len(photos)), description="k")
    return Playground(lambda query, k: photo_search_figure(real, query, photos, k, features),
                      {"query": box, "k": top})
