"""Why CLIP is contrastive: the paper's efficiency experiment (Figure 2), in miniature.

Before settling on its loss, OpenAI trained the same image encoder with three
objectives on the same (image, caption) pairs, and measured zero-shot accuracy
against the number of images seen (paper, section 2.3):

1. `CaptionTransformer`: predict the caption word by word (a transformer
   language model that reads the image first, like VirTex).
2. `BagOfWordsPredictor`: predict which words the caption contains, in any
   order (Joulin et al. 2016): one softmax over the vocabulary whose target is
   the caption's normalised word counts.
3. `BagOfWordsContrastive`: CLIP's loss, with a bag-of-words text encoder:
   only say *which* caption of the batch belongs to the image.

Each step makes the task easier: wording, then word order stop mattering.
The paper found bag-of-words prediction 3x more efficient than the
transformer, and the contrastive objective 4x more efficient again.

Zero-shot classification for the predictive models works as the paper did
for them: write each class as a prompt ("a red circle") and score it by how
likely the model finds it for the image (`class_scores`); the contrastive
model uses cosine similarity as CLIP does. Each objective has
`loss(images, tokens)` and `class_scores(images, prompt_tokens)`, so one loop
(`train_objective`) trains them all on the same batches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from clipedu.experiments.captioning import caption_loss, caption_mask
from clipedu.loss import clip_loss
from clipedu.model import l2_normalize
from clipedu.transformer import LayerNorm, Transformer, build_causal_mask
from clipedu.vision import VisionTransformer
from clipedu.zeroshot import ensemble_prompts

OBJECTIVES = ("transformer", "bow_prediction", "bow_contrastive")
LABELS = {"transformer": "transformer predicts the caption", "bow_prediction": "bag-of-words prediction",
          "bow_contrastive": "bag-of-words contrastive (CLIP)"}


def image_encoder(image_size: int = 32, width: int = 64, layers: int = 2, heads: int = 2, patch_size: int = 8,
                  output_dim: int = 64) -> VisionTransformer:
    """The image encoder all three objectives share: a small ViT (notebook 05)."""
    return VisionTransformer(image_size, patch_size, width, layers, heads, output_dim)


# ------------------------------------------------------------------ bags of words

def word_mask(tokens: torch.Tensor, eot_token: int) -> torch.Tensor:
    """[N, T] bool: the caption's word tokens (after SOT, before the first EOT; no padding)."""
    inner = caption_mask(tokens, eot_token)  # targets tokens[:, 1:] up to and including EOT
    words = torch.zeros_like(tokens, dtype=torch.bool)
    words[:, 1:] = inner & (tokens[:, 1:] != eot_token)
    return words


def bag_of_words(tokens: torch.Tensor, vocab_size: int, eot_token: int) -> torch.Tensor:
    """Token ids [..., T] -> word counts [..., V] (float): how often each token occurs, order ignored."""
    flat = tokens.reshape(-1, tokens.shape[-1])
    counts = torch.zeros(len(flat), vocab_size)
    counts.scatter_add_(1, flat, word_mask(flat, eot_token).float())
    return counts.view(*tokens.shape[:-1], vocab_size)


def bow_prediction_loss(logits: torch.Tensor, bags: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between the caption's word distribution (counts / total) and softmax(logits).

    logits, bags [N, V] -> a scalar: -sum_w q(w) log p(w | image), averaged over the batch.
    """
    target = bags / bags.sum(dim=-1, keepdim=True).clamp_min(1)
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


# ------------------------------------------------------------------ the three objectives

class BagOfWordsPredictor(nn.Module):
    """Image encoder + one linear layer to a softmax over the vocabulary."""

    def __init__(self, encoder: VisionTransformer, vocab_size: int, eot_token: int):
        super().__init__()
        self.encoder, self.vocab_size, self.eot_token = encoder, vocab_size, eot_token
        self.head = nn.Linear(encoder.output_dim, vocab_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images -> word logits [N, V]."""
        return self.head(self.encoder(images))

    def loss(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return bow_prediction_loss(self(images), bag_of_words(tokens, self.vocab_size, self.eot_token))

    def class_scores(self, images: torch.Tensor, prompt_tokens: torch.Tensor) -> torch.Tensor:
        """Mean over templates of sum_w q_prompt(w) log p(w | image) -> [N, C]; prompt_tokens [C, K, T]."""
        log_p = F.log_softmax(self(images), dim=-1)                        # [N, V]
        bags = bag_of_words(prompt_tokens, self.vocab_size, self.eot_token)  # [C, K, V]
        q = bags / bags.sum(dim=-1, keepdim=True).clamp_min(1)
        return torch.einsum("nv,ckv->nck", log_p, q).mean(dim=-1)


class CaptionTransformer(nn.Module):
    """A causal transformer language model of the caption, conditioned on the image.

    It reads SOT, w1, ..., w_{T-2} and predicts w1, ..., EOT (teacher forcing,
    notebook 01). The image embedding, mapped to the text width, is added to
    every input position, so each token can read the image at every layer (the
    paper's baseline, like VirTex, attends to the image from every position).
    Blocks are the towers' `ResidualAttentionBlock`s (notebook 04).
    """

    def __init__(self, encoder: VisionTransformer, vocab_size: int, eot_token: int, context_length: int = 24,
                 width: int = 64, layers: int = 2, heads: int = 2):
        super().__init__()
        self.encoder, self.vocab_size, self.eot_token = encoder, vocab_size, eot_token
        self.image_to_text = nn.Linear(encoder.output_dim, width)
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(context_length, width))
        self.transformer = Transformer(width, layers, heads)  # causal mask applied per call, sized to the batch
        self.ln_final = LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised images [N, ...] and tokens [N, T] -> next-token logits [N, T - 1, V] for tokens[:, 1:]."""
        return self.decode(self.encoder(images), tokens)

    def decode(self, image_features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        inputs = tokens[:, :-1]
        x = self.token_embedding(inputs) + self.positional_embedding[:inputs.shape[1]]
        x = x + self.image_to_text(image_features)[:, None]
        mask = build_causal_mask(inputs.shape[1]).to(x.device)
        for block in self.transformer.resblocks:  # the block's own forward, with a mask of this length
            x = x + block.attn(block.ln_1(x), mask)
            x = x + block.mlp(block.ln_2(x))
        return self.head(self.ln_final(x))

    def loss(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        tokens = trim_padding(tokens, self.eot_token)
        return caption_loss(self(images, tokens), tokens, self.eot_token)

    @torch.no_grad()
    def class_scores(self, images: torch.Tensor, prompt_tokens: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Mean over templates of log p(prompt | image), summed over its tokens and EOT -> [N, C]."""
        n_cls, n_tpl, _ = prompt_tokens.shape
        prompts = trim_padding(prompt_tokens.reshape(n_cls * n_tpl, -1), self.eot_token)
        mask = caption_mask(prompts, self.eot_token)
        feats = self.encoder(images)
        scores = []
        for f in feats.split(max(1, chunk // len(prompts))):  # every (image, prompt) pair in chunks
            pairs = f.repeat_interleave(len(prompts), 0)
            toks = prompts.repeat(len(f), 1)
            nll = F.cross_entropy(self.decode(pairs, toks).transpose(1, 2), toks[:, 1:], reduction="none")
            scores.append(-(nll * mask.repeat(len(f), 1)).sum(1).view(len(f), n_cls, n_tpl).mean(-1))
        return torch.cat(scores)


class BagOfWordsContrastive(nn.Module):
    """CLIP with a bag-of-words text encoder: the mean of the caption's word embeddings, projected."""

    def __init__(self, encoder: VisionTransformer, vocab_size: int, eot_token: int, width: int = 64,
                 init_temperature: float = 0.07):
        super().__init__()
        self.encoder, self.vocab_size, self.eot_token = encoder, vocab_size, eot_token
        self.word_embedding = nn.Parameter(0.02 * torch.randn(vocab_size, width))
        self.text_projection = nn.Parameter(width ** -0.5 * torch.randn(width, encoder.output_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids [..., T] -> unnormalised text embeddings [..., D]."""
        bags = bag_of_words(tokens, self.vocab_size, self.eot_token).to(self.word_embedding.device)
        mean = bags / bags.sum(dim=-1, keepdim=True).clamp_min(1)
        return mean @ self.word_embedding @ self.text_projection

    def loss(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        image = l2_normalize(self.encoder(images))
        return clip_loss(image, l2_normalize(self.encode_text(tokens)), self.logit_scale.exp())

    def class_scores(self, images: torch.Tensor, prompt_tokens: torch.Tensor) -> torch.Tensor:
        """Cosine of each image with each class's ensembled prompt embedding -> [N, C]."""
        classifier = ensemble_prompts(self.encode_text(prompt_tokens))  # [D, C]
        return l2_normalize(self.encoder(images)) @ classifier


def build_objective(name: str, tokenizer, image_size: int = 32, width: int = 64, layers: int = 2,
                    context_length: int = 24, seed: int = 0) -> nn.Module:
    """One of OBJECTIVES with a freshly initialised image encoder (the same weights for every name)."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    torch.manual_seed(seed)
    encoder = image_encoder(image_size, width, layers, heads=max(1, width // 32), output_dim=width)
    args = (encoder, tokenizer.vocab_size, tokenizer.eot_token)
    if name == "transformer":
        return CaptionTransformer(*args, context_length, width, layers, heads=max(1, width // 32))
    if name == "bow_prediction":
        return BagOfWordsPredictor(*args)
    return BagOfWordsContrastive(*args, width)


def trim_padding(tokens: torch.Tensor, eot_token: int) -> torch.Tensor:
    """Drop the padding columns after the longest row's EOT."""
    return tokens[:, :int((tokens == eot_token).int().argmax(dim=1).max()) + 1]
