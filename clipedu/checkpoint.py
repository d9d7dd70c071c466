"""Checkpoints: written atomically, loaded with `weights_only=True`.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
`torch.load(..., weights_only=True)` can read it without running any pickled
code. The model part is `model.state_dict()` with openai/CLIP's key names, so
`clipedu.model.build_model(ckpt["model"])` rebuilds the network.

Writes go to a temporary file in the same folder followed by `os.replace`, which
is atomic: a crash (or Ctrl-C) mid-write leaves the previous checkpoint intact.
"""

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from clipedu.errors import ClipeduError

FORMAT = "clipedu-checkpoint-v1"


class CheckpointError(ClipeduError, RuntimeError):
    """A checkpoint file that cannot be used: corrupt, foreign, or from another config."""


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel (its keys carry a `module.` prefix)."""
    return getattr(model, "module", model)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` then move the temp file onto `path` in one atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:  # make sure the bytes are on disk before the rename
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)

    atomic_write(path, write)


def get_rng_state() -> dict:
    """Every random generator's state, as tensors and plain lists (weights_only-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    step: int,
    config: dict,
    rng_state: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Save model (openai keys), optimizer, step, config and RNG states atomically."""
    state = {
        "format": FORMAT,
        "step": int(step),
        "config": dict(config),
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng_state": rng_state if rng_state is not None else get_rng_state(),
        "extra": extra or {},
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def config_diff(saved: dict, expected: dict) -> list[str]:
    """Human-readable lines `field: saved X, now Y` for every field that differs."""
    lines = []
    for key in sorted(set(saved) | set(expected)):
        a, b = saved.get(key, "<missing>"), expected.get(key, "<missing>")
        if a != b:
            lines.append(f"{key}: checkpoint has {a!r}, expected {b!r}")
    return lines


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    expected_config: dict | None = None,
    ignore_fields: Sequence[str] = (),
    map_location: str | torch.device = "cpu",
) -> dict:
    """Read a checkpoint (weights_only=True), check its config, optionally restore into
    `model` and `optimizer`. Returns the checkpoint dict.

    expected_config: raise CheckpointError listing every differing field (except
    `ignore_fields`, settings allowed to change between runs).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): "
            f"{type(e).__name__}: {e}. Delete it and train again."
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a clipedu checkpoint (expected a dict with format={FORMAT!r}). "
            "To load openai/open_clip weights use clipedu.model.build_model(state_dict)."
        )
    if expected_config is not None:
        saved = {k: v for k, v in ckpt["config"].items() if k not in ignore_fields}
        expected = {k: v for k, v in expected_config.items() if k not in ignore_fields}
        diff = config_diff(saved, expected)
        if diff:
            raise CheckpointError(
                f"{path} was saved with a different config:\n  " + "\n  ".join(diff)
                + "\nUse the same settings, or a fresh output folder."
            )
    if model is not None:
        unwrap(model).load_state_dict(ckpt["model"])
    if optimizer is not None:
        if ckpt["optimizer"] is None:
            raise CheckpointError(f"{path} holds no optimizer state, so training cannot resume from it")
        optimizer.load_state_dict(ckpt["optimizer"])
    return ckpt
