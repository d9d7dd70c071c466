"""Short experiments beyond the paper's recipe (notebooks 18-20 and their benchmarks).

`clipedu.train.loop.train` runs one configured training run and writes its
checkpoint. The experiments here train many short runs on one shared dataset,
changing one thing at a time, so they have their own small loop (`train_run`):

- `loss="siglip"`: SigLIP's pairwise sigmoid loss (Zhai et al. 2023) with its
  learned bias, started at the paper's s = 10 and b = -10, or at any other
  value (`bias="balanced"`: the log-odds of one match in a batch);
- `temperature=T`: the temperature held fixed at T instead of learned, with
  no clamp, so T > 1 is allowed.

Everything else is `train.train`'s: the preset's model (`presets.init_model`), the
no-duplicate-caption batches of `UniqueCaptionBatchSampler`, AdamW with
warmup + cosine, gradient clipping, and `train.evaluate` for the metrics.

The module also holds what notebooks 19 and 20 measure on trained models:
the modality gap (Liang et al. 2022) and zero-shot accuracy for sets of
prompt templates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from clipedu.data.sampler import UniqueCaptionBatchSampler
from clipedu.loss import clamp_logit_scale, clip_loss, siglip_loss
from clipedu.train.config import TrainConfig, apply_overrides, get_preset
from clipedu.train.distributed import DistState
from clipedu.train.loop import evaluate, step_inputs
from clipedu.train.optim import build_optimizer, cosine_schedule, set_lr
from clipedu.train.setup import (
    TrainData,
    build_tokenizer,
    caption_token_table,
    init_model,
    load_data,
)

LOSSES = {"clip": "softmax (CLIP)", "siglip": "sigmoid (SigLIP)"}
SIGLIP_INIT_SCALE, SIGLIP_INIT_BIAS = 10.0, -10.0  # the SigLIP paper's t' = ln 10 and b = -10

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
    model: nn.Module  # in eval mode; a SigLIP model also has `logit_bias`
    history: list[dict]  # one record per step: step, images_seen, loss, logit_scale (+ logit_bias, metrics)
    final: dict  # train.evaluate's metrics at the end, with steps, images_seen and seconds


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
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if temperature is not None and temperature <= 0:
        raise ValueError(f"the temperature must be positive, got {temperature}")
    if bias is not None and loss != "siglip":
        raise ValueError("only the siglip loss has a bias")
    if bias == "balanced":
        bias = balanced_bias(config.batch_size)
    plain = {k: v for k, v in (("loss", "clip"), ("learn_temperature", True)) if hasattr(config, k)}
    model = init_model(apply_overrides(config, **plain), vocab_size)  # seeded: the same weights for every loss
    with torch.no_grad():
        if loss == "siglip":
            model.logit_scale.fill_(math.log(SIGLIP_INIT_SCALE))
            model.logit_bias = nn.Parameter(torch.tensor(SIGLIP_INIT_BIAS if bias is None else float(bias)))
        if temperature is not None:
            model.logit_scale.fill_(math.log(1 / temperature))
    model.logit_scale.requires_grad_(temperature is None)
    return model


def run_loss(model: nn.Module, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The model's training loss on one batch: SigLIP's if the model has a bias, else CLIP's."""
    img, txt, scale = model(images, tokens)
    if hasattr(model, "logit_bias"):
        return siglip_loss(img, txt, scale, model.logit_bias)
    return clip_loss(img, txt, scale)


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
        set_lr(optimizer, cosine_schedule(step, config.steps, config.warmup_steps, config.lr, config.min_lr))
        images, text = step_inputs(s.data, tokens, sampler, config, step, DistState(), device)
        value = run_loss(model, images, text)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if config.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if temperature is None:
            clamp_logit_scale(model, config.max_logit_scale)
        seconds += time.perf_counter() - start
        record = {"step": step + 1, "images_seen": (step + 1) * config.batch_size, "loss": value.item(),
                  "logit_scale": model.logit_scale.exp().item()}
        if hasattr(model, "logit_bias"):
            record["logit_bias"] = model.logit_bias.item()
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < config.steps:
            record.update(evaluate(model, s.tokenizer, s.data))
        history.append(record)
    final = {"steps": config.steps, "images_seen": config.steps * config.batch_size, "seconds": round(seconds, 3),
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


# ------------------------------------------------------------------ the modality gap


# ------------------------------------------------------------------ prompt templates


