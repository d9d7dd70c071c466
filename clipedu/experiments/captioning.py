"""Image captioning: how images and text were connected before CLIP (notebook 01).

Before CLIP, learning from captions meant *generating* them: a CNN encodes the image, a recurrent
decoder writes the caption token by token, trained to predict each next token of a human caption
from the true previous ones (teacher forcing).

- Show and Tell (Vinyals et al. 2015): the whole image becomes one vector, which starts the LSTM.
- Show, Attend and Tell (Xu et al. 2015): the CNN keeps a grid of regions; before each token the decoder
  scores them against its state (additive attention, Bahdanau et al. 2015) and reads their weighted average.

The papers start from an ImageNet CNN; ours learns from scratch in a few hundred steps because both
decoders also feed the image vector to the output layer at every step (a "deep output"), so the two
differ only by the attention context. CLIP's paper (Radford et al. 2021, Sec. 2.3) began with such a
captioner and found it slow to learn: an image has many valid captions. `caption_entropy` measures
this for ShapesWorld: no captioner's loss can go below it.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from clipedu.data import shapes
from clipedu.data.words import VOCAB_SIZE
from clipedu.pretokenize import pre_tokenize
from clipedu.tokenizer import BPETokenizer
from clipedu.train.loop import step_record, train_step
from clipedu.transforms import normalize

CONTEXT_LENGTH = 24  # SOT + the longest ShapesWorld caption (19 tokens) + EOT, with room to spare


# ------------------------------------------------------------ the image encoder and soft attention

class ConvEncoder(nn.Module):
    """A small CNN: uint8 images [B, 3, H, W] -> region features [B, H/4 * W/4, dim]. Four 3x3 conv +
    batch norm + ReLU layers (two of stride 2) and no pooling: each cell of the grid (8 x 8 for 32-pixel
    images) keeps its own vector. Inputs get CLIP's normalisation."""

    def __init__(self, dim: int = 64, width: int = 16):
        super().__init__()

        def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.layers = nn.Sequential(*block(3, width, 2), *block(width, 2 * width, 2),
                                    *block(2 * width, dim, 1), *block(dim, dim, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.layers(normalize(images))   # [B, dim, h, w]
        return x.flatten(2).transpose(1, 2)  # [B, h*w, dim]: one row per region, row-major


def soft_attention(scores: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft attention: weights = softmax of the scores over the L regions; context = weighted sum.
    scores [B, L], features [B, L, D] -> (context [B, D], weights [B, L]); each row of weights sums to 1."""
    weights = torch.softmax(scores, dim=-1)
    context = torch.bmm(weights.unsqueeze(1), features).squeeze(1)
    return context, weights


class AdditiveAttention(nn.Module):
    """Xu et al.'s attention: score_i = v . tanh(W_a a_i + W_h h), then `soft_attention`. The state h
    says what to look for, the key W_a a_i what region i holds (a decoder computes keys once per image)."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int = 32):
        super().__init__()
        self.W_a = nn.Linear(feature_dim, attention_dim)
        self.W_h = nn.Linear(hidden_dim, attention_dim, bias=False)
        self.v = nn.Linear(attention_dim, 1, bias=False)

    def scores(self, keys: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """keys W_a a_i [B, L, A], hidden [B, H] -> scores [B, L]."""
        return self.v(torch.tanh(keys + self.W_h(hidden).unsqueeze(1))).squeeze(-1)

    def forward(self, features: torch.Tensor, hidden: torch.Tensor, keys: torch.Tensor | None = None):
        """features [B, L, D], hidden [B, H] -> (context [B, D], weights [B, L])."""
        keys = self.W_a(features) if keys is None else keys
        return soft_attention(self.scores(keys, hidden), features)


# ------------------------------------------------------------------ the two captioners

class ImageMemory(NamedTuple):
    """What the decoder rereads at every step, computed once per image by `encode`."""
    regions: torch.Tensor             # [B, L, D] the CNN's region features
    vector: torch.Tensor              # [B, D] the image vector: each feature's maximum over the regions
    keys: torch.Tensor | None = None  # [B, L, A] the attention keys W_a a_i (attention models only)


class ShowAndTell(nn.Module):
    """CNN -> one image vector -> LSTM decoder (Vinyals et al. 2015). The image vector (a max over the
    grid: a mean would drown the small shape) sets the initial state (h, c) and feeds every output."""

    attends = False

    def __init__(self, vocab_size: int, dim: int = 64, hidden: int = 128, embed: int = 32):
        super().__init__()
        self.encoder = ConvEncoder(dim)
        self.embed = nn.Embedding(vocab_size, embed)
        self.init_h, self.init_c = nn.Linear(dim, hidden), nn.Linear(dim, hidden)
        self.lstm = nn.LSTMCell(embed + dim * self.attends, hidden)  # attention adds a context to the input
        self.out = nn.Linear(hidden + dim * (1 + self.attends), vocab_size)  # ... and to the output

    def encode(self, images: torch.Tensor) -> ImageMemory:
        """uint8 images [B, 3, H, W] -> their `ImageMemory`, computed once for the whole caption."""
        regions = self.encoder(images)
        return ImageMemory(regions, regions.amax(dim=1))

    def start(self, memory: ImageMemory) -> tuple[torch.Tensor, torch.Tensor]:
        """The initial LSTM state (h, c), each [B, hidden], from the image vector."""
        return torch.tanh(self.init_h(memory.vector)), torch.tanh(self.init_c(memory.vector))

    def advance(self, token: torch.Tensor, state, memory: ImageMemory):
        """One step up to the output layer -> (its input [B, hidden + ...], new state, weights or None)."""
        h, c = self.lstm(self.embed(token), state)
        return torch.cat([h, memory.vector], -1), (h, c), None

    def step(self, token: torch.Tensor, state, memory: ImageMemory):
        """token [B] ids, state (h, c) -> (logits [B, V] of the next token, new state, weights or None)."""
        x, state, alpha = self.advance(token, state, memory)
        return self.out(x), state, alpha

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: read tokens[:, t], predict tokens[:, t + 1]. images uint8 [B, 3, H, W],
        tokens [B, T] -> logits [B, T - 1, V], attention weights [B, T - 1, L] (or None)."""
        memory = self.encode(images)
        state, inputs, weights = self.start(memory), [], []
        for t in range(tokens.shape[1] - 1):  # the last token is only ever a target
            x, state, alpha = self.advance(tokens[:, t], state, memory)
            inputs, weights = inputs + [x], weights + [alpha]
        logits = self.out(torch.stack(inputs, 1))  # the output layer is not recurrent: all steps at once
        return logits, None if weights[0] is None else torch.stack(weights, 1)


class ShowAttendTell(ShowAndTell):
    """CNN grid -> additive soft attention before every token -> LSTM (Xu et al. 2015). One step: (1) score
    every region against h_{t-1}; (2) softmax the scores; (3) context = weighted sum of the regions; (4) LSTM
    input = [token embedding, context]; (5) new (h, c); (6) next-token logits from [h, context, image vector]."""

    attends = True

    def __init__(self, vocab_size: int, dim: int = 64, hidden: int = 128, embed: int = 32):
        super().__init__(vocab_size, dim, hidden, embed)
        self.attention = AdditiveAttention(dim, hidden)

    def encode(self, images: torch.Tensor) -> ImageMemory:
        memory = super().encode(images)
        return memory._replace(keys=self.attention.W_a(memory.regions))

    def advance(self, token: torch.Tensor, state, memory: ImageMemory):
        context, alpha = self.attention(memory.regions, state[0], memory.keys)   # steps 1-3
        h, c = self.lstm(torch.cat([self.embed(token), context], -1), state)     # steps 4-5
        return torch.cat([h, context, memory.vector], -1), (h, c), alpha         # step 6: self.out of this


CAPTIONERS = {"show_and_tell": ShowAndTell, "show_attend_tell": ShowAttendTell}


# ------------------------------------------------------------------ loss and decoding

def caption_mask(tokens: torch.Tensor, eot_token: int) -> torch.Tensor:
    """Bool [B, T - 1]: which targets tokens[:, 1:] are real (up to and including the first EOT)."""
    eot_pos = (tokens == eot_token).int().argmax(dim=1)  # index of the first EOT of each row
    return torch.arange(1, tokens.shape[1], device=tokens.device) <= eot_pos.unsqueeze(1)


def caption_loss(logits: torch.Tensor, tokens: torch.Tensor, eot_token: int) -> torch.Tensor:
    """Mean next-token cross-entropy: logits [B, T - 1, V] predict tokens[:, 1:]; padding is ignored."""
    mask = caption_mask(tokens, eot_token)
    return F.cross_entropy(logits[mask], tokens[:, 1:][mask])


def caption_nll(model: ShowAndTell, images: torch.Tensor, tokens: torch.Tensor, eot_token: int) -> torch.Tensor:
    """-log p(caption | image) in nats, summed over each caption's tokens -> [B] (one decoder pass per pair)."""
    logits, _ = model(images, tokens)
    nll = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
    return (nll * caption_mask(tokens, eot_token)).sum(dim=1)


@torch.no_grad()
def greedy_decode(model: ShowAndTell, images: torch.Tensor, sot_token: int, eot_token: int,
                  max_len: int = CONTEXT_LENGTH) -> torch.Tensor:
    """Caption each image by always taking the most likely next token -> tokens [B, max_len] laid out
    like the tokenizer's: SOT, tokens, EOT, zeros. `model(images, tokens)` then gives the attention maps."""
    memory = model.encode(images)
    state = model.start(memory)
    tokens = torch.zeros(len(images), max_len, dtype=torch.long, device=images.device)
    tokens[:, 0] = sot_token
    done = torch.zeros(len(images), dtype=torch.bool, device=images.device)
    for t in range(max_len - 1):
        logits, state, _ = model.step(tokens[:, t], state, memory)
        nxt = logits.argmax(dim=-1)
        tokens[:, t + 1] = torch.where(done, 0, nxt)
        done |= nxt == eot_token
        if done.all():
            break
    return tokens


# ------------------------------------------------------------------ training on ShapesWorld

def train_captioner(kind: str = "show_attend_tell", world: shapes.ShapesWorld | None = None,
                    n_train: int = 4000, steps: int = 300, batch_size: int = 64, lr: float = 3e-3,
                    seed: int = 0, tokenizer: BPETokenizer | None = None, val_images: int = 128,
                    eval_every: int = 50):
    """Train a captioner ("show_and_tell" or "show_attend_tell") on ShapesWorld (32 px by default).

    Each step draws `batch_size` training images, one of their five captions each, and takes an Adam
    step on `caption_loss`. The history holds per step `loss` (nats per token) and `nll` (nats per
    caption), and every `eval_every` steps `val_nll`: the mean -log p(caption | image) over all
    captions of `val_images` new images. Returns (model in eval mode, tokenizer, history)."""
    if kind not in CAPTIONERS:
        raise ValueError(f"kind must be one of {list(CAPTIONERS)}, got {kind!r}")
    world = world or shapes.ShapesWorld(image_size=32)
    data = world.train(n_train)
    tokenizer = tokenizer or BPETokenizer.from_captions(data.captions, VOCAB_SIZE)
    tokens = torch.stack([tokenizer(caps, CONTEXT_LENGTH, truncate=True) for caps in data.captions])  # [N, 5, T]
    val = world.test(val_images, split="seen")
    val_tokens = tokenizer([c for caps in val.captions for c in caps], CONTEXT_LENGTH, truncate=True)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = CAPTIONERS[kind](tokenizer.vocab_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history, seconds = [], 0.0
    for step in range(1, steps + 1):
        start = time.perf_counter()
        model.train()
        idx = torch.randint(len(data), (batch_size,), generator=g)
        batch = tokens[idx, torch.randint(tokens.shape[1], (batch_size,), generator=g)]
        batch = batch[:, :int(caption_mask(batch, tokenizer.eot_token).sum(1).max()) + 1]  # drop pure padding
        loss = train_step(model, (data.images[idx], batch), opt,
                          lambda m, images, t: caption_loss(m(images, t)[0], t, tokenizer.eot_token))
        seconds += time.perf_counter() - start
        history.append(step_record(model, step, step * batch_size, seconds, loss, lr))
        history[-1]["nll"] = loss * caption_mask(batch, tokenizer.eot_token).sum().item() / batch_size
        if step % eval_every == 0 or step == steps:
            with torch.no_grad():
                nll = caption_nll(model.eval(), val.images.repeat_interleave(len(val.captions[0]), dim=0),
                                  val_tokens, tokenizer.eot_token)
            history[-1]["val_nll"] = nll.mean().item()
    return model.eval(), tokenizer, history


# ------------------------------------------------------------------ evaluation

def _named(words: str, table: dict[str, list[str]]) -> set[str]:
    """The attribute values (e.g. colours) one of whose words occurs in the space-padded word string."""
    return {name for name, synonyms in table.items()
            if any(f" {' '.join(pre_tokenize(s))} " in words for s in synonyms)}


def caption_accuracy(predicted: list[str], dataset) -> dict[str, float]:
    """How often predicted captions are exactly right, or name the right colour / shape, on ShapesWorld
    data: "exact" if the caption is one of the image's references; "colour" if it names the true colour
    (any synonym) and no other; the same for "shape". Texts are compared as CLIP's tokenizer sees them."""
    norm = lambda text: " " + " ".join(pre_tokenize(text)) + " "
    exact = colour = shape = both = 0
    for i, text in enumerate(predicted):
        words = norm(text)
        exact += words in {norm(c) for c in dataset.captions[i]}
        c_ok = _named(words, shapes.COLOR_WORDS) == {shapes.COLORS[dataset.attributes["color"][i]]}
        s_ok = _named(words, shapes.SHAPE_WORDS) == {shapes.SHAPES[dataset.attributes["shape"][i]]}
        colour, shape, both = colour + c_ok, shape + s_ok, both + (c_ok and s_ok)
    n = max(len(predicted), 1)
    return {"exact": exact / n, "colour": colour / n, "shape": shape / n, "colour and shape": both / n}


def caption_entropy(dataset, samples: int = 100_000, seed: int = 0) -> torch.Tensor:
    """Entropy in nats of one caption of each ShapesWorld image, given its attributes -> [N].

    A caption is a template (5 distinct ones per image, drawn by weight without replacement; training
    picks one of the 5) plus a word per attribute it names: the usual word with probability 0.6, else
    one of its k synonyms (0.4 / k each). If different choices spell different captions, H = H(template)
    + sum over attributes of P(named) x H(word), the template probabilities from `samples` simulated draws."""
    weights = np.array([w for _, w in shapes.CAPTION_TEMPLATES], dtype=np.float64)
    keys = np.log(weights) + np.random.default_rng(seed).gumbel(size=(samples, len(weights)))
    chosen = np.argsort(-keys, axis=1)[:, :shapes.CAPTIONS_PER_IMAGE]  # the generator's Gumbel top-k
    p = np.bincount(chosen.ravel(), minlength=len(weights)) / chosen.size
    entropy = torch.full((len(dataset),), float(-(p * np.log(p)).sum()), dtype=torch.float64)

    def word_entropy(n_words: int) -> float:
        return 0.0 if n_words == 1 else -(0.6 * math.log(0.6) + 0.4 * math.log(0.4 / (n_words - 1)))

    for key, name, values, table in [("c", "color", shapes.COLORS, shapes.COLOR_WORDS),
                                     ("s", "shape", shapes.SHAPES, shapes.SHAPE_WORDS),
                                     ("z", "size", shapes.SIZES, shapes.SIZE_WORDS),
                                     ("p", "position", shapes.POSITIONS, shapes.POSITION_WORDS),
                                     ("b", "background", shapes.BACKGROUNDS, shapes.BACKGROUND_WORDS)]:
        p_named = sum(p_t for (template, _), p_t in zip(shapes.CAPTION_TEMPLATES, p) if "{" + key + "}" in template)
        h = torch.tensor([word_entropy(len(table[v])) for v in values], dtype=torch.float64)
        entropy += p_named * h[dataset.attributes[name]]
    return entropy.float()
