"""Embeddings in batches: images and texts into the shared space (paper Fig. 3, `I_e` and `T_e`).

`encode_images` and `encode_texts` run a trained model's towers over many inputs,
a batch at a time, and return L2-normalised embeddings on the CPU: the rows that
zero-shot classification, retrieval, probes and every figure compare. Images may
be raw uint8 (resized and normalised here, as at evaluation) or already prepared.
"""

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def prepare_images(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> the normalised float input the vision tower expects.

    Float input is taken as already preprocessed and passed through unchanged.
    """
    if images.dtype != torch.uint8:
        return images
    from clipedu import transforms  # imported here: only uint8 input needs it
    if images.shape[-1] != resolution or images.shape[-2] != resolution:
        images = transforms.resize_center_crop(images, resolution)
    return transforms.normalize(images)


def input_resolution(model: nn.Module) -> int:
    """The image size the vision tower was built for (read from the model's config)."""
    return model.config.image_resolution


@torch.no_grad()
def encode_images(
    model: nn.Module, images: torch.Tensor, batch_size: int = 256, normalize: bool = True
) -> torch.Tensor:
    """Image embeddings [N, D] in batches (L2-normalised unless normalize=False), on CPU."""
    device, res = _device_of(model), input_resolution(model)
    out = []
    for start in range(0, len(images), batch_size):
        x = prepare_images(images[start : start + batch_size], res).to(device)
        feats = model.encode_image(x).float()
        out.append(F.normalize(feats, dim=-1) if normalize else feats)
    return torch.cat(out).cpu()


@torch.no_grad()
def encode_texts(
    model: nn.Module, tokenizer, texts: Sequence[str], batch_size: int = 256, truncate: bool = False,
    trim: bool = False,
) -> torch.Tensor:
    """L2-normalised text embeddings [N, D] in batches, on CPU (truncate: cut texts that
    exceed the model's context length, as training does, instead of raising; trim: run each
    batch only up to its last end-of-text token, the same result for a fraction of the cost
    when the texts are short, e.g. prompts against CLIP's 77-token context)."""
    device = _device_of(model)
    context_length = model.positional_embedding.shape[0]
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[start : start + batch_size]), context_length=context_length, truncate=truncate)
        if trim and len(tokens):
            tokens = tokens[:, : int(tokens.argmax(dim=-1).max()) + 1]
        out.append(F.normalize(model.encode_text(tokens.to(device)).float(), dim=-1))
    return torch.cat(out).cpu()
