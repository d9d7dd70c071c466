"""CLIP's softmax loss against SigLIP's sigmoid loss across batch sizes, at equal images seen.

    python benchmarks/bench_softmax_vs_sigmoid.py [--quick] [--png benchmarks/out/softmax_vs_sigmoid.png]
        [--batch-sizes 16 32 64 128 256 512] [--images 65536] [--seeds 0 1]

For each batch size B, trains the course model (the shapes-tiny preset's
architecture, from scratch) with each loss for images // B steps, so that every
run sees the same number of (image, caption) pairs, and measures zero-shot
accuracy (48 colour-shape classes) on seen and held-out pairs
(`clipedu.experiments.runs.batch_sweep`). SigLIP starts at its paper's values
(s = 10, b = -10); a third variant starts SigLIP at the bias that matches the
batch, b = -ln(B - 1). Writes the figure to --png and the numbers to the same
path with .json. --quick: batch sizes 16, 64, 256 and 12,800 images per run
(about 5 minutes on one CPU core).
"""

import json
import time
from pathlib import Path

import numpy as np
from experiment_cli import (
    add_training_args,
    experiment_parser,
    finish_args,
    save_figure,
)

from clipedu.experiments.runs import batch_sweep, setup

VARIANTS = {"softmax (CLIP)": dict(loss="clip"), "sigmoid (SigLIP, b = -10)": dict(loss="siglip"),
            "sigmoid, b = -ln(B - 1)": dict(loss="siglip", bias="balanced")}
COLORS = ["tab:blue", "tab:orange", "tab:green"]


def indented(line: str) -> None:
    print("  " + line, flush=True)


def summarise(results: list[dict]) -> dict:
    """{variant: {batch_size: {metric: (mean, std over seeds)}}}."""
    out = {}
    for r in results:
        out.setdefault(r["variant"], {}).setdefault(r["batch_size"], []).append(r)
    return {v: {b: {k: (float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs])))
                    for k in ("zeroshot_acc", "zeroshot_heldout_acc", "t2i_r1", "logit_scale")}
                for b, rs in sorted(by_b.items())} for v, by_b in out.items()}


def plot(summary: dict, path: Path, images: int, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, layout="constrained")
    for ax, key, title in zip(axes, ("zeroshot_acc", "zeroshot_heldout_acc"), ("seen pairs", "held-out pairs")):
        for (variant, by_b), color in zip(summary.items(), COLORS):
            sizes = list(by_b)
            mean = [by_b[b][key][0] for b in sizes]
            std = [by_b[b][key][1] for b in sizes] if seeds > 1 else None
            ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=3, label=variant, color=color)
        ax.axhline(1 / 48, color="grey", ls=":", lw=1, label="chance")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, labels=[str(b) for b in sizes])
        ax.set_xlabel("batch size B (steps = images / B)")
        ax.set_title(f"zero-shot accuracy, {title}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"after {images:,d} images (48 classes)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"softmax vs sigmoid at equal images seen ({seeds} seed(s))")
    save_figure(fig, path)


def main() -> None:
    p = experiment_parser(__doc__, "softmax_vs_sigmoid", "3 batch sizes, 12,800 images per run")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512])
    p.add_argument("--images", type=int, default=65_536, help="images seen by every run")
    add_training_args(p, lr=3e-3)
    args = p.parse_args()
    if args.quick:
        args.batch_sizes, args.images, args.train_size, args.eval_size = [16, 64, 256], 12_800, 10_000, 500
    finish_args(p, args, "softmax_vs_sigmoid")
    png = Path(args.png)
    start = time.perf_counter()

    s = setup("shapes-tiny", train_size=args.train_size, eval_size=args.eval_size, image_size=32, positives="diagonal")
    results = []
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        for r in batch_sweep(s, args.batch_sizes, args.images, VARIANTS, log=indented, lr=args.lr, seed=seed):
            results.append({"seed": seed, **r})
    summary = summarise(results)
    print(f"\nzero-shot accuracy after {args.images:,d} images (mean over {len(args.seeds)} seed(s)), "
          f"seen / held-out pairs; {args.eval_size} test images each:")
    print(f"  {'B':>5s}  " + "  ".join(f"{v:>27s}" for v in summary))
    for b in args.batch_sizes:
        cells = [f"{summary[v][b]['zeroshot_acc'][0]:12.3f} / {summary[v][b]['zeroshot_heldout_acc'][0]:.3f}"
                 for v in summary]
        print(f"  {b:5d}  " + "  ".join(f"{c:>27s}" for c in cells))
    for r in results:
        if "logit_bias" in r:
            print(f"  seed {r['seed']} B {r['batch_size']:4d} {r['variant']:27s} final b {r['logit_bias']:7.2f}, "
                  f"s {r['logit_scale']:6.2f}")
    plot(summary, png, args.images, len(args.seeds))
    png.with_suffix(".json").write_text(json.dumps({"args": vars(args), "summary": summary, "results": results},
                                                   indent=1))
    print(f"wrote {png} and {png.with_suffix('.json')} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
