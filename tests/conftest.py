"""Fixtures that several test files share (pytest finds them here; a test names one as an argument).

Helpers used by one file stay in that file.
"""

import json
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def close_figures():
    """Close every matplotlib figure a test opened, so figures do not pile up across tests."""
    yield
    if "matplotlib.pyplot" in sys.modules:  # only where a test drew something
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture
def empty_weight_caches(tmp_path, monkeypatch) -> Path:
    """No real CLIP weights anywhere: HOME (so ~/.cache/clip and the Hugging Face cache) is an empty
    folder, and CLIPEDU_WEIGHTS is unset. Returns that HOME (test_weights, test_real)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("CLIPEDU_WEIGHTS", raising=False)
    return home


@pytest.fixture(scope="session")
def tiny_vit() -> dict:
    """`model_overrides` of the course ViT at its smallest: one layer and one head per tower, width 32."""
    return dict(embed_dim=32, vision_layers=1, vision_width=32, vision_patch_size=8, vision_heads=1,
                transformer_width=32, transformer_heads=1, transformer_layers=1)


@pytest.fixture
def tiny_config(tiny_vit) -> dict:
    """TrainConfig overrides for a shapes-tiny run of about a second (test_train, test_train_options).

    Every field the tests depend on is set here, so that tuning the preset cannot change them.
    """
    return dict(train_size=300, eval_size=40, image_size=24, context_length=24, vocab_size=600, batch_size=16,
                lr=2e-3, warmup_steps=2, weight_decay=0.2, augment=False, model="course-vit",
                model_overrides=dict(tiny_vit), positives="diagonal")


@pytest.fixture
def tiny_clip(tiny_config):
    """`tiny_clip(loss="clip")`: the freshly initialised (seeded) model of a `tiny_config` run, vocabulary 600."""
    from clipedu.train.config import apply_overrides, get_preset
    from clipedu.train.setup import init_model

    def build(loss: str = "clip"):
        return init_model(apply_overrides(get_preset("shapes-tiny"), **tiny_config, loss=loss), vocab_size=600)

    return build


@pytest.fixture
def tiny_run(tiny_config):
    """`tiny_run(out, **overrides)`: a quiet shapes-tiny training run of `tiny_config` into `out`,
    without periodic evaluation unless asked; returns the final metrics."""
    from clipedu.train.loop import train

    def run(out, **overrides):
        return train("shapes-tiny", out, progress=False, **{**tiny_config, "eval_every": 0, **overrides})

    return run


@pytest.fixture
def read_history():
    """`read_history(out)`: the per-step records a training run wrote to out/metrics.json."""
    def history(out: Path) -> list[dict]:
        return json.loads((Path(out) / "metrics.json").read_text())["history"]

    return history
