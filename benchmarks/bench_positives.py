"""One positive per image (CLIP's diagonal) against every true caption of the batch (multi-positive), 3 seeds.

    python benchmarks/bench_positives.py [--out benchmarks/out/positives] [--seeds 0 1 2]

Trains the course preset (shapes-tiny) with --positives diagonal and with
--positives compatible, on 2 threads, once per seed; everything else is equal.
For each run it reports the final metrics and, on 20 fresh batches of 64
training pairs (`clipedu.experiments.positives.batch_metrics`), the diagonal
loss and ln(true captions per row) (its floor for a model that scores true captions alike), the
in-batch accuracy (top caption is the row's own) and the true-caption accuracy
(top caption is true of the image). Prints mean +/- standard error over seeds
and the paired difference, and draws OUT/positives.png with error bars.
Runs finished earlier (same config) are read, not retrained; the 2-thread runs
of bench_course_model.py are reused when --reuse points at their folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from bench_course_model import run

from clipedu.experiments.evidence import describe_difference, mean_and_se, paired_difference
from clipedu.experiments.positives import batch_metrics
from clipedu.train.config import get_preset
from clipedu.train.setup import load_data
from clipedu.train.state import load_model

MODES = ("diagonal", "compatible")
METRICS = [("zeroshot_heldout_acc", "held-out zero-shot (48)"), ("fine_zeroshot_acc", "fine zero-shot (864)"),
           ("retrieval_r1", "full-caption R@1"), ("inbatch_acc", "in-batch acc: own caption"),
           ("inbatch_true_acc", "in-batch acc: a true caption"), ("clip_loss", "diagonal loss (fresh batches)"),
           ("indifferent_floor", "ln(true captions per row)")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/out/positives")
    p.add_argument("--reuse", default="benchmarks/out/course_model",
                   help="bench_course_model.py's folder: its 2-thread runs of the default are reused")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eval-every", type=int, default=300)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    default = get_preset("shapes-tiny").positives
    data = load_data(get_preset("shapes-tiny"))

    results: dict[str, list[dict]] = {m: [] for m in MODES}
    for mode in MODES:
        for seed in args.seeds:
            folder = (Path(args.reuse) / f"seed{seed}_threads2" if mode == default and args.reuse
                      else out / f"{mode}_seed{seed}")
            overrides = dict(seed=seed, eval_every=args.eval_every)
            if mode != default:
                overrides["positives"] = mode
            final = run(folder, 2, **overrides)["final"]
            model, tokenizer, _ = load_model(folder / "checkpoint.pt")
            row = {**final, **batch_metrics(model.eval(), tokenizer, data), "seed": seed}
            results[mode].append(row)
            print(f"{mode:10s} seed {seed}: " + ", ".join(f"{k} {row[k]:.3f}" for k, _ in METRICS), flush=True)

    print(f"\n{'metric':32s} {'diagonal':>17s} {'compatible':>17s}   compatible - diagonal (paired by seed)")
    summary = {}
    for key, label in METRICS:
        cols = {m: [r[key] for r in results[m]] for m in MODES}
        stats = {m: mean_and_se(cols[m]) for m in MODES}
        diff = paired_difference(cols["compatible"], cols["diagonal"])
        summary[key] = {"diagonal": stats["diagonal"], "compatible": stats["compatible"], "difference": diff}
        print(f"{label:32s} " + " ".join(f"{stats[m][0]:8.3f} +/- {stats[m][1]:.3f}" for m in MODES)
              + "   " + describe_difference(*diff))
    fnr = results[default][0]["false_negative_rate"]
    print(f"\nfalse-negative rate of the training batches (unique-caption sampler, batch 64): {fnr:.3f}")
    (out / "positives.json").write_text(json.dumps({"seeds": args.seeds, "runs": results, "summary": summary},
                                                   indent=1))
    plot(summary, out / "positives.png", len(args.seeds))
    print(f"table: {out / 'positives.json'}\nfigure: {out / 'positives.png'}")


def plot(summary: dict, path: Path, n_seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accuracy = [k for k, _ in METRICS if k not in ("clip_loss", "indifferent_floor")]
    labels = dict(METRICS)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 1.2]})
    x = torch.arange(len(accuracy)).float()
    for j, mode in enumerate(MODES):
        means = [summary[k][mode][0] for k in accuracy]
        errs = [summary[k][mode][1] for k in accuracy]
        axes[0].bar(x + (j - 0.5) * 0.38, means, 0.38, yerr=errs, capsize=3, label=f"positives={mode}")
    axes[0].set_xticks(x, [labels[k] for k in accuracy], rotation=15, ha="right", fontsize=8)
    axes[0].set_ylabel("accuracy")
    axes[0].set_ylim(0, 1)
    axes[0].set_title(f"mean +/- standard error over {n_seeds} seeds")
    axes[0].legend(fontsize=8)
    for j, mode in enumerate(MODES):
        axes[1].bar(j, summary["clip_loss"][mode][0], 0.6, yerr=summary["clip_loss"][mode][1], capsize=3,
                    color=f"C{j}")
    floor = summary["indifferent_floor"]["diagonal"][0]
    axes[1].axhline(floor, color="black", ls="--", lw=1, label=f"ln(true captions) {floor:.2f}")
    axes[1].set_xticks([0, 1], MODES)
    axes[1].set_ylabel("diagonal CLIP loss on fresh batches (nats)")
    axes[1].set_title("diagonal loss and ln(true captions)")
    axes[1].legend(fontsize=8)
    fig.suptitle("shapes-tiny trained with one positive per image or with every true caption")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
