"""clipedu.loss against open_clip, gradcheck, chance level and the seeds' worked examples."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from open_clip.loss import ClipLoss, SigLipLoss

from clipedu.loss import (
    clamp_logit_scale,
    clip_loss,
    image_to_text_loss,
    logits_matrix,
    multi_positive_clip_loss,
    siglip_loss,
    text_to_image_loss,
)

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"  # CI puts shared/ beside the checkout


def unit_features(n, d, seed, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return (x / x.norm(dim=1, keepdim=True)).requires_grad_(requires_grad)


def np_cross_entropy_rows(logits):
    """Mean over rows of -log softmax(row)[i], written out with numpy."""
    logits = np.asarray(logits, dtype=np.float64)
    total = 0.0
    for i, row in enumerate(logits):
        m = row.max()
        total += -(row[i] - m - math.log(np.exp(row - m).sum()))
    return total / len(logits)


# ---------------------------------------------------------------- open_clip

@pytest.mark.parametrize("n,d", [(1, 4), (7, 16), (32, 8)])
def test_clip_loss_matches_open_clip_value_and_gradient(n, d):
    img, txt = unit_features(n, d, 0), unit_features(n, d, 1)
    scale = torch.tensor(14.3, dtype=torch.float64, requires_grad=True)
    ours = clip_loss(img, txt, scale)
    ours.backward()
    grads = [img.grad.clone(), txt.grad.clone(), scale.grad.clone()]

    img2, txt2 = img.detach().clone().requires_grad_(), txt.detach().clone().requires_grad_()
    scale2 = scale.detach().clone().requires_grad_()
    ref = ClipLoss()(img2, txt2, scale2)
    ref.backward()
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, [img2.grad, txt2.grad, scale2.grad]):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_clip_loss_gradcheck():
    img, txt = unit_features(5, 6, 2), unit_features(5, 6, 3)
    scale = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(clip_loss, (img, txt, scale))


def test_siglip_matches_open_clip_value_and_gradient():
    img, txt = unit_features(9, 12, 4), unit_features(9, 12, 5)
    scale = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-10.0, dtype=torch.float64, requires_grad=True)
    ours = siglip_loss(img, txt, scale, bias)
    ours.backward()
    grads = [img.grad.clone(), txt.grad.clone(), scale.grad.clone(), bias.grad.clone()]

    leaves = [t.detach().clone().requires_grad_() for t in (img, txt, scale, bias)]
    ref = SigLipLoss()(*leaves)
    ref.backward()
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    for g, leaf in zip(grads, leaves):
        torch.testing.assert_close(g, leaf.grad, rtol=1e-10, atol=1e-12)


def test_siglip_by_hand():
    # 2 pairs, scale 1, bias 0: -[log s(z00) + log s(-z01) + log s(-z10) + log s(z11)] / 2
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    txt = torch.tensor([[0.6, 0.8], [0.8, 0.6]], dtype=torch.float64)
    z = [[0.6, 0.8], [0.8, 0.6]]

    def log_sig(x):
        return -math.log1p(math.exp(-x))

    expected = -(log_sig(z[0][0]) + log_sig(-z[0][1]) + log_sig(-z[1][0]) + log_sig(z[1][1])) / 2
    assert siglip_loss(img, txt, 1.0, 0.0).item() == pytest.approx(expected, rel=1e-12)
    gradcheck_inputs = (unit_features(4, 3, 6), unit_features(4, 3, 7),
                        torch.tensor(2.0, dtype=torch.float64, requires_grad=True),
                        torch.tensor(-1.0, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(siglip_loss, gradcheck_inputs)


# ---------------------------------------------------------------- chance level

@pytest.mark.parametrize("n", [2, 5, 64])
def test_equal_features_give_ln_n(n):
    same = torch.ones(n, 8, dtype=torch.float64) / math.sqrt(8)
    assert clip_loss(same, same, 100.0).item() == pytest.approx(math.log(n), rel=1e-12)


def test_logits_matrix_is_scaled_dot_product():
    img, txt = unit_features(3, 4, 8, False), unit_features(5, 4, 9, False)
    got = logits_matrix(img, txt, torch.tensor(7.0, dtype=torch.float64))
    for i in range(3):
        for j in range(5):
            assert got[i, j].item() == pytest.approx(7.0 * sum(img[i] * txt[j]).item(), rel=1e-12)


# ---------------------------------------------------------------- seeds' worked examples

SEED3_T = [[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.0, 0.3, 0.7]]


def test_seed003_three_pairs_tau_007():
    # I is the identity, so logits[i][j] = T_j[i] / tau; computed here with numpy.
    tau = 0.07
    logits = np.array(SEED3_T).T / tau
    i2t, t2i = np_cross_entropy_rows(logits), np_cross_entropy_rows(logits.T)
    assert (round(i2t, 6), round(t2i, 6), round((i2t + t2i) / 2, 6)) == (0.000361, 0.001148, 0.000754)

    img = torch.eye(3, dtype=torch.float64)
    txt = torch.tensor(SEED3_T, dtype=torch.float64)
    ours = logits_matrix(img, txt, 1 / tau)
    assert image_to_text_loss(ours).item() == pytest.approx(i2t, rel=1e-9)
    assert text_to_image_loss(ours).item() == pytest.approx(t2i, rel=1e-9)
    # the features are used as given: T's rows are not unit length and stay so
    assert clip_loss(img, txt, 1 / tau).item() == pytest.approx(0.000754, abs=5e-7)


def test_seed003_with_normalised_text():
    tau = 0.07
    t = np.array(SEED3_T)
    t = t / np.sqrt((t ** 2).sum(axis=1, keepdims=True))
    logits = t.T / tau
    i2t, t2i = np_cross_entropy_rows(logits), np_cross_entropy_rows(logits.T)
    assert i2t == pytest.approx(7.9e-5, abs=5e-7)
    assert (i2t + t2i) / 2 == pytest.approx(1.34e-4, abs=5e-7)
    img = torch.eye(3, dtype=torch.float64)
    txt = torch.tensor(t, dtype=torch.float64)
    assert clip_loss(img, txt, 1 / tau).item() == pytest.approx((i2t + t2i) / 2, rel=1e-9)


def _seed001_table():
    path = next(SEEDS.glob("001_*.txt"), None)
    if path is None:
        return [[0.9, 0.2, 0.1], [0.3, 0.8, 0.2], [0.1, 0.4, 0.7]]  # copied from the seed
    lines = path.read_text().splitlines()
    rows = [ln.split()[1:] for ln in lines if ln.split()[:1] in (["i1"], ["i2"], ["i3"])]
    return [[float(v) for v in row] for row in rows[:3]]


def test_seed001_table_as_logits():
    table = _seed001_table()
    assert table == [[0.9, 0.2, 0.1], [0.3, 0.8, 0.2], [0.1, 0.4, 0.7]]
    i2t = np_cross_entropy_rows(table)
    t2i = np_cross_entropy_rows(np.array(table).T)
    assert (round(i2t, 4), round(t2i, 4), round((i2t + t2i) / 2, 4)) == (0.7540, 0.7524, 0.7532)
    logits = torch.tensor(table, dtype=torch.float64)
    assert image_to_text_loss(logits).item() == pytest.approx(i2t, rel=1e-12)
    assert text_to_image_loss(logits).item() == pytest.approx(t2i, rel=1e-12)
    # I @ identity^T with scale 1 reproduces the table, so clip_loss sees the same logits
    eye = torch.eye(3, dtype=torch.float64)
    assert clip_loss(logits, eye, 1.0).item() == pytest.approx((i2t + t2i) / 2, rel=1e-12)


def test_seed000_cat_pineapple_probability():
    cos = [[0.2832, 0.2036], [0.1956, 0.3286]]
    p_by_hand = 1 / (1 + math.exp(100 * (cos[0][1] - cos[0][0])))
    assert round(p_by_hand, 5) == 0.99965
    logits = logits_matrix(torch.tensor(cos, dtype=torch.float64), torch.eye(2, dtype=torch.float64), 100.0)
    assert logits.softmax(dim=1)[0, 0].item() == pytest.approx(p_by_hand, rel=1e-12)


# ---------------------------------------------------------------- temperature clamp

class TinyCLIP(nn.Module):
    def __init__(self, t):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(t))


def test_clamp_on_module_and_parameter():
    model = TinyCLIP(6.0)
    clamp_logit_scale(model)
    assert model.logit_scale.item() == pytest.approx(math.log(100.0))
    assert model.logit_scale.requires_grad  # still a trainable leaf

    param = nn.Parameter(torch.tensor(5.0))
    clamp_logit_scale(param, max_scale=50.0)
    assert param.item() == pytest.approx(math.log(50.0))

    below = nn.Parameter(torch.tensor(-1.0))
    clamp_logit_scale(below)
    assert below.item() == 0.0  # s >= 1, as open_clip

    inside = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    clamp_logit_scale(inside)
    assert inside.item() == pytest.approx(math.log(1 / 0.07), rel=1e-7)


def test_clamp_errors():
    with pytest.raises(TypeError, match="logit_scale"):
        clamp_logit_scale(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="max_scale"):
        clamp_logit_scale(nn.Parameter(torch.tensor(1.0)), max_scale=0.0)


# ---------------------------------------------------------------- bad input

def test_shape_errors():
    a = torch.randn(4, 8)
    with pytest.raises(ValueError, match="batches differ"):
        clip_loss(a, torch.randn(5, 8), 1.0)
    with pytest.raises(ValueError, match="embedding size"):
        clip_loss(a, torch.randn(4, 7), 1.0)
    with pytest.raises(ValueError, match="2-D"):
        clip_loss(torch.randn(4, 8, 1), a, 1.0)
    with pytest.raises(ValueError, match="empty"):
        clip_loss(torch.randn(0, 8), torch.randn(0, 8), 1.0)
    with pytest.raises(ValueError, match="scalar"):
        clip_loss(a, a, torch.ones(4))
    with pytest.raises(TypeError, match="same dtype"):
        clip_loss(a, a.double(), 1.0)
    with pytest.raises(ValueError, match="batches differ"):
        siglip_loss(a, torch.randn(3, 8), 1.0, 0.0)
    with pytest.raises(ValueError, match="square"):
        image_to_text_loss(torch.randn(3, 4))


# ---------------------------------------------------------------- the multi-positive loss


def test_multi_positive_with_the_identity_is_clip_loss():
    img, txt = unit_features(7, 5, 1), unit_features(7, 5, 2)
    want = clip_loss(img, txt, 13.0)
    got = multi_positive_clip_loss(img, txt, 13.0, torch.eye(7, dtype=torch.bool))
    assert got.item() == pytest.approx(want.item(), abs=1e-12)
    for g, w in zip(torch.autograd.grad(got, (img, txt)), torch.autograd.grad(want, (img, txt))):
        torch.testing.assert_close(g, w)


def test_multi_positive_matches_a_loop_over_rows_and_columns():
    img, txt = unit_features(5, 3, 3, requires_grad=False), unit_features(5, 3, 4, requires_grad=False)
    positives = torch.eye(5, dtype=torch.bool)
    positives[0, 2] = positives[3, 1] = positives[3, 4] = True
    logits = (10.0 * img @ txt.T).numpy()

    def soft_ce(rows, pos):
        total = 0.0
        for row, p in zip(rows, pos):
            log_softmax = row - np.log(np.exp(row - row.max()).sum()) - row.max()
            total -= sum(log_softmax[j] for j in np.flatnonzero(p)) / p.sum()
        return total / len(rows)

    want = (soft_ce(logits, positives.numpy()) + soft_ce(logits.T, positives.numpy().T)) / 2
    assert multi_positive_clip_loss(img, txt, 10.0, positives).item() == pytest.approx(want, abs=1e-12)


def test_multi_positive_gradcheck():
    img, txt = unit_features(4, 3, 5), unit_features(4, 3, 6)
    scale = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    positives = torch.eye(4, dtype=torch.bool)
    positives[1, 2] = True
    assert torch.autograd.gradcheck(lambda i, t, s: multi_positive_clip_loss(i, t, s, positives), (img, txt, scale))


def test_multi_positive_rejects_bad_positives():
    img = unit_features(3, 2, 7, requires_grad=False)
    with pytest.raises(ValueError, match="bool matrix"):
        multi_positive_clip_loss(img, img, 1.0, torch.eye(3))
    with pytest.raises(ValueError, match="bool matrix"):
        multi_positive_clip_loss(img, img, 1.0, torch.eye(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one positive"):
        multi_positive_clip_loss(img, img, 1.0, torch.zeros(3, 3, dtype=torch.bool))
