"""The modality gap: at initialisation, after training at fixed temperatures, and what closing it does.

    python benchmarks/bench_modality_gap.py [--quick] [--png benchmarks/out/modality_gap.png]
        [--temperatures 0.01 0.02 0.05 0.1 0.2 0.5 1.0] [--steps 1000] [--seeds 0 1]

The gap (Liang et al. 2022) is the vector from the centre of the text
embeddings to the centre of the image embeddings, over matching (image,
caption) pairs; its length is 0 when the two clouds share a centre, and at
most 2. For each seed: the gap of the untrained course model; the gap after
training with each fixed temperature and with a learned one
(`clipedu.experiments.runs.train_run`); and zero-shot accuracy when the trained
embeddings are moved along the gap (`close_gap`: images by -lam/2 gap, class
vectors by +lam/2 gap, renormalised; lam = 1 closes it, lam < 0 widens it).
Writes the figure to --png and the numbers to the same path with .json.
--quick: three temperatures and 400 steps (about 4 minutes on one CPU core).
"""

import json
import time
from pathlib import Path

import numpy as np
import torch
from experiment_cli import (
    add_training_args,
    experiment_parser,
    finish_args,
    save_figure,
)

from clipedu.course.maps import modality_gap
from clipedu.experiments.gap import gap_vector, pair_features, shifted_accuracy
from clipedu.experiments.runs import build_run_model, setup, train_run
from clipedu.train.config import apply_overrides

LAMBDAS = [-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
SPLITS = {"zeroshot_acc": "seen pairs", "zeroshot_heldout_acc": "held-out pairs"}


def measure(model, s) -> tuple[dict, torch.Tensor]:
    img, txt = pair_features(model.eval(), s.tokenizer, s.data.retrieval_set)
    return modality_gap(img, txt), gap_vector(img, txt)


def plot(results: list[dict], temps: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    gaps = np.array([[r["fixed"][str(t)]["gap"] for t in temps] for r in results])
    axes[0].errorbar(temps, gaps.mean(0), yerr=gaps.std(0) if len(results) > 1 else None, marker="o", capsize=3,
                     label="trained at a fixed temperature")
    axes[0].axhline(np.mean([r["init"]["gap"] for r in results]), color="grey", ls="--", label="at initialisation")
    axes[0].scatter([1 / r["learned"]["logit_scale"] for r in results], [r["learned"]["gap"] for r in results],
                    marker="*", s=150, color="tab:red", zorder=3, label="learned temperature (at its final value)")
    axes[0].set(xscale="log", xlabel="temperature T", ylabel="gap |mean image - mean text|", ylim=(0, None),
                title="the modality gap")
    axes[0].legend(fontsize=8)
    for key, label in SPLITS.items():
        acc = np.array([[r["fixed"][str(t)][key] for t in temps] for r in results])
        line = axes[1].plot(temps, acc.mean(0), marker="o", label=f"{label}, as trained")[0]
        closed = np.array([[r["fixed"][str(t)]["shifted"][key][LAMBDAS.index(1.0)] for t in temps] for r in results])
        axes[1].plot(temps, closed.mean(0), marker="x", ls="--", color=line.get_color(), label=f"{label}, gap closed")
    axes[1].set(xscale="log", xlabel="temperature T", ylabel="zero-shot accuracy (48 classes)",
                title="accuracy at a fixed temperature")
    axes[1].legend(fontsize=8)
    for key, label in SPLITS.items():
        acc = np.array([r["learned"]["shifted"][key] for r in results])
        axes[2].plot(LAMBDAS, acc.mean(0), marker="o", label=label)
    axes[2].axvline(0, color="grey", ls=":", lw=1)
    axes[2].axvline(1, color="grey", ls="--", lw=1)
    axes[2].set(xlabel="shift lam (0: as trained, 1: gap closed, < 0: widened)", ylabel="zero-shot accuracy",
                title="moving the learned-temperature model along its gap")
    axes[2].legend(fontsize=8)
    for ax in axes[:2]:  # the temperatures as ticks, no minor labels
        ax.set_xticks(temps, labels=[f"{t:g}" for t in temps])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in axes:
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def main() -> None:
    p = experiment_parser(__doc__, "modality_gap", "three temperatures, 400 steps")
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    add_training_args(p, lr=3e-3)
    args = p.parse_args()
    if args.quick:
        args.temperatures, args.steps, args.train_size, args.eval_size = [0.02, 0.1, 0.5], 400, 10_000, 500
    finish_args(p, args, "modality_gap")
    png = Path(args.png)
    start = time.perf_counter()
    s = setup("shapes-tiny", train_size=args.train_size, eval_size=args.eval_size, batch_size=args.batch_size,
              steps=args.steps, warmup_steps=max(1, args.steps // 10), lr=args.lr, image_size=32, positives="diagonal")

    results = []
    for seed in args.seeds:
        init, _ = measure(build_run_model(apply_overrides(s.config, seed=seed), s.tokenizer.vocab_size), s)
        result = {"seed": seed, "init": init, "fixed": {}}
        print(f"seed {seed}: at initialisation gap {init['gap']:.3f}, pair cosine {init['pair']:.3f}, "
              f"image cone {init['image_cone']:.3f}, text cone {init['text_cone']:.3f}", flush=True)
        for t in args.temperatures + [None]:
            run = train_run(s, temperature=t, seed=seed)
            stats, gap = measure(run.model, s)
            stats.update({k: run.final[k] for k in SPLITS}, logit_scale=run.history[-1]["logit_scale"],
                         shifted=shifted_accuracy(run.model, s.tokenizer, s.data, LAMBDAS, gap))
            if t is None:
                result["learned"] = stats
            else:
                result["fixed"][str(t)] = stats
            closed = {k: stats["shifted"][k][LAMBDAS.index(1.0)] for k in SPLITS}
            print(f"  T = {1 / stats['logit_scale']:.4f}{' (learned)' if t is None else '          '}  "
                  f"gap {stats['gap']:.3f}  pair cos {stats['pair']:.3f}  cones {stats['image_cone']:.2f}/"
                  f"{stats['text_cone']:.2f}  zero-shot seen {stats['zeroshot_acc']:.3f} -> "
                  f"{closed['zeroshot_acc']:.3f}"
                  f" closed, held-out {stats['zeroshot_heldout_acc']:.3f} -> {closed['zeroshot_heldout_acc']:.3f}",
                  flush=True)
        print(f"  learned-temperature model moved along its gap, lam = {LAMBDAS}:")
        for key, acc in result["learned"]["shifted"].items():
            print(f"    {SPLITS[key]:15s}", " ".join(f"{a:.3f}" for a in acc))
        results.append(result)
    plot(results, args.temperatures, png)
    png.with_suffix(".json").write_text(json.dumps({"args": vars(args), "lambdas": LAMBDAS, "results": results},
                                                   indent=1))
    print(f"wrote {png} and {png.with_suffix('.json')} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
