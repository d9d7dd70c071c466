"""The course's trained model on demand: load a cached run, or train it once.

Later notebooks need a trained model without spending minutes on it each
time. `load_course_model("shapes-tiny")` keeps one run per preset under
`<repo>/.cache/clipedu/<preset>/` and retrains it only when the checkpoint is
missing, unreadable, from another config, or unfinished (then it resumes).
Two notebooks asking at once do not both train: the second waits for the
first (a lock file beside the run's folder) and then loads its result.
"""

import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

from clipedu.checkpoint import (
    CheckpointError,
)
from clipedu.model import CLIP
from clipedu.tokenizer import BPETokenizer
from clipedu.train.config import (
    TrainConfig,
    apply_overrides,
    course_preset,
    get_preset,
)
from clipedu.train.state import load_model, run_checkpoint

_CHECKOUT = Path(__file__).resolve().parents[2]  # the repository, when clipedu runs from a checkout
# <checkout>/.cache/clipedu in a checkout (make clean removes it); ~/.cache/clipedu for an installed package
CACHE_DIR = (_CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else Path.home()) / ".cache" / "clipedu"
LOCK_QUIET_SECONDS = 3.0  # wait this long for another process's lock before saying so


# ------------------------------------------------------------------ a run's files


@contextlib.contextmanager
def cache_lock(folder: Path):
    """Hold `<folder>.lock` while checking or training the run in `folder`; wait if another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; overlapping runs still leave whole files (all writes are atomic)
        yield
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        deadline = time.monotonic() + LOCK_QUIET_SECONDS  # a load takes a second: wait for it silently
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    print(f"another process is training (or loading) {folder}; waiting for it to finish ...",
                          file=sys.stderr, flush=True)
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    break
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_course_model(preset: str | None = None, cache_dir: str | Path | None = None,
                      progress: bool = True, **overrides) -> tuple[CLIP, BPETokenizer, dict]:
    """(model, tokenizer, final metrics) of `preset`, trained on first use and cached.

    preset=None takes `course_preset()`: shapes-tiny on a CPU, shapes-gpu on a GPU.
    `overrides` change TrainConfig fields; a cached run with other settings is retrained.
    """
    preset = preset or course_preset()
    config = apply_overrides(get_preset(preset), **overrides)
    out = Path(cache_dir) if cache_dir is not None else CACHE_DIR / preset
    with cache_lock(out):
        return _load_or_train(config, out, progress)


def _load_or_train(config: TrainConfig, out: Path, progress: bool) -> tuple[CLIP, BPETokenizer, dict]:
    """The finished run in `out`; or finish an interrupted one there, or train it afresh."""
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.json"
    resume = False
    if ckpt_path.is_file():
        try:
            ckpt = run_checkpoint(out, config)
            metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
            if ckpt["step"] == config.steps and metrics.get("final"):
                model, tokenizer, _ = load_model(ckpt_path)
                return model, tokenizer, metrics["final"]
            resume = True  # an interrupted run: finish it
        except (CheckpointError, json.JSONDecodeError):
            shutil.rmtree(out)  # corrupt or stale (the preset changed): start again
    from clipedu.train.loop import train  # here, not at the top: loop.py imports this module

    final = train(config, out, resume=resume, progress=progress)
    model, tokenizer, _ = load_model(ckpt_path)
    return model, tokenizer, final
