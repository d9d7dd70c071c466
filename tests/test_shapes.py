"""ShapesWorld: determinism, held-out compositions, and images that match their labels."""

import re

import numpy as np
import pytest
import torch
from matplotlib.colors import rgb_to_hsv
from scipy import ndimage

from clipedu.data.render import BACKGROUNDS, SHAPES
from clipedu.data.shapes import COLORS, POSITIONS, RELATIONS, SIZES, ShapesWorld
from clipedu.data.words import COLOR_WORDS, SHAPE_WORDS

# hue in degrees of each named colour, as a person would name it (independent of RGB in shapes.py)
EXPECTED_HUE = {"red": 0, "orange": 30, "yellow": 55, "green": 125, "cyan": 185, "blue": 225,
                "purple": 275, "pink": 330}


@pytest.fixture(scope="module")
def world():
    return ShapesWorld(seed=0)


@pytest.fixture(scope="module")
def train(world):
    return world.train(1500)


def hsv(image):
    return rgb_to_hsv(image.permute(1, 2, 0).numpy() / 255.0)


def colored_mask(image):
    h = hsv(image)
    return (h[..., 1] > 0.4) & (h[..., 2] > 0.25)  # backgrounds are all grey: saturation 0


def nearest_color(hues_deg):
    # circular median-free estimate: mean direction of the hue angles
    angle = np.deg2rad(hues_deg)
    mean = np.rad2deg(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())) % 360
    return min(EXPECTED_HUE, key=lambda c: min(abs(mean - EXPECTED_HUE[c]), 360 - abs(mean - EXPECTED_HUE[c])))


def words_in(caption, table):
    return {name for name, words in table.items() if any(re.search(rf"\b{w}\b", caption) for w in words)}


def test_world_size_and_classes(world):
    assert len(COLORS) >= 6 and len(SHAPES) >= 5
    assert len(world.classes) == len(COLORS) * len(SHAPES) == len(world.class_names)
    assert world.class_names[world.classes.index(("green", "triangle"))] == "green triangle"
    assert len(world.heldout_classes) >= 6
    assert set(world.heldout_classes).isdisjoint(world.seen_classes)
    assert len(world.seen_classes) + len(world.heldout_classes) == len(world.classes)


def test_data_contract(train):
    image, captions = train[3]
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 64)
    assert isinstance(captions, list) and len(captions) == 5 and all(isinstance(c, str) for c in captions)
    assert len(set(captions)) == 5
    assert train.images.shape == (1500, 3, 64, 64) and len(train.captions) == 1500
    assert train.labels.dtype == torch.long and train.labels.shape == (1500,)
    assert len(train.class_names) == len(COLORS) * len(SHAPES)


def test_deterministic_per_seed_and_prefix_stable(train):
    again = ShapesWorld(seed=0).train(1500)
    assert torch.equal(again.images, train.images) and again.captions == train.captions
    small = ShapesWorld(seed=0).train(200)
    assert torch.equal(small.images, train.images[:200]) and small.captions == train.captions[:200]
    other = ShapesWorld(seed=1).train(200)
    assert not torch.equal(other.images, small.images) and other.captions != small.captions


def test_image_size_is_configurable():
    data = ShapesWorld(image_size=32).train(20)
    assert data.images.shape == (20, 3, 32, 32)
    with pytest.raises(ValueError, match="image_size"):
        ShapesWorld(image_size=8)


def test_heldout_pairs_never_in_training_labels_or_captions(world, train):
    heldout = set(world.heldout_classes)
    label_pairs = {world.classes[y] for y in train.labels.tolist()}
    assert label_pairs.isdisjoint(heldout)
    only_color = only_shape = both = wrong = 0
    for label, captions in zip(train.labels.tolist(), train.captions):
        color, shape = world.classes[label]
        for caption in captions:
            colors, shapes = words_in(caption, COLOR_WORDS), words_in(caption, SHAPE_WORDS)
            assert len(colors) <= 1 and shapes <= {shape}, caption  # one colour; the image's own shape
            wrong += bool(colors - {color})  # the noise: a caption that names another colour
            if colors and shapes:
                assert (colors.pop(), shape) not in heldout, caption
                both += 1
            only_color += bool(colors) and not shapes
            only_shape += bool(shapes) and not colors
    assert min(only_color, only_shape, both) > 100  # partial captions exist, alongside full ones
    assert 0.02 * 5 * len(train) < wrong < 0.06 * 5 * len(train)  # about WRONG_COLOR_RATE of them


def test_every_color_and_shape_in_training(world, train):
    pairs = [world.classes[y] for y in train.labels.tolist()]
    assert {c for c, _ in pairs} == set(COLORS)
    assert {s for _, s in pairs} == set(SHAPES)
    assert len(set(pairs)) == len(world.seen_classes)


def test_captions_vary_in_wording(train):
    captions = [c for caps in train.captions for c in caps]
    assert len(set(captions)) > 2000
    assert any("crimson" in c for c in captions) and any(c.startswith("something") for c in captions)
    assert any(re.search(r"\ban orange\b", c) for c in captions)
    assert not any(re.search(r"\ba [aeiou]", c) for c in captions)


def test_heldout_validation():
    with pytest.raises(ValueError, match="no training example"):
        ShapesWorld(heldout=[("red", s) for s in SHAPES])
    with pytest.raises(ValueError, match="not a"):
        ShapesWorld(heldout=[("mauve", "circle")])
    world = ShapesWorld(heldout=[("red", "circle")])
    assert world.heldout_classes == [("red", "circle")]


def test_test_splits(world, train):
    heldout = world.test(300, "heldout")
    assert set(heldout.labels.tolist()) == set(world.heldout_labels.tolist())
    seen = world.test(300, "seen")
    assert set(seen.labels.tolist()) <= set(world.seen_labels.tolist())
    mixed = set(world.test(600, "all").labels.tolist())
    assert mixed & set(world.heldout_labels.tolist()) and mixed & set(world.seen_labels.tolist())
    assert not torch.equal(seen.images, train.images[:300])
    with pytest.raises(ValueError, match="split"):
        world.test(10, "unseen")


def test_prompts(world):
    prompts = world.prompts()
    assert list(prompts) == world.class_names
    assert all(name in p for name, ps in prompts.items() for p in ps)
    assert prompts["orange circle"][0] == "an orange circle"
    assert world.prompts(["a photo of a {}."])["red star"] == ["a photo of a red star."]


def test_rendered_colors_match_labels(world, train):
    for image, label in zip(train.images[:400], train.labels[:400].tolist()):
        mask = colored_mask(image)
        assert mask.sum() > 40  # even a small shape covers dozens of pixels
        hues = hsv(image)[..., 0][mask] * 360
        assert nearest_color(hues) == world.classes[label][0]


def foreground(image):
    """Coverage of the shape for plain backgrounds, from the colour distance to the border."""
    pixels = image.permute(1, 2, 0).numpy().astype(float)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    dist = np.linalg.norm(pixels - background, axis=-1)
    return dist > dist.max() / 2


def shape_looks_right(mask, shape):
    ys, xs = np.nonzero(mask)
    box = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = box.shape
    fill = box.mean()
    top = box[: h // 2].sum() / box.sum()
    widest = np.argmax(box.sum(1)) / (h - 1)  # 0: top row, 1: bottom row
    if shape == "square":
        return fill > 0.9
    if shape == "circle":
        return 0.7 < fill < 0.88 and 0.42 < top < 0.58 and not box[0, 0] and not box[-1, -1]
    if shape == "triangle":
        return top < 0.4 and 0.4 < fill < 0.65 and widest > 0.7
    if shape == "star":
        return fill < 0.56 and widest < 0.55
    if shape == "cross":
        return not box[:2, :2].any() and not box[-2:, -2:].any() and box[h // 2].all() and box[:, w // 2].all()
    if shape == "heart":
        return not box[0, w // 2] and box[0, w // 4] and box[0, 3 * w // 4] and top > 0.36
    raise AssertionError(shape)


def test_rendered_shapes_sizes_and_positions(train):
    attrs = train.attributes
    plain = [BACKGROUNDS.index(b) for b in ("white", "black", "grey")]
    areas = {(shape, size): [] for shape in SHAPES for size in SIZES}
    checked = 0
    for i in range(600):
        if attrs["background"][i] not in plain:
            continue
        mask = foreground(train.images[i])
        shape = SHAPES[attrs["shape"][i]]
        assert shape_looks_right(mask, shape), (i, shape)
        areas[shape, SIZES[attrs["size"][i]]].append(mask.sum())
        # the shape's centre lies in the named cell of a 3x3 grid
        cy, cx = ndimage.center_of_mass(mask)
        row, col = divmod(int(attrs["position"][i]), 3)
        assert int(cx // (64 / 3)) == col and int(cy // (64 / 3)) == row, (i, POSITIONS[row * 3 + col])
        checked += 1
    assert checked > 200
    for shape in SHAPES:  # large shapes cover well over twice the pixels of small ones
        assert min(areas[shape, "large"]) > 1.7 * max(areas[shape, "small"])


def components(image):
    labels, n = ndimage.label(colored_mask(image), structure=np.ones((3, 3)))  # 8-connected
    return labels, n


def test_counts_match_connected_components(world):
    data = world.counts(120, seed=1)
    assert data.class_names == ["one", "two", "three", "four"]
    assert set(data.attributes["count"].tolist()) == {1, 2, 3, 4}
    for image, caps, label, count, obj in zip(data.images, data.captions, data.labels.tolist(),
                                              data.attributes["count"].tolist(), data.attributes["object"].tolist()):
        labels, n = components(image)
        assert n == count == label + 1
        color, shape = world.classes[obj]
        assert (color, shape) in world.seen_classes
        hues = hsv(image)[..., 0] * 360
        assert all(nearest_color(hues[labels == k]) == color for k in range(1, n + 1))
        assert f"{color}" in caps[0] and shape in caps[0] and caps[0].split()[0] == data.class_names[label]


def test_relations_match_rendering(world):
    data = world.relations(120, seed=2)
    assert data.class_names == RELATIONS
    assert set(data.labels.tolist()) == set(range(4))
    for i in range(len(data)):
        image = data.images[i]
        first, second = data.attributes["first"][i].item(), data.attributes["second"][i].item()
        (c1, s1), (c2, s2) = world.classes[first], world.classes[second]
        assert c1 != c2 and s1 != s2
        labels, n = components(image)
        assert n == 2
        hues = hsv(image)[..., 0] * 360
        centre = {nearest_color(hues[labels == k]): ndimage.center_of_mass(labels == k) for k in (1, 2)}
        (y1, x1), (y2, x2) = centre[c1], centre[c2]
        relation = RELATIONS[data.labels[i]]
        expected = {"left of": x1 < x2 - 5, "right of": x1 > x2 + 5, "above": y1 < y2 - 5, "below": y1 > y2 + 5}
        assert expected[relation], (i, relation)
        caption, swapped = data.captions[i][0], data.attributes["swapped"][i]
        assert caption == f"a {c1} {s1} {relation} a {c2} {s2}".replace("a orange", "an orange")
        assert swapped not in data.captions[i] and sorted(swapped.split()) == sorted(caption.split())
