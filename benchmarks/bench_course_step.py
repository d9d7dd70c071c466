"""Where a course training step spends its time: the old preset (32 px) against the new (64 px), phase by phase.

    python benchmarks/bench_course_step.py [--steps 30] [--threads 2]

Times the phases of `clipedu.train.loop`'s step for shapes-tiny as it is and
as it was before issue 11 (32 px images, CLIP's one positive per row): the
batch (sampler, image gather, normalisation, the positives matrix), the image
tower's forward, the text tower's forward, the loss, the backward pass and
the AdamW step. Both configurations run in the same process, alternating step
by step, so they see the same machine load. Prints the median of each phase
in milliseconds and the ratio of the totals.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from clipedu.data.sampler import UniqueCaptionBatchSampler
from clipedu.tokenizer import caption_token_table
from clipedu.train.config import apply_overrides, get_preset
from clipedu.train.distributed import DistState
from clipedu.train.loop import batch_loss, step_inputs
from clipedu.train.optim import build_optimizer
from clipedu.train.setup import build_tokenizer, init_model, load_data

PHASES = ("batch", "image forward", "text forward", "loss", "backward", "optimizer")


def prepare(config):
    data = load_data(config)
    tokenizer = build_tokenizer(config, data.train.captions)
    model = init_model(config, tokenizer.vocab_size).train()
    optimizer = build_optimizer(model, config.lr, config.weight_decay, tuple(config.betas), config.eps)
    tokens = caption_token_table(tokenizer, data.train.captions, config.context_length)
    sampler = UniqueCaptionBatchSampler(data.train.captions, config.batch_size, seed=config.seed)
    return config, data, model, optimizer, tokens, sampler


def timed_step(setup, step: int) -> dict[str, float]:
    config, data, model, optimizer, tokens, sampler = setup
    times, clock = {}, time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        times[name] = (now - clock) * 1000
        clock = now

    batch = step_inputs(data, tokens, sampler, config, step, DistState())
    lap("batch")
    optimizer.zero_grad(set_to_none=True)
    image_features = model.encode_image(batch[0])
    lap("image forward")
    text_features = model.encode_text(batch[1])
    lap("text forward")
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    text_features = text_features / text_features.norm(dim=-1, keepdim=True)
    loss = batch_loss(image_features, text_features, model.logit_scale.exp(), None,
                      positives=batch[2] if len(batch) > 2 else None)
    lap("loss")
    loss.backward()
    lap("backward")
    optimizer.step()
    lap("optimizer")
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-size", type=int, default=4000)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    new = apply_overrides(get_preset("shapes-tiny"), train_size=args.train_size)
    old = apply_overrides(new, image_size=32, positives="diagonal")
    setups = {"before (32 px, diagonal)": prepare(old), "after (64 px, compatible)": prepare(new)}
    records = {name: [] for name in setups}
    for step in range(args.steps + 3):
        for name, setup in setups.items():
            times = timed_step(setup, step)
            if step >= 3:  # the first steps warm up the allocator and oneDNN's kernels
                records[name].append(times)
    print(f"median milliseconds per phase over {args.steps} steps, batch {new.batch_size}, {args.threads} threads")
    print(f"{'phase':15s} " + " ".join(f"{name:>26s}" for name in setups))
    totals = {}
    for phase in PHASES + ("total",):
        row = []
        for name in setups:
            values = [sum(r.values()) if phase == "total" else r[phase] for r in records[name]]
            row.append(statistics.median(values))
            if phase == "total":
                totals[name] = row[-1]
        print(f"{phase:15s} " + " ".join(f"{v:26.1f}" for v in row))
    before, after = totals.values()
    print(f"\nstep time after / before: {after / before:.2f}; steps in 180 s at the median: "
          f"{180_000 / before:.0f} before, {180_000 / after:.0f} after (the preset trains {new.steps})")


if __name__ == "__main__":
    main()
