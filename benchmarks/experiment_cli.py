"""What the experiment benchmarks share: their command line and how they save a figure.

Each script writes benchmarks/out/NAME.png (NAME_quick.png with --quick) and
runs on `--threads` torch threads (1 by default: steady timings on a shared
machine).
"""

import argparse
from pathlib import Path

import torch


def experiment_parser(doc: str, name: str, quick_help: str) -> argparse.ArgumentParser:
    """A parser with --png (default benchmarks/out/NAME.png), --quick and --threads."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--png", default=f"benchmarks/out/{name}.png", help="where to write the figure")
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p


def add_training_args(p: argparse.ArgumentParser, lr: float, eval_name: str = "--eval-size") -> None:
    """The options of the short training runs: learning rate, data sizes, seeds."""
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--train-size", type=int, default=20_000)
    p.add_argument(eval_name, type=int, default=1000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])


def finish_args(p: argparse.ArgumentParser, args: argparse.Namespace, name: str) -> argparse.Namespace:
    """--quick writes NAME_quick.png unless --png was given; set the thread count."""
    if args.quick and args.png == p.get_default("png"):
        args.png = f"benchmarks/out/{name}_quick.png"
    torch.set_num_threads(args.threads)
    return args


def save_figure(fig, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
