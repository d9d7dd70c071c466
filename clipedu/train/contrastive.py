"""The contrastive loss of one (global) batch: one process or several, one positive or several, whole or in
micro-batches.

`contrastive_loss` scores a batch with the model's loss: CLIP's softmax (with
`positives`, its multi-positive form) or SigLIP's sigmoid when the model has a
`logit_bias`. `batch_loss` picks the single-process loss (`clipedu.loss`) or
the gathered one (`clipedu.train.distributed`). `contrastive_backward` leaves
the gradient of the global batch's loss in `.grad`, optionally over
micro-batches (gradient accumulation), as `clipedu.train.loop` trains.
"""

import contextlib

import torch
from torch import nn

from clipedu.checkpoint import unwrap
from clipedu.loss import clip_loss, multi_positive_clip_loss, siglip_loss
from clipedu.train.distributed import DistState, all_reduce_mean, distributed_clip_loss, distributed_siglip_loss


def contrastive_loss(model: nn.Module, images: torch.Tensor, tokens: torch.Tensor,
                     positives: torch.Tensor | None = None) -> torch.Tensor:
    """CLIP's loss on one batch (multi-positive with `positives`), or SigLIP's when the model has a `logit_bias`."""
    return batch_loss(*model(images, tokens), unwrap(model).logit_bias, positives=positives)


def batch_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
               dist: DistState | None = None, positives: torch.Tensor | None = None) -> torch.Tensor:
    """This process's share of CLIP's softmax loss, or SigLIP's sigmoid loss when a bias is given:
    `clipedu.loss` on one process; on several, each gathers the others' features first.
    positives (bool [N, N] over the global batch): the multi-positive loss instead of CLIP's."""
    if bias is not None and positives is not None:
        raise ValueError("positives='compatible' needs the clip loss; the siglip loss has one positive per row")
    if dist is None or dist.world_size == 1:
        if bias is not None:
            return siglip_loss(img, txt, scale, bias)
        return clip_loss(img, txt, scale) if positives is None else multi_positive_clip_loss(img, txt, scale, positives)
    if bias is None:
        return distributed_clip_loss(img, txt, scale, dist, positives=positives)
    return distributed_siglip_loss(img, txt, scale, bias, dist)


def contrastive_backward(model: nn.Module, images: torch.Tensor, tokens: torch.Tensor,
                         positives: torch.Tensor | None = None, accum_steps: int = 1,
                         dist: DistState | None = None, autocast=None) -> float:
    """`contrastive_loss` over the (local slice of the) global batch, left as gradients in .grad.

    positives (bool [N, N] over the global batch, from `step_inputs`): the multi-positive loss.

    With accum_steps M > 1 (open_clip's recipe): embed all M micro-batches without
    gradient first, then re-embed one micro-batch at a time with gradient and score
    it against the cached features of all the others. Every micro-batch thus still
    sees every negative, and the summed gradient equals the full-batch gradient.
    logit_scale (and logit_bias) enters each micro-batch's loss, so its gradient is
    kept from the last micro-batch only (so DDP sees every parameter used when it
    syncs). BatchNorm (the ResNet tower) normalises each micro-batch with its own
    statistics, so there the equality is approximate; LayerNorm (ViT) matches exactly.
    """
    dist, autocast = dist or DistState(), autocast or contextlib.nullcontext()
    bias = unwrap(model).logit_bias
    if accum_steps == 1:
        with autocast:
            img, txt, scale = model(images, tokens)
        value = batch_loss(img.float(), txt.float(), scale.float(), bias, dist, positives)
        value.backward()
    else:
        image_chunks, token_chunks = images.chunk(accum_steps), tokens.chunk(accum_steps)
        with torch.no_grad(), autocast:
            cached = [model(i, t)[:2] for i, t in zip(image_chunks, token_chunks)]
        for j in range(accum_steps):
            last = j == accum_steps - 1
            sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
            with sync:
                with autocast:
                    img_j, txt_j, scale = model(image_chunks[j], token_chunks[j])
                img = torch.cat([c[0] for c in cached[:j]] + [img_j] + [c[0] for c in cached[j + 1:]]).float()
                txt = torch.cat([c[1] for c in cached[:j]] + [txt_j] + [c[1] for c in cached[j + 1:]]).float()
                scale_j = scale.float() if last else scale.float().detach()
                bias_j = bias if bias is None or last else bias.detach()
                value = batch_loss(img, txt, scale_j, bias_j, dist, positives)
                value.backward()
    # each process holds the loss of its rows: log the mean over processes
    return value.item() if dist.world_size == 1 else all_reduce_mean(value, dist).item()
