"""What captions mean, which images they are true of, and the negatives of a batch, against hand-built cases."""

import itertools
import random
import re

import pytest
import torch

from clipedu.data.hard_suite import describe, fine_classes, fine_labels, fine_prompts, full_captions
from clipedu.data.meaning import ATTRIBUTES, UNSTATED, caption_meaning, compatible, image_table, meaning_table
from clipedu.data.negatives import batch_negatives, false_negative_rate, sampler_negatives
from clipedu.data.render import BACKGROUNDS, SHAPES
from clipedu.data.sampler import RandomBatchSampler, UniqueCaptionBatchSampler
from clipedu.data.shapes import COLORS, POSITIONS, SIZES, ShapesWorld
from clipedu.data.words import (
    BACKGROUND_WORDS,
    CAPTION_TEMPLATES,
    COLOR_WORDS,
    POSITION_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
    WRONG_COLOR_RATE,
    fix_articles,
)

R, O, Y, G = (COLORS.index(c) for c in ("red", "orange", "yellow", "green"))
CIRCLE, SQUARE, STAR = (SHAPES.index(s) for s in ("circle", "square", "star"))
U = UNSTATED


@pytest.mark.parametrize("caption, expected", [
    ("a crimson disc in the upper left", (R, CIRCLE, U, POSITIONS.index("top left"), U)),
    ("a tiny grassy green five-pointed star on a checkerboard", (G, STAR, SIZES.index("small"), U,
                                                                 BACKGROUNDS.index("checkered"))),
    ("there is a star", (U, STAR, U, U, U)),
    ("something golden", (Y, U, U, U, U)),
    ("A  Big   BOX at the top", (U, SQUARE, SIZES.index("large"), POSITIONS.index("top"), U)),
    ("in the top right corner, a red circle", (R, CIRCLE, U, POSITIONS.index("top right"), U)),
    ("a photo", (U, U, U, U, U)),
])
def test_caption_meaning_by_hand(caption, expected):
    assert caption_meaning(caption) == expected


def test_two_shapes_have_no_single_meaning():
    with pytest.raises(ValueError, match="two values of color"):
        caption_meaning("a red circle left of a blue square")


def test_every_template_and_synonym_reads_back():
    """Format each template with random values and synonyms; the parse returns exactly the stated fields."""
    tables = {"c": (COLOR_WORDS, COLORS), "s": (SHAPE_WORDS, SHAPES), "z": (SIZE_WORDS, SIZES),
              "p": (POSITION_WORDS, POSITIONS), "b": (BACKGROUND_WORDS, BACKGROUNDS)}
    rng = random.Random(0)
    for template, _ in CAPTION_TEMPLATES:
        fields = set(re.findall(r"\{(\w)\}", template))
        for _ in range(40):
            values = {k: rng.randrange(len(names)) for k, (_, names) in tables.items()}
            words = {k: rng.choice(table[names[values[k]]]) for k, (table, names) in tables.items()}
            caption = fix_articles(template.format(**words))
            expected = tuple(values[k] if k in fields else U for k in "cszpb")
            assert caption_meaning(caption) == expected, caption


def test_compatible_by_hand():
    images = torch.tensor([[R, CIRCLE, 0, 4, 0], [R, SQUARE, 1, 0, 1]])
    captions = meaning_table(["a red circle", "something red", "a large box", "a crimson disc in the middle",
                              "an orange circle"])
    expected = torch.tensor([[True, True, False, True, False],
                             [False, True, True, False, False]])
    assert torch.equal(compatible(images, captions), expected)


def test_world_captions_are_true_of_their_images_but_for_the_noise():
    world = ShapesWorld(seed=1)
    test = world.test(300, "all")
    for k in range(5):
        assert compatible(image_table(test.attributes), meaning_table(test.captions)[:, k]).diagonal().all()
    data = world.train(3000)
    captions, images = meaning_table(data.captions), image_table(data.attributes)
    assert captions.shape == (3000, 5, len(ATTRIBUTES))
    wrong = (captions != images[:, None]) & (captions != U)  # [N, 5, attribute]
    false_captions = wrong.any(-1)
    assert wrong[..., 1:].sum() == 0  # only the colour is ever wrong
    assert 0.02 < false_captions.float().mean() < WRONG_COLOR_RATE  # some captions name no colour
    held = set(world.heldout_classes)  # a wrong colour never names a held-out pair
    said = captions[false_captions]
    assert not any((COLORS[c], SHAPES[s]) in held for c, s in said[:, :2].tolist() if s != U)


def test_training_never_puts_a_shape_in_its_held_out_cell():
    world = ShapesWorld(seed=0)
    a = world.train(4000).attributes
    cells = {(SHAPES[s], POSITIONS[p]) for s, p in zip(a["shape"].tolist(), a["position"].tolist())}
    assert not cells & set(world.heldout_positions)
    assert len(cells) == len(SHAPES) * len(POSITIONS) - len(world.heldout_positions)
    b = world.test(200, "heldout-position").attributes
    assert {(SHAPES[s], POSITIONS[p]) for s, p in zip(b["shape"].tolist(), b["position"].tolist())} == \
        set(world.heldout_positions)
    with pytest.raises(ValueError, match="is not a \\(shape, position\\)"):
        ShapesWorld(heldout_positions=[("circle", "middle")])


def test_batch_negatives_by_hand():
    images = torch.tensor([[R, CIRCLE, 0, 4, 0], [R, CIRCLE, 1, 5, 1], [G, SQUARE, 0, 4, 0], [O, STAR, 0, 0, 0]])
    texts = ["a red circle", "a red circle", "a green circle", "something green"]
    kinds = batch_negatives(images, meaning_table(texts), texts)
    assert kinds.duplicate.tolist() == [True, True, False, False]
    assert kinds.false_negative.tolist() == [True, True, True, False]  # "something green" for the green square
    # "a green circle" is off by one (colour, shape right) for both red circles; for the green square, "a red
    # circle" is off by two; for the orange star every caption is off in all it states ("something green"
    # states the colour alone: an easy negative, not a hard one)
    assert kinds.hard_negative.tolist() == [True, True, False, False]


def test_false_negative_rate_matches_a_brute_force_count():
    data = ShapesWorld(seed=2).train(512)
    images, captions = image_table(data.attributes), meaning_table(data.captions)
    for sampler in (RandomBatchSampler(data, 32, seed=1), UniqueCaptionBatchSampler(data, 32, seed=1)):
        hits = rows = 0
        for step in range(6):
            idx, cap = sampler.batch(step)
            for i in range(len(idx)):
                img = [int(v) for v in images[idx[i]]]
                for j in range(len(idx)):
                    said = [int(v) for v in captions[idx[j], cap[j]]]
                    if j != i and all(s in (U, v) for s, v in zip(said, img)):
                        hits += 1
                        break
                rows += 1
        assert false_negative_rate(sampler, images, captions, steps=6) == pytest.approx(hits / rows)
        rates = sampler_negatives(sampler, images, captions, data.captions, steps=6)
        assert rates["false_negative_rate"] == pytest.approx(hits / rows)
        assert 0 <= rates["duplicate_rate"] <= rates["false_negative_rate"]
    assert sampler_negatives(UniqueCaptionBatchSampler(data, 32, seed=1), images, captions, data.captions,
                             steps=6)["duplicate_rate"] == 0


def test_false_negatives_grow_with_the_batch():
    data = ShapesWorld(seed=0).train(2048)
    images, captions = image_table(data.attributes), meaning_table(data.captions)
    rates = [false_negative_rate(RandomBatchSampler(data, b, seed=0), images, captions, steps=8) for b in (8, 64, 256)]
    assert rates[0] < rates[1] < rates[2]


def test_random_sampler_is_a_pure_function_of_the_step():
    caps = [["a", "b", "c"]] * 10 + [["d"]] * 6
    sampler = RandomBatchSampler(caps, 4, seed=3)
    later = sampler.batch(5)
    first = [sampler.batch(s) for s in range(4)]  # one epoch: 16 images, 4 batches
    assert torch.equal(RandomBatchSampler(caps, 4, seed=3).batch(5)[0], later[0])
    assert sorted(torch.cat([b[0] for b in first]).tolist()) == list(range(16))
    for images, chosen in first:
        assert all(0 <= c < len(caps[i]) for i, c in zip(images.tolist(), chosen.tolist()))
    with pytest.raises(ValueError, match="batch larger"):
        RandomBatchSampler(caps, 17)


def test_hard_suite_labels_prompts_and_captions_agree():
    classes = fine_classes()
    assert len(classes) == len(COLORS) * len(SHAPES) * len(SIZES) * len(POSITIONS) == 864
    prompts = fine_prompts()
    assert len({p[0] for p in prompts}) == 864
    test = ShapesWorld(seed=0).test(200, "all")
    labels = fine_labels(test.attributes)
    for i in range(0, 200, 7):
        c, s, z, p = classes[labels[i]]
        assert (c, s, z, p) == tuple(int(test.attributes[a][i]) for a in ("color", "shape", "size", "position"))
        assert prompts[labels[i]] == [describe(c, s, z, p)]
    # the full caption states all five attributes, and they are the image's own
    full = meaning_table(full_captions(test.attributes))
    assert torch.equal(full, image_table(test.attributes))
    assert (full != U).all()


def test_describe_uses_canonical_words():
    assert describe(R, CIRCLE, 0, POSITIONS.index("centre")) == "a small red circle in the centre"
    assert describe(O, STAR, 1, 0, BACKGROUNDS.index("white")) == \
        "a large orange star in the top left corner on a white background"
    assert list(itertools.islice(fine_classes(), 2)) == [(0, 0, 0, 0), (0, 0, 0, 1)]
