"""Contrastive losses: CLIP's symmetric InfoNCE, SigLIP's pairwise sigmoid, the temperature clamp.

The CLIP paper (Radford et al. 2021, Figure 3) trains on a batch of N
(image, text) pairs by scoring all N x N combinations:

    logits = s * I @ T^T            s = exp(t), the learned inverse temperature
    loss   = (CE(logits, arange(N)) + CE(logits^T, arange(N))) / 2

Row i of `logits` asks "which of the N texts belongs to image i?" and column j
asks "which of the N images belongs to text j?". The right answers sit on the
diagonal, hence the labels arange(N).

SigLIP (Zhai et al. 2023) replaces the two softmaxes with an independent
binary question per pair: "do image i and text j belong together?".

The features are used exactly as given: the model's forward L2-normalises them
(`clipedu.model.l2_normalize`), so normalising again here would hide bugs.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from clipedu.checkpoint import unwrap


def logits_matrix(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    """Scaled cosine similarities `s * I @ T^T` (paper Figure 3), shape [n_images, n_texts].

    `logit_scale` is the multiplier s = exp(t), as the model's forward returns it.
    Row and column counts may differ (the distributed loss scores local rows
    against the global batch).
    """
    check_features(image_features, text_features, same_batch=False)
    check_scalar("logit_scale", logit_scale)
    return logit_scale * image_features @ text_features.T


def image_to_text_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over each row: image i must pick text i among the N texts."""
    return F.cross_entropy(logits_per_image, _diagonal_labels(logits_per_image))


def text_to_image_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over each column: text j must pick image j among the N images."""
    return F.cross_entropy(logits_per_image.T, _diagonal_labels(logits_per_image))


def clip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    """CLIP's symmetric cross-entropy (paper Figure 3): the mean of both directions.

    image_features, text_features: [N, D], row i of each is a matching pair,
    normally L2-normalised by the model. logit_scale: s = exp(t), a scalar.
    With all logits equal the loss is ln(N), chance level.
    """
    check_features(image_features, text_features, same_batch=True)
    logits = logits_matrix(image_features, text_features, logit_scale)
    return (image_to_text_loss(logits) + text_to_image_loss(logits)) / 2


def multi_positive_clip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | float,
    positives: torch.Tensor,
) -> torch.Tensor:
    """CLIP's loss with several right answers per row: the targets spread over every positive.

    positives: bool [N, N], positives[i, j] says caption j is true of image i (the diagonal must
    be True). Row i's target distribution is uniform over its positives, column j's over the
    images its caption is true of; each direction is the cross-entropy against those soft targets
    (as in SupCon, Khosla et al. 2020). With positives = the identity this is `clip_loss`.
    """
    check_features(image_features, text_features, same_batch=True)
    logits = logits_matrix(image_features, text_features, logit_scale)
    return multi_positive_loss(logits, logits.T, positives, positives.T)


def multi_positive_loss(logits_per_image: torch.Tensor, logits_per_text: torch.Tensor,
                        image_positives: torch.Tensor, text_positives: torch.Tensor) -> torch.Tensor:
    """The mean of both directions' soft-target cross-entropy: rows of logits_per_image [n, N] against
    image_positives [n, N], rows of logits_per_text [n, N] against text_positives [n, N]."""
    for name, logits, pos in (("image", logits_per_image, image_positives), ("text", logits_per_text, text_positives)):
        if pos.shape != logits.shape or pos.dtype != torch.bool:
            raise ValueError(f"{name} positives must be a bool matrix of the logits' shape {tuple(logits.shape)}, "
                             f"got {pos.dtype} {tuple(pos.shape)}")
        if not pos.any(1).all():
            raise ValueError(f"every {name} row needs at least one positive (its own pair)")
    targets = [pos.to(logits_per_image.dtype) / pos.sum(1, keepdim=True) for pos in (image_positives, text_positives)]
    return (F.cross_entropy(logits_per_image, targets[0]) + F.cross_entropy(logits_per_text, targets[1])) / 2


def siglip_labels(n: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """SigLIP's targets: +1 on the diagonal (matching pairs), -1 everywhere else."""
    return 2 * torch.eye(n, device=device, dtype=dtype) - 1


def siglip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float,
) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al. 2023, Algorithm 1).

    Each of the N x N pairs is a binary classification with logit
    z_ij = s * <I_i, T_j> + b and label y_ij = +1 if i == j else -1:
        loss = -sum_ij log sigmoid(y_ij * z_ij) / N
    Dividing by N (not N^2) follows the paper and open_clip's SigLipLoss.
    The paper initialises s = 10 (t' = ln 10) and b = -10, because almost all
    pairs are negatives.
    """
    check_features(image_features, text_features, same_batch=True)
    check_scalar("logit_bias", logit_bias)
    logits = logits_matrix(image_features, text_features, logit_scale) + logit_bias
    labels = siglip_labels(logits.shape[0], device=logits.device, dtype=logits.dtype)
    return -F.logsigmoid(labels * logits).sum() / logits.shape[0]


@torch.no_grad()
def clamp_logit_scale(
    model_or_param: nn.Module | torch.Tensor, max_scale: float = 100.0, min_scale: float = 1.0
) -> torch.Tensor:
    """Clip the learnable log-temperature t in place so that s = exp(t) <= max_scale.

    The paper (Section 2.5) clips s at 100 to keep training stable; call this
    after every optimizer step. The lower bound s >= 1 (t >= 0) matches
    open_clip. Accepts a model with `.logit_scale` (DDP-wrapped or not) or the
    parameter itself; returns the parameter.
    """
    if not (0 < min_scale <= max_scale):
        raise ValueError(f"need 0 < min_scale <= max_scale, got min_scale={min_scale}, max_scale={max_scale}")
    param = model_or_param
    if isinstance(param, nn.Module):
        module = unwrap(param)  # DistributedDataParallel keeps the model in .module
        if not hasattr(module, "logit_scale"):
            raise TypeError(
                f"{type(module).__name__} has no `logit_scale`; pass the CLIP model or its logit_scale parameter"
            )
        param = module.logit_scale
    if not isinstance(param, torch.Tensor):
        raise TypeError(f"expected a module or a tensor, got {type(param).__name__}")
    return param.clamp_(math.log(min_scale), math.log(max_scale))


# ------------------------------------------------------------------ input checks

def check_features(image_features: torch.Tensor, text_features: torch.Tensor, same_batch: bool) -> None:
    """Raise a clear error for feature tensors the losses cannot use."""
    for name, x in (("image_features", image_features), ("text_features", text_features)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2:
            raise ValueError(
                f"{name} must be 2-D [batch, embed_dim], got shape {tuple(x.shape)}; "
                "flatten or index your batch first"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch; a contrastive loss needs at least one pair")
    if image_features.shape[1] != text_features.shape[1]:
        raise ValueError(
            f"image and text features must share the embedding size, got {image_features.shape[1]} "
            f"and {text_features.shape[1]}; both towers must project to the same embed_dim"
        )
    if same_batch and image_features.shape[0] != text_features.shape[0]:
        raise ValueError(
            f"image and text batches differ in size ({image_features.shape[0]} vs "
            f"{text_features.shape[0]}); row i of each must be one matching pair"
        )
    if image_features.dtype != text_features.dtype:
        raise TypeError(
            f"image_features is {image_features.dtype} but text_features is {text_features.dtype}; "
            "cast both to the same dtype"
        )


def check_scalar(name: str, value: torch.Tensor | float) -> None:
    """Raise a clear error for a scale or bias that is a tensor of more than one element."""
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")


def _diagonal_labels(logits: torch.Tensor) -> torch.Tensor:
    if logits.dim() != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(
            f"expected a square [N, N] logits matrix with matches on the diagonal, got {tuple(logits.shape)}"
        )
    return torch.arange(logits.shape[0], device=logits.device)
