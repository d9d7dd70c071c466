"""BatchNorm over the global batch when K processes each hold a slice of it.

The ResNet image tower (`clipedu.resnet`) normalises with BatchNorm: in
training, each channel is standardised with the mean and variance of the
current batch. Under DistributedDataParallel every process sees only its N/K
images, so plain `nn.BatchNorm2d` would use each slice's statistics, and K
processes would train a different model than one process with the whole
batch. torch's `nn.SyncBatchNorm` fixes that on GPUs only; `GlobalBatchNorm2d`
does the same on any backend (gloo on CPUs included) with two differentiable
all-reduces, so its gradients flow through the shared statistics to every rank.
"""

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward is a sum over ranks too (each rank's output feeds every rank's loss)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training statistics are taken over every process's slice.

    Same parameters, buffers and state-dict keys as nn.BatchNorm2d; identical to
    it on one process and in eval mode.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or _world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        dims = (0, 2, 3)
        count = all_reduce(x.new_tensor(float(x.numel() // x.shape[1])))  # values per channel, all ranks
        mean = all_reduce(x.sum(dims)) / count
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum(dims)) / count  # biased, as BatchNorm normalises
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * count / (count - 1), m)  # unbiased, as BatchNorm stores
        return y


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Turn every nn.BatchNorm2d in `module` into a GlobalBatchNorm2d, in place.

    Only the class changes: the parameters stay the same objects, so an
    optimiser built before the conversion still updates them.
    """
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = GlobalBatchNorm2d
    return module
