"""One CLIP training step, clipedu vs OpenCLIP, on the same small ViT and the same weights.

A step is: forward both towers, the symmetric contrastive loss (paper Figure 3),
backward, AdamW step. The two models alternate round by round in one process,
so both see the same machine load; the script prints the median step times and
their ratio (clipedu / open_clip; below 1.0 means clipedu is faster).

    python benchmarks/bench_train_step.py [--batch 64] [--rounds 15] [--threads 1]

It runs on one thread by default: on a small shared CPU, intra-op threads
that wait for each other make timings slow and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from clipedu.model import CLIP, get_config


def openclip_model(cfg):
    """The same architecture in OpenCLIP (imported here only: it is a test/benchmark dependency)."""
    from open_clip.model import CLIP as OpenCLIP

    vision_cfg = dict(image_size=cfg.image_resolution, patch_size=cfg.vision_patch_size,
                      width=cfg.vision_width, layers=cfg.vision_layers)
    text_cfg = dict(context_length=cfg.context_length, vocab_size=cfg.vocab_size,
                    width=cfg.transformer_width, heads=cfg.transformer_heads, layers=cfg.transformer_layers)
    return OpenCLIP(cfg.embed_dim, vision_cfg=vision_cfg, text_cfg=text_cfg,
                    quick_gelu=cfg.act == "quick_gelu")


def make_step(model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    labels = torch.arange(images.shape[0])

    def step() -> float:
        image_features, text_features, scale = model(images, tokens)
        logits = scale * image_features @ text_features.T
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="course-vit")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    cfg = get_config(args.config)
    if not cfg.is_vit:
        raise SystemExit("this benchmark compares ViT configs; pick e.g. --config course-vit")
    torch.manual_seed(0)
    theirs = openclip_model(cfg).train()
    ours = CLIP(cfg).train()
    ours.load_state_dict(theirs.state_dict(), strict=True)  # identical starting weights

    r = cfg.image_resolution
    images = torch.randn(args.batch, 3, r, r)
    tokens = torch.randint(1, cfg.vocab_size - 1, (args.batch, cfg.context_length))
    tokens[:, -1] = cfg.vocab_size - 1  # EOT, the largest id, last

    steps = {"clipedu": make_step(ours, images, tokens), "open_clip": make_step(theirs, images, tokens)}
    first = {name: step() for name, step in steps.items()}
    # Same weights and data, so the first losses agree (a check that the comparison is fair).
    assert abs(first["clipedu"] - first["open_clip"]) < 1e-4, first
    for _ in range(args.warmup):
        for step in steps.values():
            step()

    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(args.rounds):
        order = list(steps) if i % 2 == 0 else list(reversed(steps))  # alternate who goes first
        for name in order:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)

    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"config {args.config}, batch {args.batch}, {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for name, t in med.items():
        print(f"  {name:9s} median step {t * 1e3:8.1f} ms")
    print(f"  ratio clipedu/open_clip = {med['clipedu'] / med['open_clip']:.3f}")


if __name__ == "__main__":
    main()
