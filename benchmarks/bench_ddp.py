"""Training throughput of the shapes-tiny model on 1 and 2 processes (torchrun, gloo on CPU), same global batch.

Each configuration runs this file under torchrun (through `clipedu.train.launch.launch`):
every rank builds the shapes-tiny CLIP with the preset's seed, wraps it in DDP,
and times full training steps on its slice of a fixed global batch: forward,
all-gather of the features, the local loss (`distributed_clip_loss`), backward
(DDP's gradient all-reduce), AdamW. The inputs are random tensors of the preset's
shapes, so data loading is not measured. Samples/s = global batch / median step time.

Besides the wall time it reports the CPU time of a step, summed over the
ranks: on a shared machine the wall time depends on how the scheduler shares
the cores (K processes get K shares), the CPU time much less so; its growth with
K is the price of data parallelism on one machine (communication, and the
optimiser step and weights duplicated in every rank).

Configurations: 1 process x 1 thread, 1 process x T threads (all cores in one
process), and K processes x 1 thread each (what torchrun does by default).
With K processes on a K-core CPU, the speed-up over one thread shows the cost
of communication and of the duplicated work (each rank holds the whole model
and runs the optimiser on all of it); one process with K threads is the
baseline to beat on a single machine. On GPUs the same code splits the batch
over devices instead of cores.

The memory and time of the local loss against the full N x N matrix are measured
by benchmarks/bench_distributed_loss.py (`--loss` runs its quick version after
the table).

    python benchmarks/bench_ddp.py                      # the preset's global batch, K = 2
    python benchmarks/bench_ddp.py --batch 256 --procs 2 4 --steps 15
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def worker(batch: int, steps: int, warmup: int, threads: int) -> None:
    """Body of every rank: time `steps` DDP training steps; rank 0 prints one RESULT line."""
    from clipedu.loss import clamp_logit_scale
    from clipedu.train.config import get_preset
    from clipedu.train.distributed import (
        cleanup,
        distributed_clip_loss,
        init_distributed,
        rank0_print,
        wrap_ddp,
    )
    from clipedu.train.optim import build_optimizer
    from clipedu.train.setup import init_model

    torch.set_num_threads(threads)
    state = init_distributed("cpu")
    config = get_preset("shapes-tiny")
    model = init_model(config, config.vocab_size)  # same seed on every rank: same initial weights
    n_params = sum(p.numel() for p in model.parameters())
    ddp_model = wrap_ddp(model, state)
    optimizer = build_optimizer(model, config.lr, config.weight_decay, tuple(config.betas), config.eps)

    g = torch.Generator().manual_seed(0)
    size, ctx = config.image_size, config.context_length
    images = torch.randn(batch, 3, size, size, generator=g)
    tokens = torch.randint(1, config.vocab_size - 1, (batch, ctx), generator=g)
    tokens[:, ctx // 2] = config.vocab_size - 1  # EOT (the largest id) in the middle, padding after
    tokens[:, ctx // 2 + 1:] = 0
    n = batch // state.world_size
    mine = slice(state.rank * n, (state.rank + 1) * n)

    def step() -> None:
        img, txt, scale = ddp_model(images[mine], tokens[mine])
        loss = distributed_clip_loss(img, txt, scale, state)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        clamp_logit_scale(model)

    times, cpu_times = [], []
    for i in range(warmup + steps):
        if state.world_size > 1:
            torch.distributed.barrier()  # every rank starts the step together
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)  # all threads of this process, gloo's included
    median, cpu = statistics.median(times), statistics.median(cpu_times)
    if state.world_size > 1:
        t = torch.tensor([median], dtype=torch.float64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)  # the slowest rank sets the pace
        c = torch.tensor([cpu], dtype=torch.float64)
        torch.distributed.all_reduce(c, op=torch.distributed.ReduceOp.SUM)  # CPU time of all ranks together
        median, cpu = t.item(), c.item()
    rank0_print("RESULT " + json.dumps({"procs": state.world_size, "threads": threads, "batch": batch,
                                        "step_ms": median * 1e3, "samples_s": batch / median,
                                        "cpu_ms": cpu * 1e3, "params": n_params}), state=state)
    cleanup()


def run(procs: int, threads: int, args: argparse.Namespace) -> dict:
    from clipedu.train.launch import launch

    log = io.StringIO()
    cmd = [__file__, "--worker", "--batch", str(args.batch), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(threads)]
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    with contextlib.redirect_stdout(log):
        launch(cmd, nproc=procs, env=env)
    lines = [ln for ln in log.getvalue().splitlines() if ln.startswith("RESULT ")]
    if len(lines) != 1:
        raise RuntimeError(f"expected one RESULT line from rank 0, got {len(lines)}:\n{log.getvalue()}")
    return json.loads(lines[0].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, help="global batch (default: the shapes-tiny preset's)")
    parser.add_argument("--procs", type=int, nargs="+", default=[2], help="process counts besides 1")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="(worker) intra-op threads per process")
    parser.add_argument("--loss", action="store_true",
                        help="afterwards, run benchmarks/bench_distributed_loss.py --quick")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch is None:
        from clipedu.train.config import get_preset

        args.batch = get_preset("shapes-tiny").batch_size
    if args.worker:
        worker(args.batch, args.steps, args.warmup, args.threads)
        return
    for k in args.procs:
        if args.batch % k:
            raise SystemExit(f"--batch {args.batch} does not split into {k} equal per-process batches")

    cores = os.cpu_count() or 1
    configs = [(1, 1), (1, cores)] if cores > 1 else [(1, 1)]
    configs += [(k, 1) for k in args.procs]
    print(f"shapes-tiny CLIP, global batch {args.batch}, median of {args.steps} steps after {args.warmup} "
          f"warm-up, {cores} CPU cores, torch {torch.__version__}, gloo")
    try:
        load = os.getloadavg()[0]
        print(f"load average before the runs: {load:.1f} (timings are only comparable on an idle machine)")
    except OSError:
        pass
    results = [run(procs, threads, args) for procs, threads in configs]
    base = results[0]["samples_s"]
    base_cpu = results[0]["cpu_ms"]
    header = (f"{'processes':>9} {'threads/proc':>12} {'per-proc batch':>14} | {'step ms':>8} {'samples/s':>9} "
              f"{'vs 1x1':>6} | {'CPU ms/step':>11} {'vs 1x1':>6}")
    print(f"model: {results[0]['params']:,} parameters")
    print("step ms: wall time of a step (slowest rank); CPU ms/step: CPU time of all ranks together, which a "
          "busy machine inflates less")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['procs']:>9} {r['threads']:>12} {r['batch'] // r['procs']:>14} | {r['step_ms']:>8.1f} "
              f"{r['samples_s']:>9.1f} {r['samples_s'] / base:>6.2f} | {r['cpu_ms']:>11.1f} "
              f"{r['cpu_ms'] / base_cpu:>6.2f}")
    if args.loss:
        print("\nlocal loss vs full matrix (benchmarks/bench_distributed_loss.py --quick):", flush=True)
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_distributed_loss.py"), "--quick"],
                       check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


if __name__ == "__main__":
    main()
