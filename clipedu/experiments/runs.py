"""Short experiments beyond the paper's recipe (notebooks 18-20 and their benchmarks).

`clipedu.train.loop.train` runs one configured training run and writes its
checkpoint. The experiments here train many short runs on one shared dataset,
changing one thing at a time, so they have their own small loop (`train_run`):

- `loss="siglip"`: SigLIP's pairwise sigmoid loss (Zhai et al. 2023) with its
  learned bias, started at the paper's s = 10 and b = -10, or at any other
  value (`bias="balanced"`: the log-odds of one match in a batch);
- `temperature=T`: the temperature held fixed at T instead of learned, with
  no clamp, so T > 1 is allowed.

Everything else is the course loop's: the preset's model (`setup.init_model`),
the no-duplicate-caption batches of `UniqueCaptionBatchSampler`, AdamW with
warmup + cosine, gradient clipping, `loop.train_step` and its history records,
and `loop.evaluate` for the metrics. What notebooks 19 and 20 measure on the
trained models lives in `gap.py` and `prompts.py`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from clipedu.data.sampler import UniqueCaptionBatchSampler
from clipedu.tokenizer import caption_token_table
from clipedu.train.config import TrainConfig, apply_overrides, get_preset
from clipedu.train.distributed import DistState
from clipedu.train.evaluation import evaluate
from clipedu.train.loop import step_inputs, step_record, train_step
from clipedu.train.optim import build_optimizer, cosine_schedule
from clipedu.train.setup import TrainData, build_tokenizer, init_model, load_data


@dataclass
class Setup:
    """A config with its data and tokenizer, built once and shared by the runs of one experiment."""

    config: TrainConfig
    data: TrainData
    tokenizer: object


def setup(config: TrainConfig | str = "shapes-tiny", **overrides) -> Setup:
    """Generate the data and learn the tokenizer that `config` (a preset name or a TrainConfig) names."""
    config = apply_overrides(get_preset(config) if isinstance(config, str) else config, **overrides)
    data = load_data(config)
    return Setup(config, data, build_tokenizer(config, data.train.captions))


@dataclass
class Run:
    model: nn.Module  # in eval mode; a SigLIP model's `logit_bias` is a parameter, else None
    history: list[dict]  # one `loop.step_record` per step (+ the metrics where evaluated)
    final: dict  # loop.evaluate's metrics at the end, with step, images_seen and seconds


def balanced_bias(batch_size: int) -> float:
    """The SigLIP bias b with sigmoid(b) = 1 / N: the log-odds that a random pair of a batch of N matches."""
    if batch_size < 2:
        raise ValueError(f"a batch needs at least 2 pairs to have negatives, got {batch_size}")
    return -math.log(batch_size - 1)


def build_run_model(config: TrainConfig, vocab_size: int, loss: str = "clip", temperature: float | None = None,
                    bias: float | str | None = None) -> nn.Module:
    """The preset's freshly initialised CLIP, set up for `loss` and a learned or fixed temperature.

    SigLIP starts at the paper's s = 10 and b = -10; `bias` replaces the -10 with
    a number, or with "balanced" for `balanced_bias(config.batch_size)`.
    """
    if temperature is not None and temperature <= 0:
        raise ValueError(f"the temperature must be positive, got {temperature}")
    if loss == "siglip" and config.positives != "diagonal":
        raise ValueError(f"the siglip loss has one positive per pair: set positives='diagonal' in the setup "
                         f"(it is {config.positives!r})")
    if bias == "balanced":
        bias = balanced_bias(config.batch_size)
    config = apply_overrides(config, loss=loss, learn_temperature=temperature is None)
    model = init_model(config, vocab_size, None if bias is None else float(bias))  # seeded: the same weights
    if temperature is not None:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(1 / temperature))
    return model


def train_run(s: Setup, loss: str = "clip", temperature: float | None = None, bias: float | str | None = None,
              eval_every: int = 0, **overrides) -> Run:
    """Train one model on `s.data` and return it with its history and final metrics.

    `overrides` replace config fields (batch_size, steps, lr, seed, ...). A learned
    temperature is clamped as in training (1/100 <= T <= 1); a fixed one is left
    as given, so T > 1 is allowed.
    """
    config = apply_overrides(s.config, **overrides)
    if config.batch_size > len(s.data.train):
        raise ValueError(f"batch_size={config.batch_size} is larger than the {len(s.data.train)} training images")
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_run_model(config, s.tokenizer.vocab_size, loss, temperature, bias).to(device)
    optimizer = build_optimizer(model, config.lr, config.weight_decay, tuple(config.betas), config.eps)
    tokens = caption_token_table(s.tokenizer, s.data.train.captions, config.context_length)
    sampler = UniqueCaptionBatchSampler(s.data.train.captions, config.batch_size, seed=config.seed)
    history, seconds = [], 0.0
    model.train()
    for step in range(config.steps):
        start = time.perf_counter()
        lr = cosine_schedule(step, config.steps, config.warmup_steps, config.lr, config.min_lr)
        batch = step_inputs(s.data, tokens, sampler, config, step, DistState(), device)
        loss_value = train_step(model, batch, optimizer, lr=lr, grad_clip=config.grad_clip,
                                max_logit_scale=config.max_logit_scale if temperature is None else None)
        seconds += time.perf_counter() - start
        history.append(step_record(model, step + 1, (step + 1) * config.batch_size, seconds, loss_value, lr))
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < config.steps:
            history[-1].update(evaluate(model, s.tokenizer, s.data))
    final = {"step": config.steps, "images_seen": config.steps * config.batch_size, "seconds": round(seconds, 3),
             **evaluate(model, s.tokenizer, s.data)}
    if history:
        history[-1].update({k: v for k, v in final.items() if k not in history[-1]})
    return Run(model.eval(), history, final)


VARIANTS = {"clip": dict(loss="clip"), "siglip": dict(loss="siglip")}


def batch_sweep(s: Setup, batch_sizes, images: int, variants: dict | None = None, log=None, **overrides) -> list[dict]:
    """Train each variant at each batch size for images // batch_size steps: the same images seen by all.

    `variants` maps a name to `train_run` arguments (default: CLIP's and SigLIP's
    losses, `VARIANTS`). Returns one dict per run: variant, loss, batch_size, the
    final metrics, and the last logit_scale (and logit_bias).
    """
    variants = VARIANTS if variants is None else variants
    results = []
    for b in batch_sizes:
        steps = images // b
        if steps < 1:
            raise ValueError(f"{images} images are fewer than one batch of {b}")
        for name, kwargs in variants.items():
            run = train_run(s, **kwargs, batch_size=b, steps=steps, warmup_steps=max(1, steps // 10), **overrides)
            last = run.history[-1]
            result = {"variant": name, "loss": kwargs.get("loss", "clip"), "batch_size": b, **run.final,
                      "logit_scale": last["logit_scale"]}
            if "logit_bias" in last:
                result["logit_bias"] = last["logit_bias"]
            results.append(result)
            if log is not None:
                log(f"batch {b:4d} ({steps:5d} steps)  {name:22s} zero-shot seen {run.final['zeroshot_acc']:.3f}  "
                    f"held-out {run.final['zeroshot_heldout_acc']:.3f}  ({run.final['seconds']:.0f} s)")
    return results
