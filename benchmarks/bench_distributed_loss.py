"""Memory and time of one rank's local CLIP loss against the full N x N loss as the global batch grows.

With K ranks and a global batch N = K * n_local, a rank using the local loss
(`clipedu.train.distributed.local_clip_loss`) builds two [n_local, N] logit blocks;
without it, every rank builds the whole [N, N] matrix (`clipedu.loss.clip_loss`
on the gathered batch). This script times one forward + backward of each, in
one process: rank 0's share is computed from features standing in for the
all-gathered batch (the gather itself, a communication cost, is not measured).

Memory is counted, not estimated: a TorchDispatchMode sees every tensor that
an operation creates during forward + backward, adds its storage's bytes when
it appears and subtracts them when Python frees the storage; the peak of that
running total is reported (logits, softmax outputs, their gradients and the
feature gradients; the input features themselves are excluded). This is exact
for CPU tensors and independent of the allocator's caching.

What to expect: the full loss peaks at about 4 N^2 floats (the logits, shared
by both directions through a transpose, one log-softmax per direction, and a
gradient buffer); the local loss at about 4 n_local N (two logit blocks and
their two log-softmaxes). The memory ratio therefore tends to K as N grows
(the [N, D] feature gradients blur it at small N); time follows the matmul
and softmax work, also about K.

    python benchmarks/bench_distributed_loss.py            # N = 256 .. 8192, K = 2, 4, 8, D = 512
    python benchmarks/bench_distributed_loss.py --quick    # N up to 2048, D = 128
"""

from __future__ import annotations

import argparse
import time
import weakref

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from clipedu.loss import clip_loss
from clipedu.train.distributed import local_clip_loss

MiB = 2**20


class PeakMemory(TorchDispatchMode):
    """Running total of live bytes of the CPU tensors created inside the `with` block, and its peak."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.now = self.peak = 0

    def _freed(self, key: int) -> None:
        self.now -= self.live.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()  # views share it: count it once
                key = id(storage)
                if key not in self.live:
                    self.live[key] = storage.nbytes()
                    self.now += storage.nbytes()
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(storage, self._freed, key)
        return out


def unit_features(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=-1)


def full_step(n_global: int, d: int):
    """Every rank without the local loss: the whole N x N matrix."""
    img, txt = unit_features(n_global, d, 0).requires_grad_(), unit_features(n_global, d, 1).requires_grad_()
    scale = torch.tensor(100.0)
    return lambda: clip_loss(img, txt, scale).backward()


def local_step(n_global: int, d: int, k: int):
    """Rank 0 of k with the local loss: local features plus the gathered (gradient-carrying) batch."""
    n = n_global // k
    all_img, all_txt = unit_features(n_global, d, 0).requires_grad_(), unit_features(n_global, d, 1).requires_grad_()
    img, txt = all_img.detach()[:n].clone().requires_grad_(), all_txt.detach()[:n].clone().requires_grad_()
    scale = torch.tensor(100.0)
    return lambda: local_clip_loss(img, txt, all_img, all_txt, scale, rank=0).backward()


def peak_bytes(step) -> int:
    with PeakMemory() as meter:
        step()
    return meter.peak


def seconds(step, reps: int, min_total: float = 0.5) -> float:
    """Best of at least `reps` runs (and at least `min_total` seconds of runs): the least disturbed one."""
    step()  # warm-up
    times: list[float] = []
    while len(times) < reps or (sum(times) < min_total and len(times) < 100):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192])
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--dim", type=int, default=512, help="embedding size (CLIP ViT-B: 512)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (1 keeps timings steady on a shared machine)")
    parser.add_argument("--quick", action="store_true", help="N up to 2048, dim 128")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.dim = [s for s in args.sizes if s <= 2048], 128
    torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, D={args.dim}, "
          f"best of >= {args.reps} forward+backward")
    print("memory: peak bytes of tensors created during forward+backward (counted per storage)")
    header = (f"{'N':>6} {'K':>3} {'n_local':>7} | {'full MiB':>9} {'local MiB':>9} {'mem x':>6} "
              f"| {'full ms':>9} {'local ms':>9} {'time x':>6}")
    print(header)
    print("-" * len(header))
    results = {}
    for n_global in args.sizes:
        full = full_step(n_global, args.dim)
        full_mem, full_s = peak_bytes(full), seconds(full, args.reps)
        for k in args.ranks:
            if n_global % k:
                continue
            local = local_step(n_global, args.dim, k)
            mem, sec = peak_bytes(local), seconds(local, args.reps)
            results[n_global, k] = (full_mem, mem)
            print(f"{n_global:>6} {k:>3} {n_global // k:>7} | {full_mem / MiB:>9.1f} {mem / MiB:>9.1f} "
                  f"{full_mem / mem:>6.2f} | {full_s * 1e3:>9.1f} {sec * 1e3:>9.1f} {full_s / sec:>6.2f}")

    # Same numbers seen at a fixed per-rank batch: adding ranks grows the local
    # loss linearly and the full matrix quadratically.
    for n_local in sorted({n // k for n, k in results}):
        rows = sorted((k, results[n_local * k, k]) for k in args.ranks if (n_local * k, k) in results)
        if len(rows) < 2:
            continue
        k0, (full0, local0) = rows[0]
        cells = ", ".join(f"K={k}: local x{local / local0:.2f} full x{full / full0:.2f}" for k, (full, local) in rows)
        print(f"per-rank batch {n_local}, memory relative to K={k0}: {cells}")


if __name__ == "__main__":
    main()
