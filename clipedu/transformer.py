"""The pre-LN residual attention block that both of CLIP's towers are made of.

CLIP's text encoder and its Vision Transformer share one building block
(paper section 2.4; openai/CLIP ``model.py``):

    x = x + attn(ln_1(x))
    x = x + mlp(ln_2(x))          mlp = c_fc -> QuickGELU -> c_proj

Parameter names follow openai/CLIP's state dict (``ln_1``, ``attn.in_proj_weight``,
``attn.out_proj``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``) so that released
checkpoints load with ``load_state_dict(strict=True)``. Tensors are batch-first,
``[N, L, D]``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back, so fp16/bf16 inputs stay stable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        orig_dtype = x.dtype
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        # .float() is free for fp32 tensors: no copy is made.
        y = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return y.to(orig_dtype)


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU that OpenAI trained CLIP with: x * sigmoid(1.702 x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(act: str) -> nn.Module:
    """'quick_gelu' (openai/CLIP, OpenCLIP ``-quickgelu``) or 'gelu' (OpenCLIP's default)."""
    if act == "quick_gelu":
        return QuickGELU()
    if act == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {act!r}: use 'quick_gelu' or 'gelu'")


def build_causal_mask(length: int) -> torch.Tensor:
    """Additive causal mask [L, L]: 0 on and below the diagonal, -inf above it.

    Token i may attend to tokens 0..i only, so padding after the end-of-text
    token never reaches the end-of-text features that the text tower pools.
    """
    return torch.full((length, length), float("-inf")).triu_(1)


class Attention(nn.Module):
    """Multi-head scaled dot-product self-attention (Vaswani et al. 2017, eq. 1).

    Same parameters and layout as ``nn.MultiheadAttention``: one packed input
    projection ``in_proj_weight [3D, D]`` for queries, keys and values, and
    ``out_proj``. The softmax(q k^T / sqrt(d_head)) v itself is computed by
    ``F.scaled_dot_product_attention``, which picks a fused kernel.
    """

    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        if d_model % n_head != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_head={n_head}")
        self.n_head = n_head
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.MultiheadAttention's defaults, which openai's vision tower keeps.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.kaiming_uniform_(self.out_proj.weight, a=math.sqrt(5))
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        n, length, d = x.shape
        # [N, L, 3D] -> three tensors of [N, heads, L, d_head]
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(n, length, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)
        if attn_mask is not None:
            attn_mask = attn_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(n, length, d)  # concatenate the heads
        return self.out_proj(out)


class ResidualAttentionBlock(nn.Module):
    """One pre-LN transformer layer: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(
        self,
        d_model: int,
        n_head: int,
        attn_mask: torch.Tensor | None = None,
        act: str = "quick_gelu",
    ):
        super().__init__()
        self.ln_1 = LayerNorm(d_model)
        self.attn = Attention(d_model, n_head)
        self.ln_2 = LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, 4 * d_model)),
            ("gelu", make_activation(act)),
            ("c_proj", nn.Linear(4 * d_model, d_model)),
        ]))
        # Not persistent: the mask is rebuilt from the config, never stored in
        # checkpoints (openai's state dicts have no mask entries).
        self.register_buffer("attn_mask", attn_mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.attn_mask
        if mask is not None and mask.shape[-1] != x.shape[-2]:  # a shorter sequence: its top-left corner
            mask = mask[: x.shape[-2], : x.shape[-2]]
        x = x + self.attn(self.ln_1(x), mask)
        x = x + self.mlp(self.ln_2(x))
        return x


class Transformer(nn.Module):
    """A stack of ``layers`` residual attention blocks of the same width."""

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        attn_mask: torch.Tensor | None = None,
        act: str = "quick_gelu",
    ):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(width, heads, attn_mask, act) for _ in range(layers)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x
