"""The training loop: one step, the course loop around it, and evaluation.

    python -m clipedu.train --preset shapes-tiny --out runs/tiny
    torchrun --nproc_per_node 2 -m clipedu.train --preset shapes-gpu --out runs/gpu

One step (paper Figure 3, `train_step`): embed a batch of (image, caption)
pairs, score all pairs with the symmetric cross-entropy (or SigLIP's sigmoid
loss), then AdamW with the scheduled learning rate, and clamp the temperature.
Every loop of the package (this one, the experiment runs, the Figure 2
objectives, fine-tuning, the captioner) takes its steps with `train_step` and
logs them with `step_record`.

Everything random in a step is a function of (seed, step, position in the
global batch): the batch itself (`UniqueCaptionBatchSampler`), the caption
chosen for each image and each crop. A resumed run therefore repeats the
straight run exactly, and K processes, each taking a contiguous slice of the
global batch, train on the same data as one process.
"""

import contextlib
import functools
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from clipedu import transforms
from clipedu.checkpoint import unwrap
from clipedu.data.meaning import compatible
from clipedu.data.negatives import false_negative_rate
from clipedu.data.sampler import UniqueCaptionBatchSampler
from clipedu.loss import clamp_logit_scale
from clipedu.tokenizer import caption_token_table
from clipedu.train.batchnorm import convert_batchnorm
from clipedu.train.config import TrainConfig
from clipedu.train.contrastive import batch_loss, contrastive_backward, contrastive_loss  # noqa: F401 (loop's API)
from clipedu.train.distributed import DistState, wrap_ddp
from clipedu.train.evaluation import evaluate
from clipedu.train.optim import build_optimizer, cosine_schedule, set_lr
from clipedu.train.setup import (
    TrainData,
    build_tokenizer,
    check_config,
    init_device,
    load_data,
    resolve_config,
    start_model,
    tokenizer_from_state,
    tokenizer_state,
    train_mode,
)
from clipedu.train.state import TrainState, run_checkpoint

PROGRESS_INTERVAL = 1.0  # seconds between progress-bar redraws


# ------------------------------------------------------------------ one step

def step_inputs(data: TrainData, tokens: torch.Tensor, sampler, config: TrainConfig, step: int,
                dist: DistState, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """This process's slice of the step's global batch: normalised images and caption tokens, and with
    positives="compatible" the bool [N, N] matrix of the global batch: caption j is true of image i."""
    image_idx, caption_idx = sampler.batch(step)
    positives = None
    if config.positives == "compatible":
        image_values, caption_values = data.meaning
        positives = compatible(image_values[image_idx], caption_values[image_idx, caption_idx])
        positives.fill_diagonal_(True)  # a pair is a positive even when its caption is noise
        positives = positives.to(device)
    n = len(image_idx)
    local = slice(dist.rank * n // dist.world_size, (dist.rank + 1) * n // dist.world_size)
    images = data.train.images[image_idx[local]].to(device)  # uint8: 4x less to copy than float
    if config.augment:  # crops seeded by (seed, step, position in the global batch), not by the process
        positions = torch.arange(n)[local]
        images = transforms.random_crop(images, config.image_size,
                                        transforms.augment_seeds(config.seed, positions, step))
    batch = (transforms.normalize(images), tokens[image_idx[local], caption_idx[local]].to(device))
    return batch if positives is None else (*batch, positives)


def train_step(model: nn.Module, batch: tuple, optimizer: torch.optim.Optimizer,
               loss_fn: Callable[..., torch.Tensor | float] = contrastive_loss, *, lr: float | None = None,
               grad_clip: float | None = None, max_logit_scale: float | None = None) -> float:
    """One optimisation step on `batch`, e.g. (images, tokens); returns its loss as a float.

    Sets the learning rate (lr=None: leave it), zeroes the gradients, backpropagates
    `loss_fn(model, *batch)`, clips the gradient norm (grad_clip=None: no clipping),
    steps, and clamps exp(logit_scale) to max_logit_scale (None, or a model without
    a logit_scale: no clamp). A loss_fn that accumulates gradients over micro-batches
    (`contrastive_backward`) calls backward itself and returns a float.
    """
    if lr is not None:
        set_lr(optimizer, lr)
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model, *batch)
    if isinstance(loss, torch.Tensor):
        loss.backward()
        loss = loss.item()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if max_logit_scale is not None and hasattr(unwrap(model), "logit_scale"):
        clamp_logit_scale(model, max_logit_scale)
    return loss


def step_record(model: nn.Module, step: int, images_seen: int, seconds: float, loss: float, lr: float) -> dict:
    """One step of a run's history, the same in every loop: step (from 1), images_seen, seconds of
    training so far, loss, lr, and the model's exp(logit_scale) and logit_bias where it has them."""
    record = {"step": step, "images_seen": images_seen, "seconds": round(seconds, 3), "loss": loss, "lr": lr}
    model = unwrap(model)
    scale, bias = getattr(model, "logit_scale", None), getattr(model, "logit_bias", None)
    if scale is not None:
        record["logit_scale"] = scale.exp().item()
    if bias is not None:
        record["logit_bias"] = bias.item()
    return record


# ------------------------------------------------------------------ what the course loop keeps

def progress_bar(config: TrainConfig, start: int):
    """A tqdm bar over the run's steps that redraws at most once a second: a notebook kernel drops
    output (and nbval times out) when a long run floods it with a message per step."""
    from tqdm.auto import tqdm

    return tqdm(total=config.steps, initial=start, desc=config.preset, unit="step", file=sys.stderr,
                mininterval=PROGRESS_INTERVAL)


def show_progress(bar, record: dict, images_per_second: float | None = None) -> None:
    """Advance the bar by a step (with its speed), or print an evaluated record under it (without)."""
    if bar is None:
        return
    if images_per_second is None:
        bar.write(f"step {record['step']}: " + ", ".join(f"{k} {v:.3f}" for k, v in record.items()
                                                          if k not in ("step", "images_seen")))
        return
    bar.set_postfix(loss=f"{record['loss']:.3f}", T=f"{1 / record['logit_scale']:.3f}",
                    img_s=f"{images_per_second:.0f}", refresh=False)
    bar.update(1)


@contextlib.contextmanager
def defer_interrupt():
    """Hold Ctrl-C until the block ends, so a checkpoint never holds a half-applied update."""
    caught = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    except ValueError:  # not the main thread: signals cannot be caught here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


# ------------------------------------------------------------------ the course loop

def train(config: TrainConfig | str = "shapes-tiny", out_dir: str | Path | None = None, *,
          resume: bool = False, evaluate_model: bool = True, progress: bool = True, **overrides) -> dict:
    """Train CLIP as `config` (a TrainConfig or a preset name) says; return the final metrics.

    Writes out_dir/metrics.json and out_dir/checkpoint.pt (both atomically). `overrides`
    replace TrainConfig fields, e.g. train("shapes-tiny", "runs/a", steps=100); init="file" fine-tunes
    the weights in a file (`setup.resolve_config`: its architecture, fine-tuning defaults where unset).
    """
    # the config (and a pretrained model); the device, and which of the processes (one, or torchrun's) this one is
    config, pretrained = resolve_config(config, overrides)
    out = Path(out_dir) if out_dir is not None else Path("runs") / config.preset
    device, dist = init_device(config)

    # data, tokenizer, model and optimizer: fresh, or as the checkpoint left them
    data = load_data(config)
    check_config(config, data, dist)
    checkpoint = run_checkpoint(out, config) if resume else None
    tokenizer = (tokenizer_from_state(checkpoint["extra"]["tokenizer"]) if resume
                 else build_tokenizer(config, data.train.captions, pretrained))
    model = start_model(config, tokenizer.vocab_size, pretrained).to(device)
    if dist.world_size > 1:  # BatchNorm statistics over the global batch, as on one process
        convert_batchnorm(model)
    optimizer = build_optimizer(model, config.lr, config.weight_decay, tuple(config.betas), config.eps)
    state = TrainState(out, config, model, optimizer, tokenizer_state(config, tokenizer), dist.is_main)
    start = state.restore(checkpoint) if resume else 0
    ddp_model = wrap_ddp(model, dist)
    tokens = caption_token_table(tokenizer, data.train.captions, config.context_length)
    sampler = UniqueCaptionBatchSampler(data.train.captions, config.batch_size, seed=config.seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    loss_fn = functools.partial(contrastive_backward, accum_steps=config.accum_steps, dist=dist, autocast=autocast)

    # the loop: one train_step per global batch and a record of it; evaluations and checkpoints between
    end = config.stop_after or config.steps
    bar = progress_bar(config, start) if progress and dist.is_main else None
    clock = time.perf_counter()
    try:
        for step in range(start, end):
            train_mode(ddp_model, config)  # a locked image tower (LiT) stays in eval mode
            lr = cosine_schedule(step, config.steps, config.warmup_steps, config.lr, config.min_lr)
            batch = step_inputs(data, tokens, sampler, config, step, dist, device)
            with defer_interrupt():  # the update and its record, all or nothing
                loss = train_step(ddp_model, batch, optimizer, loss_fn, lr=lr, grad_clip=config.grad_clip,
                                  max_logit_scale=config.max_logit_scale)
                now = time.perf_counter()
                state.seconds, step_seconds, clock = state.seconds + now - clock, now - clock, now
                record = step_record(model, step + 1, (step + 1) * config.batch_size, state.seconds, loss, lr)
                state.history.append(record)
            show_progress(bar, record, config.batch_size / step_seconds)
            done = step + 1
            if evaluate_model and config.eval_every and done % config.eval_every == 0 and done < config.steps:
                if dist.is_main:
                    record.update(evaluate(model, tokenizer, data))
                    show_progress(bar, record)
                state.write_metrics()
                clock = time.perf_counter()  # training time leaves evaluation out
            if config.save_every and done % config.save_every == 0 and done < end:
                state.save(done)
    except KeyboardInterrupt:
        state.save_interrupted(start)
        raise
    finally:
        if bar is not None:
            bar.close()

    # the end: the last checkpoint, the final evaluation and metrics.json
    done = max(start, end)
    state.save(done)
    if done < config.steps:  # --stop-after: stopped as an interruption would
        state.write_metrics()
        return {"step": done, "seconds": state.seconds, "completed": False}
    final = {"step": done, "seconds": round(state.seconds, 3), "images_seen": done * config.batch_size,
             "completed": True}
    if evaluate_model and dist.is_main:
        final.update(evaluate(model, tokenizer, data))
        if data.meaning is not None:  # the share of rows whose batch holds another caption true of their image
            final["false_negative_rate"] = round(false_negative_rate(sampler, *data.meaning, steps=min(50, len(sampler))), 4)
        if state.history and state.history[-1]["step"] == done:
            state.history[-1].update({k: v for k, v in final.items() if k not in state.history[-1]})
    state.write_metrics(final)
    return final
