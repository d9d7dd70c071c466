"""Named training presets: every setting of a run in one dataclass, and the data and model it names.

`python -m clipedu.train --preset shapes-tiny` and `train("shapes-tiny")` both
start from `PRESETS["shapes-tiny"]`; command-line flags and keyword arguments
override single fields. The whole config is stored in each checkpoint, so a
resumed run can check that it continues the same experiment.
"""

import dataclasses
from dataclasses import dataclass, field

import torch

DATA_SOURCES = ("shapes", "shapes-multi", "digits", "captions-folder")
LOSSES = ("clip", "siglip")  # the paper's softmax loss; SigLIP's sigmoid loss with a learned bias
MAX_LOGIT_SCALE = 100.0  # the paper's clamp on exp(t): the temperature stays >= 1/100

# Fields that steer a run without changing what it computes: they may differ
# between a run and its resumption.
RUN_CONTROL_FIELDS = ("device", "eval_every", "save_every", "stop_after")


@dataclass
class TrainConfig:
    preset: str = "custom"

    # data
    data: str = "shapes"  # one of DATA_SOURCES
    data_dir: str | None = None  # the folder for data="captions-folder"
    data_seed: int = 0  # which world / split to generate (shapes, digits)
    train_size: int = 20_000  # training images to generate (shapes)
    eval_size: int = 500  # images per evaluation split
    image_size: int = 32  # side of the (square) model input, in pixels
    augment: bool = False  # the paper's random square crop

    # model: a named config from clipedu.model.CONFIGS, then field overrides
    model: str = "course-vit"
    model_overrides: dict = field(default_factory=dict)
    context_length: int = 24
    tokenizer: str = "bpe"  # "bpe": train BPE merges on the training captions; "clip": CLIP's 49,408
    vocab_size: int = 1000  # upper bound for tokenizer="bpe"
    init_temperature: float = 0.07  # the paper's initial tau; logit_scale = ln(1 / tau)
    learn_temperature: bool = True  # False: tau stays at init_temperature (notebook 19)
    loss: str = "clip"  # one of LOSSES: "siglip" is the sigmoid loss (notebook 18)

    # optimisation
    steps: int = 1000
    batch_size: int = 128  # the global batch, summed over processes
    accum_steps: int = 1  # micro-batches per step (gradient accumulation)
    lr: float = 1e-3
    min_lr: float = 0.0
    warmup_steps: int = 50
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float | None = 1.0  # max global gradient norm; None disables clipping
    max_logit_scale: float = MAX_LOGIT_SCALE
    seed: int = 0  # model initialisation, batch order, captions, crops

    # run control (may change on resume)
    device: str | None = None  # None: cuda if available, else cpu
    eval_every: int = 0  # 0: evaluate only at the end
    save_every: int = 0  # 0: checkpoint only at the end (and on Ctrl-C)
    stop_after: int | None = None  # end after this step as if interrupted

    def to_dict(self) -> dict:
        """A plain dict (lists for tuples), as stored in checkpoints and metrics.json."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["model_overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_overrides.items()}
        return d

    def identity(self) -> dict:
        """The fields that define the experiment (what a resumed run must match)."""
        d = self.to_dict()
        for name in RUN_CONTROL_FIELDS:
            d.pop(name)
        return d


PRESETS: dict[str, TrainConfig] = {
    # The course default: trains on a 2-core CPU in about two and a half minutes
    # and classifies held-out colour-shape compositions zero-shot. A small ResNet
    # (BatchNorm, 8 channels wide); the held-out accuracy climbs late, after the
    # seen pairs are learnt, so the schedule is long rather than the model big.
    # The long warmup (500 steps) matters: with 50, some seeds sat for 1000+
    # steps knowing colour but not shape and ended at 0.5-0.85 held-out
    # (benchmarks/bench_shapes_tiny.py runs several seeds).
    "shapes-tiny": TrainConfig(
        preset="shapes-tiny",
        image_size=32, context_length=16,
        model="course-rn",
        model_overrides=dict(embed_dim=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                             transformer_width=64, transformer_heads=2, transformer_layers=1),
        steps=4000, batch_size=64, lr=3e-3, warmup_steps=500, weight_decay=0.1,
        eval_every=500,
    ),
    # The same world at 64 px, a wider ResNet and a bigger batch: the course's model on a GPU.
    "shapes-gpu": TrainConfig(
        preset="shapes-gpu",
        train_size=100_000, eval_size=2000, image_size=64, context_length=16,
        model="course-rn",
        model_overrides=dict(embed_dim=128, vision_layers=(1, 1, 1, 1), vision_width=32,
                             transformer_width=128, transformer_heads=2, transformer_layers=2),
        steps=4000, batch_size=256, lr=2e-3, warmup_steps=100, weight_decay=0.1,
        eval_every=500, save_every=1000,
    ),
    # Single shapes mixed with two-shape relations and counts of 1 to 4: the
    # training data for notebook 14 (CLIP's limits).
    "shapes-multi": TrainConfig(
        preset="shapes-multi",
        data="shapes-multi", image_size=32, context_length=16,
        model="course-rn",
        model_overrides=dict(embed_dim=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                             transformer_width=64, transformer_heads=2, transformer_layers=1),
        steps=1200, batch_size=64, lr=3e-3, warmup_steps=50, weight_decay=0.1,
    ),
    # scikit-learn's 8x8 handwritten digits, upscaled, with captions such as "a handwritten 7".
    "digits": TrainConfig(
        preset="digits",
        data="digits", image_size=32, context_length=16,
        model_overrides=dict(embed_dim=64, vision_layers=2, vision_width=64, vision_patch_size=8,
                             vision_heads=2, transformer_width=64, transformer_heads=2, transformer_layers=2),
        steps=400, batch_size=64, lr=2e-3, warmup_steps=40, weight_decay=0.1,
        eval_every=100,
    ),
    # A user's own captioned images (CSV, Flickr, COCO layouts): pass --data DIR.
    "captions-folder": TrainConfig(
        preset="captions-folder",
        data="captions-folder", image_size=64, augment=True, context_length=32,
        tokenizer="clip",
        model_overrides=dict(embed_dim=256, vision_layers=4, vision_width=256, vision_patch_size=8,
                             transformer_width=256, transformer_heads=4, transformer_layers=4),
        steps=2000, batch_size=128, lr=5e-4, warmup_steps=200,
        eval_every=500, save_every=500,
    ),
}


def course_preset() -> str:
    """The preset the notebooks train and load: shapes-gpu when a GPU is present, else shapes-tiny."""
    return "shapes-gpu" if torch.cuda.is_available() else "shapes-tiny"


def get_preset(name: str) -> TrainConfig:
    """A fresh copy of the named preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    return dataclasses.replace(preset, model_overrides=dict(preset.model_overrides))


def apply_overrides(config: TrainConfig, **overrides) -> TrainConfig:
    """A copy of `config` with some fields replaced; unknown names raise with the valid ones."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown TrainConfig field(s) {unknown}; valid fields: {', '.join(sorted(names))}")
    return dataclasses.replace(config, **overrides)
