"""The CLIP paper's efficiency experiment (its Figure 2) on ShapesWorld, full version.

    python benchmarks/bench_efficiency.py [--quick] [--png benchmarks/out/efficiency.png] [--steps 3000] [--seeds 0 1]

Trains one image encoder three ways on the same batches (`clipedu.experiments.objectives`):
a transformer that predicts the caption, a bag-of-words predictor, and the
bag-of-words contrastive objective. Zero-shot accuracy (48 colour-shape
classes) against images seen, and the images each objective needs to reach
given accuracies, set beside the paper's 3x (bag-of-words prediction over
the transformer) and 4x (contrastive over bag-of-words prediction).
Writes the figure to --png and the curves and ratios to the same path with .json.
--quick: 600 steps on 10,000 images, 300 test images (about 3 minutes on one CPU core; the full run about 12).
"""

import json
import math
import time
from pathlib import Path

import numpy as np
from experiment_cli import (
    add_training_args,
    experiment_parser,
    finish_args,
    save_figure,
)

from clipedu.experiments.efficiency import compare_objectives, images_to_reach
from clipedu.experiments.objectives import LABELS, OBJECTIVES

COLORS = {"transformer": "tab:blue", "bow_prediction": "tab:orange", "bow_contrastive": "tab:green"}
PAPER = {("transformer", "bow_prediction"): 3.0, ("bow_prediction", "bow_contrastive"): 4.0,
         ("transformer", "bow_contrastive"): 12.0}


def mean_curves(runs_per_seed: list[dict]) -> dict:
    """{name: (images_seen, mean accuracy over seeds)} at the evaluation steps."""
    curves = {}
    for name in runs_per_seed[0]:
        points = [[(h["images_seen"], h["zeroshot_acc"]) for h in runs[name] if "zeroshot_acc" in h]
                  for runs in runs_per_seed]
        seen = [x for x, _ in points[0]]
        curves[name] = (seen, np.mean([[y for _, y in p] for p in points], axis=0).tolist())
    return curves


def ratios(curves: dict, target: float) -> dict:
    reach = {name: images_to_reach(*curves[name], target) for name in curves}
    return {"target": target, "images_to_reach": reach,
            "ratios": {f"{slow}/{fast}": reach[slow] / reach[fast] for slow, fast in PAPER
                       if slow in reach and fast in reach}}


def plot(curves: dict, result: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for name, (seen, acc) in curves.items():
        ax.plot(seen, acc, marker="o", ms=3, color=COLORS[name], label=LABELS[name])
    target, reach = result["target"], result["images_to_reach"]
    ax.axhline(target, color="grey", ls="--", lw=1)
    names = [n for n in OBJECTIVES if n in reach and math.isfinite(reach[n])]
    for k, (slow, fast) in enumerate(zip(names, names[1:])):
        ax.annotate("", xy=(reach[fast], target), xytext=(reach[slow], target),
                    arrowprops=dict(arrowstyle="->", color="black"))
        ax.text(math.sqrt(reach[slow] * reach[fast]), target + (0.03 if k % 2 == 0 else -0.06),
                f"{reach[slow] / reach[fast]:.1f}x (paper {PAPER[(slow, fast)]:.0f}x)", ha="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("images seen")
    ax.set_ylabel("zero-shot accuracy (48 classes)")
    ax.axhline(1 / 48, color="grey", ls=":", lw=1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def main() -> None:
    p = experiment_parser(__doc__, "efficiency", "600 steps, 10,000 training and 300 test images")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=75)
    add_training_args(p, lr=2e-3, eval_name="--test-size")
    p.add_argument("--targets", type=float, nargs="+", default=[0.25, 0.5, 0.75],
                   help="accuracies at which to compare the objectives (the figure marks the middle one)")
    args = p.parse_args()
    if args.quick:
        args.steps, args.train_size, args.test_size, args.eval_every = 600, 10_000, 300, 50
        args.targets = [0.1, 0.15, 0.2]
    finish_args(p, args, "efficiency")

    start = time.perf_counter()
    png = Path(args.png)
    cache = png.parent / f"{png.stem}_runs"  # one file per (seed, objective): a killed run resumes where it was
    cache.mkdir(parents=True, exist_ok=True)
    runs_per_seed = []
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        runs = {}
        for name in OBJECTIVES:
            path = cache / (f"seed{seed}_{name}_{args.steps}x{args.batch_size}_n{args.train_size}_test{args.test_size}"
                            f"_eval{args.eval_every}_lr{args.lr}.json")
            if path.is_file():
                runs[name] = json.loads(path.read_text())
                print(f"  {name}: loaded from {path}", flush=True)
                continue
            runs[name] = compare_objectives(
                steps=args.steps, batch_size=args.batch_size, train_size=args.train_size, test_size=args.test_size,
                eval_every=args.eval_every, lr=args.lr, seed=seed, names=(name,),
                log=lambda line: print("  " + line, flush=True))[0][name]
            path.write_text(json.dumps(runs[name]))
        runs_per_seed.append(runs)
    curves = mean_curves(runs_per_seed)
    common = min(max(acc) for _, acc in curves.values())  # the best accuracy that every objective reaches
    results = [ratios(curves, t) for t in sorted(set(args.targets) | {round(common, 4)})]
    for result in results:
        note = ", the best the slowest objective reached" if result["target"] == round(common, 4) else ""
        print(f"\nimages seen to reach {result['target']:.1%} zero-shot accuracy "
              f"(mean of {len(args.seeds)} seed(s){note}):")
        for name, n in result["images_to_reach"].items():
            print(f"  {LABELS[name]:35s} {n:10,.0f}" if math.isfinite(n) else f"  {LABELS[name]:35s} not reached")
        for (slow, fast), paper in PAPER.items():
            r = result["ratios"][f"{slow}/{fast}"]
            shown = f"{r:.1f}x" if math.isfinite(r) else "  -  "
            print(f"  {slow} / {fast}: {shown}   (paper: {paper:.0f}x)")

    reached = [r for r in results if all(math.isfinite(n) for n in r["images_to_reach"].values())]
    marked = reached[len(reached) // 2]  # the middle target that every objective reaches
    title = (f"ShapesWorld, batch {args.batch_size}, {args.steps} steps, "
             f"{len(args.seeds)} seed(s): the paper's Figure 2 in miniature")
    plot(curves, marked, png, title)
    png.with_suffix(".json").write_text(json.dumps(
        {"args": vars(args), "curves": curves, "comparisons": results, "runs": runs_per_seed}, indent=1))
    print(f"\nwrote {png} and {png.with_suffix('.json')} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
