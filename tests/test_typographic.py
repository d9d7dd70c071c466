"""`limits.write_on`: a word on a paper label, pasted on a photo (the typographic attack of notebook 14)."""

import numpy as np
import pytest
from PIL import Image

from clipedu.experiments.limits import write_on

GREY = (128, 128, 128)


def changed_box(before: Image.Image, after: Image.Image) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the pixels that differ, right/bottom exclusive."""
    diff = np.any(np.asarray(before) != np.asarray(after), axis=-1)
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1


@pytest.mark.parametrize("size", [(224, 224), (512, 300)])
def test_label_spans_the_asked_width_at_the_asked_place(size):
    photo = Image.new("RGB", size, GREY)
    out = write_on(photo, "pineapple", width=0.5, centre=(0.5, 0.75))
    assert out.size == photo.size and out.mode == "RGB"
    assert np.all(np.asarray(photo) == GREY)  # the original is untouched
    left, top, right, bottom = changed_box(photo, out)
    assert abs((right - left) - 0.5 * size[0]) <= 1
    assert abs((left + right) / 2 - 0.5 * size[0]) <= 1
    assert abs((top + bottom) / 2 - 0.75 * size[1]) <= 1
    assert right - left > 2 * (bottom - top)  # a word is wider than tall


def test_label_is_paper_with_ink_filling_its_width():
    photo = Image.new("RGB", (300, 300), GREY)
    out = np.asarray(write_on(photo, "dog", width=0.6, centre=(0.5, 0.5)))
    left, top, right, bottom = changed_box(photo, Image.fromarray(out))
    label = out[top:bottom, left:right].mean(axis=-1)
    paper, ink = label > 200, label < 60
    assert paper.mean() > 0.5 and ink.mean() > 0.05  # mostly white, with black strokes
    ink_cols = np.flatnonzero(ink.any(axis=0))
    assert ink_cols[-1] - ink_cols[0] > 0.7 * label.shape[1]  # the word fills the label, a margin either side
    assert ink_cols[0] > 0 and ink_cols[-1] < label.shape[1] - 1


def test_label_scales_with_the_image():
    small = changed_box(Image.new("RGB", (200, 200), GREY), write_on(Image.new("RGB", (200, 200), GREY), "rocket"))
    large = changed_box(Image.new("RGB", (400, 400), GREY), write_on(Image.new("RGB", (400, 400), GREY), "rocket"))
    assert abs((large[2] - large[0]) - 2 * (small[2] - small[0])) <= 2
    assert abs((large[3] - large[1]) - 2 * (small[3] - small[1])) <= 3


def test_different_words_differ_and_colours_are_honoured():
    photo = Image.new("RGB", (256, 256), GREY)
    a, b = np.asarray(write_on(photo, "dog")), np.asarray(write_on(photo, "cat"))
    assert not np.array_equal(a, b)
    red = np.asarray(write_on(photo, "dog", ink=(255, 0, 0), paper=(0, 0, 255))).reshape(-1, 3)
    assert ((red[:, 0] > 200) & (red[:, 2] < 60)).any() and ((red[:, 2] > 200) & (red[:, 0] < 60)).any()


@pytest.mark.parametrize("kwargs", [{"width": 0}, {"width": 1.5}, {"text": " "}])
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        write_on(Image.new("RGB", (64, 64)), **{"text": "dog", **kwargs})
