"""Captioning (notebook 01): shapes, teacher forcing, soft attention, greedy decoding, metrics."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from clipedu.data.shapes import ShapesWorld
from clipedu.experiments import captioning as C
from clipedu.tokenizer import BPETokenizer


@pytest.fixture(scope="module")
def data():
    return ShapesWorld(seed=0, image_size=32).train(64)


@pytest.fixture(scope="module")
def tokenizer(data):
    return BPETokenizer.train((c for caps in data.captions for c in caps), vocab_size=4096)


@pytest.fixture(scope="module")
def tokens(data, tokenizer):
    return tokenizer([caps[0] for caps in data.captions[:8]], C.CONTEXT_LENGTH)


@pytest.mark.parametrize("kind", ["show_and_tell", "show_attend_tell"])
def test_shapes(kind, data, tokenizer, tokens):
    torch.manual_seed(0)
    model = C.CAPTIONERS[kind](tokenizer.vocab_size)
    features = model.encoder(data.images[:8])
    assert features.shape == (8, 64, 64)  # an 8 x 8 grid of 64-d regions for 32-px images
    logits, weights = model(data.images[:8], tokens)
    assert logits.shape == (8, C.CONTEXT_LENGTH - 1, tokenizer.vocab_size)
    if kind == "show_and_tell":
        assert weights is None
    else:
        assert weights.shape == (8, C.CONTEXT_LENGTH - 1, 64)
        torch.testing.assert_close(weights.sum(-1), torch.ones(8, C.CONTEXT_LENGTH - 1))


def test_soft_attention_weights_sum_to_one_and_match_a_loop():
    g = torch.Generator().manual_seed(0)
    scores, features = torch.randn(3, 5, generator=g), torch.randn(3, 5, 4, generator=g)
    context, weights = C.soft_attention(scores, features)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    expected = torch.stack([sum(weights[b, i] * features[b, i] for i in range(5)) for b in range(3)])
    torch.testing.assert_close(context, expected)
    # the worked example of notebook 01
    _, w = C.soft_attention(torch.tensor([[2.1, 0.5, 0.8, -0.3]]), torch.eye(4)[None])
    torch.testing.assert_close(w, torch.tensor([[0.639, 0.129, 0.174, 0.058]]), atol=1e-3, rtol=0)


def test_caption_loss_ignores_padding(tokenizer, tokens):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, C.CONTEXT_LENGTH - 1, tokenizer.vocab_size, generator=g)
    mask = C.caption_mask(tokens, tokenizer.eot_token)
    lengths = (tokens != 0).sum(1)  # SOT .. EOT
    assert mask.sum(1).tolist() == (lengths - 1).tolist()  # every real token after SOT, EOT included
    manual = torch.cat([F.cross_entropy(logits[b, :n - 1], tokens[b, 1:n], reduction="none")
                        for b, n in enumerate(lengths.tolist())]).mean()
    torch.testing.assert_close(C.caption_loss(logits, tokens, tokenizer.eot_token), manual)
    changed = logits.clone()
    changed[~mask] = 100.0  # predictions for padding positions must not matter
    torch.testing.assert_close(C.caption_loss(changed, tokens, tokenizer.eot_token), manual)


@pytest.mark.parametrize("kind", ["show_and_tell", "show_attend_tell"])
def test_teacher_forcing_overfits_a_tiny_batch(kind, data, tokenizer, tokens):
    torch.manual_seed(0)
    model = C.CAPTIONERS[kind](tokenizer.vocab_size)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    images, short = data.images[:4], tokens[:4, :int((tokens[:4] != 0).sum(1).max())]  # no pure padding
    losses = []
    for _ in range(25):
        loss = C.caption_loss(model(images, short)[0], short, tokenizer.eot_token)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_attention_parameters_get_gradients(data, tokenizer, tokens):
    torch.manual_seed(0)
    model = C.ShowAttendTell(tokenizer.vocab_size)
    C.caption_loss(model(data.images[:8], tokens)[0], tokens, tokenizer.eot_token).backward()
    for p in [*model.attention.parameters(), *model.encoder.parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["show_and_tell", "show_attend_tell"])
def test_greedy_decoding_stops_at_eot(kind, data, tokenizer):
    torch.manual_seed(0)
    model = C.CAPTIONERS[kind](tokenizer.vocab_size).eval()
    out = C.greedy_decode(model, data.images[:4], tokenizer.sot_token, tokenizer.eot_token, max_len=10)
    assert out.shape == (4, 10) and (out[:, 0] == tokenizer.sot_token).all()
    for row in out.tolist():  # after the first EOT, only padding
        if tokenizer.eot_token in row:
            assert set(row[row.index(tokenizer.eot_token) + 1:]) <= {0}
    with torch.no_grad():
        model.out.bias[tokenizer.eot_token] = 1e4  # a model that always says EOT
    out = C.greedy_decode(model, data.images[:4], tokenizer.sot_token, tokenizer.eot_token, max_len=10)
    assert (out[:, 1] == tokenizer.eot_token).all() and (out[:, 2:] == 0).all()


def test_greedy_decoding_agrees_with_teacher_forcing(data, tokenizer):
    torch.manual_seed(0)
    model = C.ShowAttendTell(tokenizer.vocab_size).eval()
    out = C.greedy_decode(model, data.images[:4], tokenizer.sot_token, tokenizer.eot_token, max_len=8)
    with torch.no_grad():
        logits, _ = model(data.images[:4], out)
    # each decoded token is the argmax of the teacher-forced prediction (until the first EOT)
    mask = C.caption_mask(torch.cat([out, torch.full((4, 1), tokenizer.eot_token)], 1), tokenizer.eot_token)[:, :-1]
    assert (logits.argmax(-1)[mask] == out[:, 1:][mask]).all()


def test_training_is_deterministic_and_logs_history():
    world = ShapesWorld(seed=0, image_size=32)
    runs = [C.train_captioner("show_attend_tell", world, n_train=64, steps=3, batch_size=8, val_images=4,
                              eval_every=2) for _ in range(2)]
    (m1, tok, h1), (m2, _, h2) = runs
    assert not m1.training
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["step"] for r in h1] == [1, 2, 3] and "val_nll" in h1[1] and "val_nll" not in h1[0]
    assert list(h1[0]) == ["step", "images_seen", "seconds", "loss", "lr", "nll"]  # step_record's, and nll
    assert h1[0]["lr"] == 3e-3  # Adam at a constant rate
    assert [r["loss"] for r in h1] == [r["loss"] for r in h2]
    assert 0 < h1[0]["loss"] < 2 * math.log(tok.vocab_size)
    with pytest.raises(ValueError, match="kind"):
        C.train_captioner("show_and_paint", world)


def test_caption_accuracy(data):
    refs = [caps[0] for caps in data.captions[:8]]
    acc = C.caption_accuracy(refs, SimpleNamespace(captions=data.captions[:8], attributes=data.attributes))
    assert acc["exact"] == 1.0
    fake = SimpleNamespace(captions=[["a red circle"]] * 4,
                           attributes={"color": torch.tensor([0, 0, 0, 0]), "shape": torch.tensor([0, 0, 0, 0])})
    predicted = ["A red  circle", "a crimson disc", "a red and blue circle", "something red"]
    acc = C.caption_accuracy(predicted, fake)
    assert acc == {"exact": 0.25, "colour": 0.75, "shape": 0.75, "colour and shape": 0.5}


def test_caption_entropy():
    world = ShapesWorld(seed=0, image_size=32)
    h = C.caption_entropy(world.train(200))
    assert h.shape == (200,) and (h > 3).all() and (h < 8).all()
    torch.testing.assert_close(C.caption_entropy(world.train(200)), h)  # deterministic
    # two images that differ only in shape: circle has 3 words, square 2, so the circle's captions vary more,
    # by H(3 words) - H(2 words) times the share of captions that name the shape (measured on generated data)
    train = world.train(2000)
    shape_words = [w for words in C.shapes.SHAPE_WORDS.values() for w in words]
    named = sum(any(w in c for w in shape_words) for caps in train.captions for c in caps) / 10_000
    attrs = {k: torch.tensor([0, 0]) for k in ("color", "size", "position", "background")}
    attrs["shape"] = torch.tensor([0, 1])  # circle, square
    circle, square = C.caption_entropy(_Fake(attrs)).tolist()
    h_words = lambda n: -(0.6 * math.log(0.6) + 0.4 * math.log(0.4 / (n - 1)))
    assert circle - square == pytest.approx(named * (h_words(3) - h_words(2)), abs=0.005)


class _Fake:
    """A dataset of two images known only by their attributes."""

    def __init__(self, attributes):
        self.attributes = attributes

    def __len__(self):
        return 2
