"""CLIP's limits (notebook 14): multiple-choice scoring on hand-built models whose answers are known."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from clipedu.data import shapes, words
from clipedu.data.shapes import ShapesWorld
from clipedu.experiments import limits

CONTEXT = 12


class WordTokenizer:
    """One id per word (1, 2, ...), in order, zero padding: enough for the fake model."""

    def __init__(self, texts):
        words = sorted({w for t in texts for w in t.split()})
        self.ids = {w: i + 1 for i, w in enumerate(words)}

    def __call__(self, texts, context_length, truncate=False):
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.ids[w] for w in text.split()]
            out[i, :len(ids)] = torch.tensor(ids)
        return out


class FakeCLIP(nn.Module):
    """Text: a sum of integer word vectors, order-blind (a bag of words) unless `ordered`, where
    each word is also weighted by its position. Images are float [N, 3, 4, 4] whose first pixel
    is a row index of `table`: the image embedding is that row."""

    def __init__(self, vocab_size, ordered, ignored_words=(), tokenizer=None, dim=16):
        super().__init__()
        self.config = SimpleNamespace(image_resolution=4)
        self.positional_embedding = nn.Parameter(torch.zeros(CONTEXT, dim))
        g = torch.Generator().manual_seed(0)
        weight = torch.randint(-3, 4, (vocab_size + 1, dim), generator=g).float()  # exact sums in any order
        for w in ignored_words:
            weight[tokenizer.ids[w]] = 0
        self.embed = nn.Embedding.from_pretrained(weight)
        self.ordered = ordered
        self.table = torch.zeros(0, dim)

    def encode_text(self, tokens):
        e = self.embed(tokens) * (tokens != 0)[..., None]
        if self.ordered:
            e = e * torch.arange(1, tokens.shape[1] + 1)[None, :, None]
        return e.sum(dim=1)

    def encode_image(self, images):
        return self.table[images[:, 0, 0, 0].long()]


def index_images(n):
    images = torch.zeros(n, 3, 4, 4)
    images[:, 0, 0, 0] = torch.arange(n).float()
    return images


def fake_data(data):
    """The same captions and attributes, with index images the fake model can read."""
    return SimpleNamespace(images=index_images(len(data)), captions=data.captions, attributes=data.attributes)


@pytest.fixture(scope="module")
def relations():
    return fake_data(ShapesWorld(seed=0, image_size=24).relations(12, seed=3))


@pytest.fixture(scope="module")
def counts():
    return fake_data(ShapesWorld(seed=0, image_size=24).counts(16, seed=3))


def every_text(data, candidates):
    return [c for caps in data.captions for c in caps] + [t for c in candidates for t in c]


# ------------------------------------------------------------------ choice_accuracy and scores


def test_choice_accuracy_splits_ties():
    scores = torch.tensor([[0.9, 0.1, 0.0],    # right
                           [0.2, 0.8, 0.1],    # wrong
                           [0.5, 0.5, 0.1],    # tie of two, target among them: 1/2
                           [0.3, 0.3, 0.3]])   # three-way tie: 1/3
    assert limits.choice_accuracy(scores, torch.tensor([0, 0, 1, 2])) == pytest.approx((1 + 0 + 1 / 2 + 1 / 3) / 4)
    assert limits.choice_accuracy(scores[:2], torch.tensor([0, 1])) == 1.0


def test_candidate_scores_are_cosines_of_each_images_own_candidates(relations):
    candidates = limits.relation_candidates(relations)
    tok = WordTokenizer(every_text(relations, candidates))
    model = FakeCLIP(len(tok.ids), ordered=True)
    model.table = torch.randn(len(relations.images), 16, generator=torch.Generator().manual_seed(1))
    scores = limits.candidate_scores(model, tok, relations.images, candidates)
    assert scores.shape == (12, 2)
    for i in [0, 5, 11]:
        for k in range(2):
            text = model.encode_text(tok([candidates[i][k]], CONTEXT))[0]
            expected = torch.cosine_similarity(model.table[i], text, dim=0)
            assert scores[i, k].item() == pytest.approx(expected.item(), abs=1e-6)
    with pytest.raises(ValueError, match="candidate lists"):
        limits.candidate_scores(model, tok, relations.images[:3], candidates)
    with pytest.raises(ValueError, match="same number"):
        limits.candidate_scores(model, tok, relations.images[:2], [["a"], ["a", "b"]])


# ------------------------------------------------------------------ relations


def test_relation_candidates_hold_the_same_words(relations):
    for (true, swapped), caps in zip(limits.relation_candidates(relations), relations.captions):
        assert true == caps[0] and true != swapped
        assert sorted(true.split()) == sorted(swapped.split())


def test_a_bag_of_words_model_scores_exactly_one_half_on_relations(relations):
    candidates = limits.relation_candidates(relations)
    tok = WordTokenizer(every_text(relations, candidates))
    model = FakeCLIP(len(tok.ids), ordered=False)
    # whatever the image embedding, the two captions get the same text embedding: a tie, every time
    model.table = torch.randn(len(relations.images), 16, generator=torch.Generator().manual_seed(2))
    assert limits.relation_accuracy(model, tok, relations) == 0.5


def test_an_order_aware_model_that_sees_the_scene_gets_every_relation(relations):
    candidates = limits.relation_candidates(relations)
    tok = WordTokenizer(every_text(relations, candidates))
    model = FakeCLIP(len(tok.ids), ordered=True)
    model.table = model.encode_text(tok([c[0] for c in candidates], CONTEXT))  # each image "looks like" its caption
    assert limits.relation_accuracy(model, tok, relations) == 1.0
    model.table = model.encode_text(tok([c[1] for c in candidates], CONTEXT))  # ... or like the swapped one
    assert limits.relation_accuracy(model, tok, relations) == 0.0


# ------------------------------------------------------------------ counts


def test_count_candidates_use_numbers_and_plurals(counts):
    candidates, targets = limits.count_candidates(counts, "count")
    i = 0
    k, obj = counts.attributes["count"][i].item(), counts.attributes["object"][i].item()
    colour, shape = shapes.COLORS[obj // 6], shapes.SHAPES[obj % 6]
    assert candidates[i] == [f"one {colour} {shape}", f"two {colour} {words.PLURALS[shape]}",
                             f"three {colour} {words.PLURALS[shape]}", f"four {colour} {words.PLURALS[shape]}"]
    assert targets.tolist() == (counts.attributes["count"] - 1).tolist()
    # every true candidate is one of the image's own training captions
    for caps, cand, t in zip(counts.captions, candidates, targets.tolist()):
        assert cand[t] in caps
    colour_cands, colour_targets = limits.count_candidates(counts, "colour")
    assert len(colour_cands[0]) == 8 and colour_cands[i][colour_targets[i]] == candidates[i][k - 1]
    shape_cands, shape_targets = limits.count_candidates(counts, "shape")
    assert len(shape_cands[0]) == 6 and shape_cands[i][shape_targets[i]] == candidates[i][k - 1]
    with pytest.raises(ValueError, match="vary"):
        limits.count_candidates(counts, "size")


def test_count_accuracy_of_an_oracle_and_of_a_colour_blind_model(counts):
    texts = every_text(counts, limits.count_candidates(counts, "colour")[0])
    tok = WordTokenizer(texts + every_text(counts, limits.count_candidates(counts, "shape")[0]))
    oracle = FakeCLIP(len(tok.ids), ordered=False)
    true_count = [c[t] for c, t in zip(*limits.count_candidates(counts, "count"))]
    oracle.table = oracle.encode_text(tok(true_count, CONTEXT))
    for vary in ("count", "colour", "shape"):
        assert limits.count_accuracy(oracle, tok, counts, vary) == 1.0
    # a model without colour words cannot tell the colour candidates apart: 8-way ties, chance = 1/8
    blind = FakeCLIP(len(tok.ids), ordered=False, ignored_words=shapes.COLORS, tokenizer=tok)
    blind.table = blind.encode_text(tok(true_count, CONTEXT))
    assert limits.count_accuracy(blind, tok, counts, "colour") == pytest.approx(1 / 8)
    assert limits.count_accuracy(blind, tok, counts, "count") == 1.0


# ------------------------------------------------------------------ drawing


def test_draw_shape_paints_the_colour_at_the_centre_with_the_right_area():
    image = limits.draw_shape("circle", (10, 200, 30), size=32)
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert image[:, 16, 16].tolist() == [10, 200, 30] and image[:, 0, 0].tolist() == [255, 255, 255]
    black = limits.draw_shape("circle", (0, 0, 0), size=64, diameter=40)
    coverage = (255 - black[0].float()).sum().item() / 255
    assert coverage == pytest.approx(math.pi * 20 ** 2, rel=0.03)


def test_draw_word_writes_ink_pixels_inside_the_image():
    image = limits.draw_word("blue", ink=(220, 30, 30), size=32)
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    r, g, b = image.int()
    ink = (r > 150) & (g < 120) & (b < 120)
    assert ink.sum() >= 8  # red letters
    assert not ((b > r + 40) & (b > 100)).any()  # nothing blue: the word's meaning is not its colour
    assert torch.equal(image, limits.draw_word("blue", ink=(220, 30, 30), size=32))  # deterministic
    assert not torch.equal(image, limits.draw_word("red", ink=(220, 30, 30), size=32))
    long = limits.draw_word("checkered", ink=(0, 0, 0), size=32)
    cols = ((long < 200).any(dim=0)).any(dim=0).nonzero().flatten()
    assert cols.min() >= 0 and cols.max() <= 31 and len(cols) > 16  # shrunk to fit, still wide
