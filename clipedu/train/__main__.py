"""`python -m clipedu.train`: train CLIP from a named preset, with flags for the common overrides.

    python -m clipedu.train --preset shapes-tiny --out runs/tiny
    torchrun --standalone --nproc_per_node=2 -m clipedu.train --preset shapes-tiny --out runs/ddp
    python -m clipedu.train --preset captions-folder --data DIR --init ViT-B-32.safetensors --out runs/ft
    python -m clipedu.train --data DIR --init open_clip_model.safetensors --lock-image --out runs/lit

--init fine-tunes the weights in a file (OpenAI, OpenCLIP, Hugging Face or clipedu; any file
clipedu.weights.load_clip reads): the architecture, tokenizer and preprocessing come from the file,
and lr, warmup and weight decay default to fine-tuning values (config.FINETUNE_DEFAULTS) unless given.
--lock-image freezes the image tower (LiT).

Writes OUT/checkpoint.pt and OUT/metrics.json and prints the final metrics.
"""

import argparse
import os
import sys

from clipedu.train.config import POSITIVES, PRESETS
from clipedu.train.loop import train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m clipedu.train",
                                description="Train CLIP from scratch, or fine-tune pretrained weights (--init).")
    p.add_argument("--preset", help=f"one of: {', '.join(PRESETS)} (default: shapes-tiny; "
                                    "captions-folder with --init)")
    p.add_argument("--out", required=True, help="folder for checkpoint.pt and metrics.json")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup-steps", type=int, dest="warmup_steps")
    p.add_argument("--weight-decay", type=float, dest="weight_decay")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=["cpu", "cuda", "mps"])
    p.add_argument("--save-every", type=int, dest="save_every")
    p.add_argument("--eval-every", type=int, dest="eval_every")
    p.add_argument("--stop-after", type=int, dest="stop_after", help="end after this step, as if interrupted")
    p.add_argument("--accum-steps", type=int, dest="accum_steps", help="micro-batches per step")
    p.add_argument("--data", dest="data_dir", help="your data folder (preset captions-folder)")
    p.add_argument("--positives", choices=POSITIVES,
                   help="diagonal: one right caption per image (CLIP); compatible: every caption of the batch "
                        "that is true of the image counts as right (multi-positive loss; shapes data only)")
    p.add_argument("--init", help="fine-tune the weights in this file (any format clipedu.weights.load_clip reads)")
    p.add_argument("--lock-image", action="store_true", dest="lock_image",
                   help="freeze the image tower: train the text tower only (LiT)")
    p.add_argument("--allow-torchscript", action="store_true", dest="allow_torchscript",
                   help="let --init read OpenAI's TorchScript .pt files (runs torch.jit.load)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-eval", action="store_true", help="skip all evaluation")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fields = ("steps", "batch_size", "lr", "warmup_steps", "weight_decay", "seed", "device", "save_every",
              "eval_every", "stop_after", "accum_steps", "data_dir", "init", "positives")
    overrides = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    overrides.update({k: True for k in ("lock_image", "allow_torchscript") if getattr(args, k)})
    preset = args.preset or ("captions-folder" if args.init else "shapes-tiny")
    try:
        metrics = train(preset, args.out, resume=args.resume, evaluate_model=not args.no_eval,
                        progress=not args.no_progress, **overrides)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary line, not one per process
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
