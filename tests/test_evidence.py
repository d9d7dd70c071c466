"""The evidence helpers and the in-batch measurements of false negatives, against hand computation."""

import math

import pytest
import torch

from clipedu.data.meaning import caption_meaning
from clipedu.data.sampler import UniqueCaptionBatchSampler
from clipedu.experiments.evidence import describe_difference, mean_and_se, paired_difference
from clipedu.experiments.positives import batch_metrics
from clipedu.train.config import apply_overrides, get_preset
from clipedu.train.setup import load_data


def test_mean_and_se_by_hand():
    assert mean_and_se([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1 / math.sqrt(3)))
    assert mean_and_se([5.0]) == (5.0, 0.0)
    with pytest.raises(ValueError):
        mean_and_se([])


def test_paired_difference_removes_what_the_seeds_share():
    a, b = [0.9, 0.5, 0.7], [0.8, 0.4, 0.6]  # a wide spread between seeds, the same gap on each
    diff, se = paired_difference(a, b)
    assert diff == pytest.approx(0.1) and se == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0], [1.0, 2.0])


def test_words_no_stronger_than_the_error_bars():
    assert describe_difference(0.03, 0.02).startswith("no measurable difference")
    assert describe_difference(-0.10, 0.02).startswith("a difference of -0.100")
    assert describe_difference(0.0, 0.0).startswith("no measurable")


def test_batch_metrics_count_true_captions_by_hand(tiny_clip, tiny_config):
    config = apply_overrides(get_preset("shapes-tiny"), **tiny_config)
    data = load_data(config)
    from clipedu.tokenizer import BPETokenizer

    tokenizer = BPETokenizer.from_captions(data.train.captions, vocab_size=600)
    model = tiny_clip().eval()
    got = batch_metrics(model, tokenizer, data, batch_size=16, batches=3, seed=7)
    # the same batches, with the true captions counted from the words alone
    sampler = UniqueCaptionBatchSampler(data.train.captions, 16, seed=7)
    logs = []
    for step in range(3):
        images, chosen = sampler.batch(step)
        texts = [data.train.captions[i][c] for i, c in zip(images.tolist(), chosen.tolist())]
        truth = [[int(data.train.attributes[a][i]) for a in ("color", "shape", "size", "position", "background")]
                 for i in images.tolist()]
        true_of = torch.tensor([[i == j or all(s in (-1, v) for s, v in zip(caption_meaning(t), img))
                                 for j, t in enumerate(texts)] for i, img in enumerate(truth)])
        logs.append((true_of.sum(1).double().log().mean() + true_of.sum(0).double().log().mean()).item() / 2)
    assert got["indifferent_floor"] == pytest.approx(sum(logs) / 3)
    assert 0 <= got["inbatch_acc"] <= got["inbatch_true_acc"] <= 1
    assert got["true_captions_per_row"] > 1
    assert got["clip_loss"] > 0 and got["multi_positive_loss"] > 0
