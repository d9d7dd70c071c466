"""Figure 2 in miniature: train each objective on the same batches, measure zero-shot accuracy per image seen."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from clipedu.data.sampler import UniqueCaptionBatchSampler
from clipedu.data.words import VOCAB_SIZE
from clipedu.experiments.objectives import OBJECTIVES, build_objective
from clipedu.tokenizer import BPETokenizer, caption_token_table
from clipedu.train.config import MAX_LOGIT_SCALE
from clipedu.train.loop import step_record, train_step
from clipedu.train.optim import build_optimizer, cosine_schedule
from clipedu.transforms import normalize


def prompt_tokens(tokenizer, prompts: list[list[str]], context_length: int = 24) -> torch.Tensor:
    """prompts[c] = class c's prompts (the same number per class) -> token ids [C, K, T]."""
    flat = tokenizer([p for ps in prompts for p in ps], context_length=context_length, truncate=True)
    return flat.view(len(prompts), len(prompts[0]), -1)


@torch.no_grad()
def objective_accuracy(objective: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      prompt_ids: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of argmax_c class_scores for uint8 images; labels index the prompt classes."""
    was_training = objective.training
    objective.eval()
    preds = torch.cat([objective.class_scores(normalize(images[i:i + batch_size]), prompt_ids).argmax(-1)
                       for i in range(0, len(images), batch_size)])
    objective.train(was_training)
    return (preds == labels).double().mean().item()


def train_objective(objective: nn.Module, data, tokenizer, steps: int, batch_size: int = 64, lr: float = 2e-3,
                    warmup_steps: int = 20, weight_decay: float = 0.1, context_length: int = 24, seed: int = 0,
                    evaluate: Callable[[nn.Module], dict] | None = None, eval_every: int = 50,
                    grad_clip: float | None = 1.0) -> list[dict]:
    """Train on ShapesWorld-style data (uint8 images, caption lists) and return the history.

    Every objective sees the same batches: `UniqueCaptionBatchSampler` with the
    same seed, AdamW, warmup + cosine, the course's `train_step`. `evaluate(objective)`
    returns metrics, logged every `eval_every` steps and at the end with the images seen so far.
    """
    tokens = caption_token_table(tokenizer, data.captions, context_length)
    sampler = UniqueCaptionBatchSampler(data.captions, batch_size, seed=seed)
    optimizer = build_optimizer(objective, lr, weight_decay)
    history, seconds = [], 0.0
    objective.train()
    for step in range(steps):
        start = time.perf_counter()
        step_lr = cosine_schedule(step, steps, warmup_steps, lr)
        image_idx, caption_idx = sampler.batch(step)
        batch = (normalize(data.images[image_idx]), tokens[image_idx, caption_idx])
        loss = train_step(objective, batch, optimizer, lambda model, *b: model.loss(*b), lr=step_lr,
                          grad_clip=grad_clip, max_logit_scale=MAX_LOGIT_SCALE)
        seconds += time.perf_counter() - start
        history.append(step_record(objective, step + 1, (step + 1) * batch_size, seconds, loss, step_lr))
        if evaluate is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
            history[-1].update(evaluate(objective))
    objective.eval()
    return history


def images_to_reach(images_seen, accuracy, target: float) -> float:
    """Images seen when the accuracy curve first reaches `target`, linearly interpolated.

    If the first point already reaches it, that point's images; inf if no point does.
    """
    xs, ys = np.asarray(images_seen, dtype=float), np.asarray(accuracy, dtype=float)
    for i in range(len(ys)):
        if ys[i] >= target:
            if i == 0:
                return float(xs[0])
            x0, y0 = xs[i - 1], ys[i - 1]
            return float(x0 + (target - y0) / (ys[i] - y0) * (xs[i] - x0))
    return math.inf


def compare_objectives(steps: int = 400, batch_size: int = 64, train_size: int = 10_000, test_size: int = 200,
                       eval_every: int = 50, image_size: int = 32, width: int = 64, layers: int = 2,
                       lr: float = 2e-3, seed: int = 0, templates: tuple[str, ...] = ("a {}",),
                       names: tuple[str, ...] = OBJECTIVES, log: Callable[[str], None] | None = None) -> dict:
    """Figure 2 in miniature: train each objective on the same ShapesWorld batches, same encoder init.

    Zero-shot accuracy (48 colour-shape classes, prompts from `templates`) on
    `test_size` fresh test images of the seen pairs is logged every
    `eval_every` steps. Returns ({name: history}, {name: trained objective}).
    """
    from clipedu.data.shapes import ShapesWorld

    world = ShapesWorld(seed=seed, image_size=image_size)
    data, test = world.train(train_size), world.test(test_size, "seen")
    tokenizer = BPETokenizer.from_captions(data.captions, VOCAB_SIZE)
    prompts = world.prompts(list(templates))
    prompt_ids = prompt_tokens(tokenizer, [prompts[name] for name in world.class_names])

    def evaluate(objective: nn.Module) -> dict:
        return {"zeroshot_acc": objective_accuracy(objective, test.images, test.labels, prompt_ids)}

    runs, models = {}, {}
    for name in names:
        models[name] = objective = build_objective(name, tokenizer, image_size, width, layers, seed=seed)
        runs[name] = train_objective(objective, data, tokenizer, steps, batch_size, lr, seed=seed,
                                     evaluate=evaluate, eval_every=eval_every)
        if log is not None:
            last = runs[name][-1]
            log(f"{name}: zero-shot {last['zeroshot_acc']:.3f} after {last['images_seen']:,d} images "
                f"({last['seconds']:.0f} s of training)")
    return runs, models
