"""Learning curve of the course's default preset, shapes-tiny, trained from scratch.

    python benchmarks/bench_shapes_tiny.py [--out benchmarks/out] [--seeds 0 1 2] [--threads 2]

Trains the preset once per seed and reports held-out zero-shot accuracy
(colour-shape pairs never seen in training, classified among all 48 classes
from text prompts alone) against training seconds and images seen, as a table
and as a figure (OUT/shapes_tiny_curve.png). The acceptance target of the
preset is zeroshot_heldout_acc >= 0.90 within 180 s of training on a 2-core CPU.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from clipedu.train.config import get_preset
from clipedu.train.loop import train


def run_seed(seed: int, out: Path, eval_every: int) -> dict:
    start = time.perf_counter()
    final = train("shapes-tiny", out / f"seed{seed}", seed=seed, eval_every=eval_every, progress=False)
    history = json.loads((out / f"seed{seed}" / "metrics.json").read_text())["history"]
    curve = [(h["step"], h["seconds"], h["images_seen"], h["zeroshot_heldout_acc"], h["zeroshot_acc"])
             for h in history if "zeroshot_heldout_acc" in h]
    return {"seed": seed, "final": final, "curve": curve, "wall": time.perf_counter() - start}


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for run in runs:
        _, seconds, images, heldout, _ = zip(*run["curve"])
        axes[0].plot(seconds, heldout, marker="o", label=f"seed {run['seed']}")
        axes[1].plot(images, heldout, marker="o", label=f"seed {run['seed']}")
    for ax, xlabel in zip(axes, ("training seconds", "images seen")):
        ax.axhline(0.9, color="grey", ls="--", lw=1)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].axvline(180, color="grey", ls=":", lw=1)
    axes[0].set_ylabel("held-out zero-shot accuracy (48 classes)")
    axes[1].legend()
    fig.suptitle("shapes-tiny from scratch")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/out", help="folder for runs, the table and the PNG")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="one run per seed: held-out accuracy varies a lot from seed to seed")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (CI machines have 2 cores)")
    p.add_argument("--eval-every", type=int, default=500)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = get_preset("shapes-tiny")
    print(f"shapes-tiny: {config.steps} steps x batch {config.batch_size}, image {config.image_size} px, "
          f"{torch.get_num_threads()} threads")

    runs = [run_seed(seed, out, args.eval_every) for seed in args.seeds]
    print(f"\n{'seed':>4} {'step':>5} {'seconds':>8} {'images':>8} {'heldout':>8} {'seen':>6}")
    for run in runs:
        for step, seconds, images, heldout, seen in run["curve"]:
            print(f"{run['seed']:>4} {step:>5} {seconds:>8.1f} {images:>8} {heldout:>8.3f} {seen:>6.3f}")
    print("\nfinal (seconds = training time without evaluation):")
    for run in runs:
        f = run["final"]
        verdict = "PASS" if f["zeroshot_heldout_acc"] >= 0.9 and f["seconds"] <= 180 else "MISS"
        print(f"  seed {run['seed']}: heldout {f['zeroshot_heldout_acc']:.3f}, seen {f['zeroshot_acc']:.3f}, "
              f"i2t R@1 {f['i2t_r1']:.3f}, t2i R@1 {f['t2i_r1']:.3f}, {f['seconds']:.1f} s training "
              f"({run['wall']:.0f} s with setup and evaluation)  {verdict} (>= 0.90 within 180 s)")
    print("\nfirst evaluation at or above each level (seconds of training, images seen):")
    for run in runs:
        for level in (0.90, 0.95):
            hit = next(((s, i) for _, s, i, h, _ in run["curve"] if h >= level), None)
            where = f"{hit[0]:.0f} s, {hit[1]:,} images" if hit else "not reached"
            print(f"  seed {run['seed']}: heldout >= {level:.2f}: {where}")
    passed = sum(r["final"]["zeroshot_heldout_acc"] >= 0.9 and r["final"]["seconds"] <= 180 for r in runs)
    print(f"\ntarget met by {passed} of {len(runs)} seeds")
    png = out / "shapes_tiny_curve.png"
    plot(runs, png)
    print(f"figure: {png}")


if __name__ == "__main__":
    main()
