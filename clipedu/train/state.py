"""A training run on disk: its checkpoint and metrics (TrainState), and a trained model read back (load_model)."""

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from clipedu.checkpoint import (
    CheckpointError,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    write_json,
)
from clipedu.model import CLIP, CLIPConfig
from clipedu.tokenizer import BPETokenizer
from clipedu.train.config import (
    RUN_CONTROL_FIELDS,
    TrainConfig,
)
from clipedu.train.setup import tokenizer_from_state


@dataclass
class TrainState:
    """What a checkpoint restores besides the config; the main process alone writes it under `out`."""

    out: Path
    config: TrainConfig
    model: CLIP
    optimizer: torch.optim.Optimizer
    tokenizer: dict  # setup.tokenizer_state
    is_main: bool
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # training time so far: wall time of the loop minus evaluation

    def restore(self, checkpoint: dict) -> int:
        """Load the checkpoint's weights, optimizer, random state, history and clock; return its step."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        set_rng_state(checkpoint["rng_state"])
        self.history, self.seconds = checkpoint["extra"]["history"], checkpoint["extra"]["seconds"]
        return checkpoint["step"]

    def save(self, step: int) -> None:
        """out/checkpoint.pt, atomically."""
        if self.is_main:
            extra = {"tokenizer": self.tokenizer, "history": self.history, "seconds": self.seconds,
                     "model_config": vars(self.model.config)}
            save_checkpoint(self.out / "checkpoint.pt", model=self.model, optimizer=self.optimizer, step=step,
                            config=self.config.to_dict(), rng_state=get_rng_state(), extra=extra)

    def save_interrupted(self, start: int) -> None:
        """After Ctrl-C: the checkpoint and metrics of the last completed step, and how to go on."""
        step = self.history[-1]["step"] if self.history else start
        self.save(step)
        self.write_metrics()
        if self.is_main:
            print(f"\ninterrupted: saved step {step} to {self.out / 'checkpoint.pt'}; continue with --resume",
                  file=sys.stderr)

    def write_metrics(self, final: dict | None = None) -> None:
        """out/metrics.json: the config, the history and the final metrics (None until the run ends)."""
        if self.is_main:
            write_json(self.out / "metrics.json", {"config": self.config.to_dict(), "history": self.history,
                                                   "final": final})


def run_checkpoint(out: Path, config: TrainConfig) -> dict:
    """out/checkpoint.pt, to continue: a CheckpointError unless it holds the experiment `config` names."""
    path = out / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: no checkpoint at {path}; drop --resume to start afresh")
    return load_checkpoint(path, expected_config=config.to_dict(), ignore_fields=RUN_CONTROL_FIELDS)


def load_model(path: str | Path) -> tuple[CLIP, BPETokenizer, dict]:
    """(model in eval mode, its tokenizer, the checkpoint dict) from a training checkpoint."""
    ckpt = load_checkpoint(path)
    if "model_config" not in ckpt["extra"] or "tokenizer" not in ckpt["extra"]:
        raise CheckpointError(f"{path} was not written by clipedu.train (no model config or tokenizer in it)")
    model = CLIP(CLIPConfig(**ckpt["extra"]["model_config"]))  # with SigLIP's logit_bias if it was trained so
    model.load_state_dict(ckpt["model"])
    return model.eval(), tokenizer_from_state(ckpt["extra"]["tokenizer"]), ckpt
