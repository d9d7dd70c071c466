"""UniqueCaptionBatchSampler: no duplicate captions, determinism, epoch coverage, errors."""

import pytest
import torch

from clipedu.data.sampler import UniqueCaptionBatchSampler
from clipedu.data.shapes import ShapesWorld


@pytest.fixture(scope="module")
def shapes():
    return ShapesWorld(seed=0).train(1200)


def caption_texts(captions, images, caption_idx):
    return [" ".join(captions[i][c].lower().split()) for i, c in zip(images.tolist(), caption_idx.tolist())]


def test_batches_have_unique_captions_and_images(shapes):
    sampler = UniqueCaptionBatchSampler(shapes.captions, batch_size=100, seed=0)
    for step in range(30):  # spans 2.5 epochs
        images, caps = sampler.batch(step)
        assert images.dtype == torch.long and images.shape == caps.shape == (100,)
        texts = caption_texts(shapes.captions, images, caps)
        assert len(set(texts)) == 100
        assert len(set(images.tolist())) == 100
        assert all(0 <= c < len(shapes.captions[i]) for i, c in zip(images.tolist(), caps.tolist()))


def test_heavily_repeated_captions_still_unique():
    # digits-like data: 500 images, but only 10 classes x 3 distinct captions
    captions = [[f"digit {i % 10}", f"a handwritten {i % 10}", f"the number {i % 10}"] for i in range(500)]
    sampler = UniqueCaptionBatchSampler(captions, batch_size=30, seed=3)
    for step in range(40):
        images, caps = sampler.batch(step)
        assert len(set(caption_texts(captions, images, caps))) == 30
    with pytest.raises(ValueError, match="distinct captions"):
        UniqueCaptionBatchSampler(captions, batch_size=31, seed=0)


def test_case_and_spacing_variants_count_as_duplicates():
    captions = [["A red circle"], ["a red  circle"], ["a blue square"], ["a green star"]]
    sampler = UniqueCaptionBatchSampler(captions, batch_size=3, seed=0)
    images, _ = sampler.batch(0)
    assert not {0, 1} <= set(images.tolist())


def test_deterministic_from_seed_and_step_only(shapes):
    a = UniqueCaptionBatchSampler(shapes, batch_size=64, seed=5)
    b = UniqueCaptionBatchSampler(shapes, batch_size=64, seed=5)
    steps = [40, 3, 0, 17, 3, 60]
    first = [a.batch(s) for s in steps]  # out of order, across epochs
    second = [b.batch(s) for s in reversed(steps)][::-1]
    for (i1, c1), (i2, c2) in zip(first, second):
        assert torch.equal(i1, i2) and torch.equal(c1, c2)
    other = UniqueCaptionBatchSampler(shapes, batch_size=64, seed=6)
    assert not torch.equal(other.batch(0)[0], a.batch(0)[0])


def test_epoch_covers_every_image_once():
    captions = [[f"caption {i}", f"other caption {i}"] for i in range(1000)]
    sampler = UniqueCaptionBatchSampler(captions, batch_size=100, seed=1)
    assert sampler.steps_per_epoch == len(sampler) == 10
    for epoch in range(2):
        seen = torch.cat([sampler.batch(epoch * 10 + s)[0] for s in range(10)])
        assert sorted(seen.tolist()) == list(range(1000))
    # each epoch walks a fresh permutation and picks captions anew
    assert not torch.equal(sampler.batch(0)[0], sampler.batch(10)[0])
    caps = torch.cat([sampler.batch(s)[1] for s in range(20)])
    assert set(caps.tolist()) == {0, 1}


def test_epoch_coverage_on_shapes(shapes):
    sampler = UniqueCaptionBatchSampler(shapes, batch_size=100, seed=2)
    seen = torch.cat([sampler.batch(s)[0] for s in range(sampler.steps_per_epoch)])
    assert len(set(seen.tolist())) == len(seen) == 1200  # every image, none twice


def test_batch_larger_than_dataset():
    with pytest.raises(ValueError, match="batch larger than the dataset"):
        UniqueCaptionBatchSampler([["a"], ["b"]], batch_size=3, seed=0)
    with pytest.raises(ValueError, match="no captions"):
        UniqueCaptionBatchSampler([["a"], []], batch_size=1, seed=0)


def test_caption_token_table_pads_short_lists_by_repetition():
    from clipedu.tokenizer import BPETokenizer, caption_token_table

    tok = BPETokenizer.train(["a red circle", "a blue square", "red"], vocab_size=520)
    caps = [["a red circle", "red"], ["a blue square"]]
    table = caption_token_table(tok, caps, context_length=8)
    assert table.shape == (2, 2, 8)
    assert torch.equal(table[0, 1], tok(["red"], context_length=8)[0])
    assert torch.equal(table[1, 0], table[1, 1])  # the one caption of image 1, repeated
