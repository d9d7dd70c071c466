"""The training loop and its command line.

    python -m clipedu.train --preset shapes-tiny --out runs/tiny
    torchrun --nproc_per_node 2 -m clipedu.train --preset shapes-gpu --out runs/gpu

One step (paper Figure 3): take the step's global batch of (image, caption)
pairs, embed both, score all pairs with the symmetric cross-entropy, then
AdamW with the scheduled learning rate, and clamp the temperature.

Everything random in a step is a function of (seed, step, position in the
global batch): the batch itself (`UniqueCaptionBatchSampler`), the caption
chosen for each image and each crop. A resumed run therefore repeats the
straight run exactly, and K processes, each taking a contiguous slice of the
global batch, train on the same data as one process.
"""

import contextlib
import signal
import sys
import time
from pathlib import Path

import torch

from clipedu import transforms
from clipedu.checkpoint import (
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    write_json,
)
from clipedu.data.sampler import UniqueCaptionBatchSampler
from clipedu.embed import encode_images, encode_texts
from clipedu.loss import clamp_logit_scale
from clipedu.model import CLIP
from clipedu.retrieval import flatten_captions, recall_at_k
from clipedu.train.batchnorm import convert_batchnorm
from clipedu.train.cache import load_course_model, load_model  # noqa: F401 (re-exported for notebooks)
from clipedu.train.config import (
    RUN_CONTROL_FIELDS,
    TrainConfig,
    apply_overrides,
    get_preset,
)
from clipedu.train.distributed import (
    DistState,
    all_reduce_mean,
    distributed_clip_loss,
    distributed_siglip_loss,
    init_distributed,
    wrap_ddp,
)
from clipedu.train.optim import build_optimizer, cosine_schedule, set_lr
from clipedu.train.setup import (
    TrainData,
    build_tokenizer,
    caption_token_table,
    init_model,
    load_data,
    tokenizer_from_state,
    tokenizer_state,
)
from clipedu.zeroshot import classifier_from_prompts, zeroshot_accuracy

PROGRESS_INTERVAL = 1.0  # seconds between progress-bar redraws


def batch_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
               dist: DistState) -> torch.Tensor:
    """This process's share of the contrastive loss: CLIP's softmax, or SigLIP's sigmoid when a bias is given."""
    if bias is None:
        return distributed_clip_loss(img, txt, scale, dist)
    return distributed_siglip_loss(img, txt, scale, bias, dist)


@torch.no_grad()
def evaluate(model: CLIP, tokenizer, data: TrainData) -> dict[str, float]:
    """Zero-shot accuracy on each labelled test set, and Recall@1/5 on the retrieval set."""
    was_training = model.training
    model.eval()
    metrics = {}
    if data.class_prompts:
        classifier = classifier_from_prompts(model, tokenizer, data.class_prompts)
        for name, dataset in data.zeroshot_sets.items():
            metrics[name] = zeroshot_accuracy(model, dataset.images, dataset.labels, classifier)
    texts, owner = flatten_captions(data.retrieval_set.captions)
    recall = recall_at_k(encode_images(model, data.retrieval_set.images),
                         encode_texts(model, tokenizer, texts, truncate=True), owner, ks=(1, 5))
    metrics.update(recall)
    model.train(was_training)
    return metrics


def contrastive_backward(model, images, tokens, accum_steps: int, dist: DistState, autocast,
                         loss: str = "clip") -> float:
    """Loss over the (local slice of the) global batch, and its gradient in .grad.

    With accum_steps M > 1 (open_clip's recipe): embed all M micro-batches without
    gradient first, then re-embed one micro-batch at a time with gradient and score
    it against the cached features of all the others. Every micro-batch thus still
    sees every negative, and the summed gradient equals the full-batch gradient.
    logit_scale enters each micro-batch's loss, so its gradient is kept from one
    micro-batch only (the last, so DDP sees every parameter used when it syncs).
    BatchNorm (the ResNet tower) normalises each micro-batch with its own statistics,
    so there the equality is approximate; LayerNorm models (ViT) match exactly.
    loss="siglip" scores with the sigmoid loss and the model's `logit_bias`.
    """
    bias = getattr(getattr(model, "module", model), "logit_bias", None) if loss == "siglip" else None
    if loss == "siglip" and bias is None:
        raise ValueError("loss='siglip' needs a model with a logit_bias (build it with loss='siglip')")
    if accum_steps == 1:
        with autocast:
            img, txt, scale = model(images, tokens)
        value = batch_loss(img.float(), txt.float(), scale.float(), bias, dist)
        value.backward()
        return all_reduce_mean(value, dist).item()
    image_chunks, token_chunks = images.chunk(accum_steps), tokens.chunk(accum_steps)
    with torch.no_grad(), autocast:
        cached = [model(i, t)[:2] for i, t in zip(image_chunks, token_chunks)]
    for j in range(accum_steps):
        last = j == accum_steps - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast:
                img_j, txt_j, scale = model(image_chunks[j], token_chunks[j])
            img = torch.cat([c[0] for c in cached[:j]] + [img_j] + [c[0] for c in cached[j + 1:]]).float()
            txt = torch.cat([c[1] for c in cached[:j]] + [txt_j] + [c[1] for c in cached[j + 1:]]).float()
            scale_j = scale.float() if last else scale.float().detach()
            bias_j = bias if bias is None or last else bias.detach()
            value = batch_loss(img, txt, scale_j, bias_j, dist)
            value.backward()
    return all_reduce_mean(value, dist).item()  # each rank holds the loss of its rows: log the mean


def step_inputs(data: TrainData, tokens: torch.Tensor, sampler, config: TrainConfig, step: int,
                dist: DistState, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """This process's slice of the step's global batch: normalised images and caption tokens."""
    image_idx, caption_idx = sampler.batch(step)
    n = len(image_idx)
    local = slice(dist.rank * n // dist.world_size, (dist.rank + 1) * n // dist.world_size)
    images = data.train.images[image_idx[local]].to(device)  # uint8: 4x less to copy than float
    if config.augment:  # crops seeded by (seed, step, position in the global batch), not by the process
        positions = torch.arange(n)[local]
        images = transforms.random_crop(images, config.image_size,
                                        transforms.augment_seeds(config.seed, positions, step))
    return transforms.normalize(images), tokens[image_idx[local], caption_idx[local]].to(device)


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


def _check_config(config: TrainConfig, data: TrainData, dist: DistState) -> None:
    if config.batch_size > len(data.train):
        raise ValueError(f"batch larger than the dataset: batch_size={config.batch_size} but the training set "
                         f"has {len(data.train)} images; use --batch-size {len(data.train)} or less, or more data")
    parts = dist.world_size * config.accum_steps
    if config.batch_size % parts:
        raise ValueError(f"batch_size={config.batch_size} must divide evenly into {dist.world_size} processes x "
                         f"{config.accum_steps} accumulation steps")
    if config.stop_after is not None and not 0 < config.stop_after <= config.steps:
        raise ValueError(f"stop_after={config.stop_after} must lie in 1..steps={config.steps}")


def train(config: TrainConfig | str = "shapes-tiny", out_dir: str | Path | None = None, *,
          resume: bool = False, evaluate_model: bool = True, progress: bool = True, **overrides) -> dict:
    """Train CLIP as `config` (a TrainConfig or a preset name) says; return the final metrics.

    Writes out_dir/metrics.json and out_dir/checkpoint.pt (both atomically). `overrides`
    replace TrainConfig fields, e.g. train("shapes-tiny", "runs/a", steps=100).
    """
    config = apply_overrides(get_preset(config) if isinstance(config, str) else config, **overrides)
    out = Path(out_dir) if out_dir is not None else Path("runs") / config.preset
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.json"
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dist = init_distributed(device.type)
    if dist.backend == "nccl":
        device = torch.device("cuda", dist.local_rank)

    data = load_data(config)
    _check_config(config, data, dist)
    checkpoint = None
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {ckpt_path}; drop --resume to start afresh")
        checkpoint = load_checkpoint(ckpt_path, expected_config=config.to_dict(), ignore_fields=RUN_CONTROL_FIELDS)
        tokenizer = tokenizer_from_state(checkpoint["extra"]["tokenizer"])
    else:
        tokenizer = build_tokenizer(config, data.train.captions)
    model = init_model(config, tokenizer.vocab_size).to(device)
    if dist.world_size > 1:  # BatchNorm statistics over the global batch, as on one process
        convert_batchnorm(model)
    optimizer = build_optimizer(model, config.lr, config.weight_decay, tuple(config.betas), config.eps)
    start, history, seconds = 0, [], 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        set_rng_state(checkpoint["rng_state"])
        start, history, seconds = checkpoint["step"], checkpoint["extra"]["history"], checkpoint["extra"]["seconds"]
    ddp_model = wrap_ddp(model, dist)

    tokens = caption_token_table(tokenizer, data.train.captions, config.context_length)
    sampler = UniqueCaptionBatchSampler(data.train.captions, config.batch_size, seed=config.seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def save(step: int) -> None:
        if dist.is_main:
            extra = {"tokenizer": tokenizer_state(config, tokenizer), "history": history, "seconds": seconds,
                     "model_config": vars(model.config)}
            save_checkpoint(ckpt_path, model=model, optimizer=optimizer, step=step, config=config.to_dict(),
                            rng_state=get_rng_state(), extra=extra)

    def write_metrics(final: dict | None = None) -> None:
        if dist.is_main:
            write_json(metrics_path, {"config": config.to_dict(), "history": history, "final": final})

    end = config.stop_after or config.steps
    bar = None
    if progress and dist.is_main:
        from tqdm.auto import tqdm
        # At most one redraw a second: a notebook kernel drops output (and nbval times out) when a
        # long run floods it with a message per step.
        bar = tqdm(total=config.steps, initial=start, desc=config.preset, unit="step", file=sys.stderr,
                   mininterval=PROGRESS_INTERVAL)
    ddp_model.train()
    step, images_per_step = start, config.batch_size
    clock = time.perf_counter()  # training time = wall time of the loop minus evaluation
    try:
        for step in range(start, end):
            t0 = time.perf_counter()
            lr = cosine_schedule(step, config.steps, config.warmup_steps, config.lr, config.min_lr)
            set_lr(optimizer, lr)
            images, text = step_inputs(data, tokens, sampler, config, step, dist, device)
            optimizer.zero_grad(set_to_none=True)
            loss = contrastive_backward(ddp_model, images, text, config.accum_steps, dist, autocast, config.loss)
            with defer_interrupt():  # the update and its record, all or nothing
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                clamp_logit_scale(model, config.max_logit_scale)
                now = time.perf_counter()
                seconds, clock = seconds + now - clock, now
                scale = model.logit_scale.exp().item()
                record = {"step": step + 1, "seconds": round(seconds, 3),
                          "images_seen": (step + 1) * images_per_step, "loss": loss, "logit_scale": scale, "lr": lr}
                if hasattr(model, "logit_bias"):
                    record["logit_bias"] = model.logit_bias.item()
                history.append(record)
            done = step + 1
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.3f}", T=f"{1 / scale:.3f}",
                                img_s=f"{images_per_step / (time.perf_counter() - t0):.0f}", refresh=False)
                bar.update(1)
            if evaluate_model and config.eval_every and done % config.eval_every == 0 and done < config.steps:
                if dist.is_main:
                    record.update(evaluate(model, tokenizer, data))
                    if bar is not None:
                        bar.write(f"step {done}: " + ", ".join(f"{k} {v:.3f}" for k, v in record.items()
                                                               if k not in ("step", "images_seen")))
                write_metrics()
                clock = time.perf_counter()
            if config.save_every and done % config.save_every == 0 and done < end:
                save(done)
    except KeyboardInterrupt:
        done = history[-1]["step"] if history else start
        save(done)
        write_metrics()
        if dist.is_main:
            print(f"\ninterrupted: saved step {done} to {ckpt_path}; continue with --resume", file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()

    done = end if end > start else start
    save(done)
    if done < config.steps:  # --stop-after: stopped as an interruption would
        write_metrics()
        return {"step": done, "seconds": seconds, "completed": False}
    final = {"step": done, "seconds": round(seconds, 3), "images_seen": done * images_per_step,
             "completed": True}
    if evaluate_model and dist.is_main:
        final.update(evaluate(model, tokenizer, data))
        if history and history[-1]["step"] == done:
            history[-1].update({k: v for k, v in final.items() if k not in history[-1]})
    write_metrics(final)
    return final
