"""Data-parallel CLIP: torchrun set-up, feature gathering with gradients, the local loss.

CLIP's loss compares every image with every text in the batch, so a bigger
batch means more negatives (the paper uses 32,768). With K processes ("ranks")
each holding n_local pairs, the global batch is N = K * n_local. Every rank
all-gathers the features of the whole global batch and scores only its own
rows against all N columns (open_clip's `local_loss`):

                 texts of rank 0 | texts of rank 1       rank 0 computes the
    images r0  [   I0 T0^T       |    I0 T1^T    ]  <--  image rows I0 x all T
    images r1  [   I1 T0^T       |    I1 T1^T    ]       and text rows T0 x all I

so each rank holds two n_local x N blocks, not the full N x N matrix. With a
fixed per-rank batch, memory per rank grows linearly in K, where the full
matrix would grow with K^2. docs/distributed.md walks through the argument.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn as nn
import torch.nn.functional as F

from clipedu.loss import (
    check_features,
    check_scalar,
    clip_loss,
    logits_matrix,
    multi_positive_clip_loss,
    multi_positive_loss,
    siglip_loss,
)


@dataclass
class DistState:
    """Where this process sits in the job: global rank, number of ranks, GPU index on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "gloo" (CPU) or "nccl" (CUDA); None when not distributed

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, evaluates and writes checkpoints."""
        return self.rank == 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer; torchrun sets it, leave it unset") from None


def init_distributed(device: str = "cpu") -> DistState:
    """Read torchrun's environment and join the process group when there is more than one rank.

    torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for
    every process it starts. A plain `python script.py` sets none of them and
    gets the single-process state, without torch.distributed being touched.
    """
    world_size = _env_int("WORLD_SIZE") or 1
    if world_size <= 1:
        return DistState()
    rank = _env_int("RANK")
    if rank is None:
        raise RuntimeError(f"WORLD_SIZE={world_size} but RANK is unset; start the script with torchrun")
    local_rank = _env_int("LOCAL_RANK")
    local_rank = rank if local_rank is None else local_rank
    if dist.is_initialized():
        return DistState(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend())

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} but CUDA is not available; use device='cpu' (gloo)")
        torch.cuda.set_device(local_rank)  # one GPU per process, chosen by its index on the node
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)  # env:// rendezvous at MASTER_ADDR:MASTER_PORT
    return DistState(dist.get_rank(), dist.get_world_size(), local_rank, backend)


def cleanup() -> None:
    """Leave the process group (call once at the end of a distributed script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------ gathering

def _check_equal_batches(n_local: int, device: torch.device, state: DistState) -> None:
    # all_gather needs the same shape on every rank; a short last batch would hang or crash it
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(state.world_size)]
    dist.all_gather(sizes, torch.tensor([n_local], device=device))
    sizes = [int(s) for s in sizes]
    if len(set(sizes)) != 1:
        raise ValueError(
            f"ranks hold different batch sizes {sizes}; every rank must contribute the same "
            "number of pairs (use drop_last=True in the DataLoader / DistributedSampler)"
        )


def _all_gather(x: torch.Tensor, state: DistState, with_grad: bool) -> torch.Tensor:
    """Concatenate x from every rank along dim 0, in rank order."""
    if with_grad:
        # Its backward sends each rank's gradient for the gathered copy back to the
        # rank that owns the rows and sums them there (a reduce-scatter).
        with warnings.catch_warnings():  # deprecated in favour of a private API; still correct
            warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
            return torch.cat(dist_nn.all_gather(x), dim=0)
    parts = [torch.empty_like(x) for _ in range(state.world_size)]
    dist.all_gather(parts, x.contiguous())  # plain copies: autograd sees constants
    parts[state.rank] = x  # keep the local rows differentiable, as open_clip does
    return torch.cat(parts, dim=0)


def gather_features(
    image_features: torch.Tensor, text_features: torch.Tensor, state: DistState, with_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather both feature batches from every rank: [n_local, D] -> [N, D].

    with_grad=True is what training needs. Rank r's images are negatives in
    every other rank's loss, so their gradient has a part computed on those
    ranks; the gradient-carrying gather brings it home.
    with_grad=False (plain `dist.all_gather`) gives other ranks' rows no
    gradient, so those contributions are silently lost: the teaching contrast.
    """
    check_features(image_features, text_features, same_batch=True)
    if state.world_size == 1:
        return image_features, text_features
    _check_equal_batches(image_features.shape[0], image_features.device, state)
    return (
        _all_gather(image_features, state, with_grad),
        _all_gather(text_features, state, with_grad),
    )


# ------------------------------------------------------------------ losses

def _check_rank_block(n: int, n_global: int, rank: int) -> None:
    if n_global % n != 0 or not 0 <= rank < n_global // n:
        raise ValueError(
            f"a local batch of {n} pairs at rank {rank} does not fit a global batch of {n_global}; "
            "the global batch must be world_size equal local batches in rank order"
        )


def local_clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    all_image_features: torch.Tensor,
    all_text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    rank: int,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rank `rank`'s rows of CLIP's loss, given the already gathered global batch (no communication).

    The n local images are scored against all N texts and the n local texts
    against all N images: two [n, N] blocks instead of one [N, N] matrix. The
    matches sit at columns rank*n .. rank*n + n - 1, hence the labels
    arange(n) + rank*n. Returns the average of the two directions' mean
    cross-entropy over these n rows, so the mean over ranks is `clip_loss` on
    the global batch.
    """
    check_features(image_features, text_features, same_batch=True)
    check_features(all_image_features, all_text_features, same_batch=True)
    n = image_features.shape[0]
    _check_rank_block(n, all_text_features.shape[0], rank)
    logits_per_image = logits_matrix(image_features, all_text_features, logit_scale)  # [n, N]
    logits_per_text = logits_matrix(text_features, all_image_features, logit_scale)  # [n, N]
    if positives is not None:  # several right answers per row: the global [N, N] matrix, sliced to these rows
        rows = slice(rank * n, (rank + 1) * n)
        return multi_positive_loss(logits_per_image, logits_per_text, positives[rows], positives[:, rows].T)
    labels = torch.arange(n, device=image_features.device) + rank * n
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def local_siglip_loss(image_features: torch.Tensor, all_text_features: torch.Tensor,
                      logit_scale: torch.Tensor | float, logit_bias: torch.Tensor | float, rank: int) -> torch.Tensor:
    """Rank `rank`'s block of SigLIP's loss: n local images x all N texts (no communication).

    The sigmoid loss is a plain sum S over the N x N pairs, divided by N. This
    block's labels are +1 only at column rank*n + i, and its sum S_r is divided
    by the *local* batch n, so that
        mean_r (S_r / n) = (sum_r S_r) / (K n) = S / N,
    the global loss; DDP's gradient averaging then gives the single-process gradient.
    """
    check_scalar("logit_bias", logit_bias)
    n = image_features.shape[0]
    _check_rank_block(n, all_text_features.shape[0], rank)
    logits = logits_matrix(image_features, all_text_features, logit_scale) + logit_bias  # [n, N]
    labels = -torch.ones_like(logits)
    rows = torch.arange(n, device=logits.device)
    labels[rows, rows + rank * n] = 1.0
    return -F.logsigmoid(labels * logits).sum() / n


def distributed_clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    state: DistState,
    local_loss: bool = True,
    gather_with_grad: bool = True,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """This rank's share of CLIP's loss over the global batch: gather, then `local_clip_loss`.

    The mean over ranks equals `clip_loss` on the global batch. DDP averages
    gradients over ranks, and the gather's backward sums every rank's gradient
    for a row back onto the rank that owns it, so the averaged gradient equals
    the single-process gradient (docs/distributed.md has the argument).
    local_loss=False builds the full N x N matrix on every rank (quadratic
    memory; open_clip's default). With world_size 1 this is `clip_loss`.
    positives, a bool [N, N] over the global batch, gives the multi-positive loss
    (`clipedu.loss.multi_positive_clip_loss`) instead.
    """
    if state.world_size == 1 or not local_loss:
        if state.world_size > 1:
            image_features, text_features = gather_features(image_features, text_features, state, gather_with_grad)
        if positives is not None:
            return multi_positive_clip_loss(image_features, text_features, logit_scale, positives)
        return clip_loss(image_features, text_features, logit_scale)
    all_images, all_texts = gather_features(image_features, text_features, state, gather_with_grad)
    return local_clip_loss(image_features, text_features, all_images, all_texts, logit_scale, state.rank, positives)


def distributed_siglip_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                            logit_scale: torch.Tensor | float, logit_bias: torch.Tensor | float,
                            state: DistState) -> torch.Tensor:
    """This rank's share of SigLIP's loss: gather the texts only, then `local_siglip_loss`.

    The mean over ranks equals `siglip_loss` on the global batch. (open_clip
    passes text blocks from neighbour to neighbour instead of one all-gather,
    which needs less memory; the sum is the same.) With world_size 1 this is
    `siglip_loss`.
    """
    if state.world_size == 1:
        return siglip_loss(image_features, text_features, logit_scale, logit_bias)
    check_features(image_features, text_features, same_batch=True)
    _check_equal_batches(image_features.shape[0], image_features.device, state)
    all_texts = _all_gather(text_features, state, with_grad=True)  # images never leave their rank
    return local_siglip_loss(image_features, all_texts, logit_scale, logit_bias, state.rank)


# ------------------------------------------------------------------ helpers

def rank0_print(*args, state: DistState | None = None, **kwargs) -> None:
    """print() on rank 0 only, so K ranks do not print K copies of every log line."""
    if state is not None:
        is_main = state.is_main
    else:
        is_main = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    if is_main:
        kwargs.setdefault("flush", True)
        print(*args, **kwargs)


def wrap_ddp(model: nn.Module, state: DistState, **ddp_kwargs) -> nn.Module:
    """Wrap in DistributedDataParallel (which averages gradients over ranks); unchanged on one rank."""
    if state.world_size == 1:
        return model
    if state.backend == "nccl":
        ddp_kwargs.setdefault("device_ids", [state.local_rank])
    return nn.parallel.DistributedDataParallel(model, **ddp_kwargs)


def all_reduce_mean(x: torch.Tensor | float, state: DistState) -> torch.Tensor:
    """Mean of x over ranks, for logging (no gradient). Every rank must call it."""
    device = torch.device("cuda", state.local_rank) if state.backend == "nccl" else torch.device("cpu")
    y = x.detach().clone() if isinstance(x, torch.Tensor) else torch.tensor(x, device=device)
    if not y.is_floating_point():
        y = y.double()
    if state.world_size > 1:
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        y /= state.world_size
    return y
