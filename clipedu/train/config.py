"""Named training presets: every setting of a run in one dataclass, and the data and model it names.

`python -m clipedu.train --preset shapes-tiny` and `train("shapes-tiny")` both
start from `PRESETS["shapes-tiny"]`; command-line flags and keyword arguments
override single fields. The whole config is stored in each checkpoint, so a
resumed run can check that it continues the same experiment.

A run that starts from a weights file (`init`) takes its architecture from the
file, and fine-tuning defaults for the settings nobody set (`finetune_config`).
"""

import dataclasses
from dataclasses import dataclass, field

import torch

from clipedu.model import CONFIGS, CLIPConfig, get_config

DATA_SOURCES = ("shapes", "shapes-multi", "digits", "captions-folder")
LOSSES = ("clip", "siglip")
POSITIVES = ("diagonal", "compatible")  # one right caption per image; or every caption in the batch true of it  # the paper's softmax loss; SigLIP's sigmoid loss with a learned bias
MAX_LOGIT_SCALE = 100.0  # the paper's clamp on exp(t): the temperature stays >= 1/100

# Fields that steer a run without changing what it computes: they may differ
# between a run and its resumption.
RUN_CONTROL_FIELDS = ("device", "eval_every", "save_every", "stop_after", "allow_torchscript")
# Fields added for fine-tuning, written to checkpoints only when set: the checkpoints of runs from
# scratch, saved before these fields existed, still match their configs (and are not retrained).
OPTIONAL_FIELDS = {"init": None, "lock_image": False, "allow_torchscript": False, "positives": "diagonal"}


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
    # "compatible": the targets of a row spread over every caption of the batch that is true of its
    # image (clipedu.loss.multi_positive_clip_loss; needs data="shapes", whose captions know their meaning)
    positives: str = "diagonal"

    # fine-tuning a pretrained model (finetune_config)
    init: str | None = None  # a weights file clipedu.weights.load_clip reads; None: train from scratch
    lock_image: bool = False  # LiT: the image tower stays as loaded (no gradients, eval mode)
    allow_torchscript: bool = False  # let init read OpenAI's TorchScript .pt files (see clipedu.weights_file)

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
        return {k: v for k, v in d.items() if k not in OPTIONAL_FIELDS or v != OPTIONAL_FIELDS[k]}

    def identity(self) -> dict:
        """The fields that define the experiment (what a resumed run must match)."""
        d = self.to_dict()
        for name in RUN_CONTROL_FIELDS:
            d.pop(name, None)
        return d


PRESETS: dict[str, TrainConfig] = {
    # The course default: trains from scratch in about two and a half minutes on a 2-core CPU
    # (benchmarks/bench_course_model.py runs seeds 0-4 on 1, 2 and 4 threads). A small ResNet (BatchNorm,
    # 8 channels wide) at 64 px: its last feature map is 2 x 2, so the attention pool could tell where a
    # shape is (at 32 px it is 1 x 1). Multi-positive targets (positives="compatible"): in this world most
    # rows of a batch of 64 have another caption that is true of their image (benchmarks/bench_positives.py
    # compares CLIP's one-positive targets on 3 seeds).
    "shapes-tiny": TrainConfig(
        preset="shapes-tiny",
        image_size=64, context_length=16,
        model="course-rn",
        model_overrides=dict(embed_dim=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                             transformer_width=64, transformer_heads=2, transformer_layers=1),
        steps=2200, batch_size=64, lr=3e-3, warmup_steps=200, weight_decay=0.1, positives="compatible",
        eval_every=300,
    ),
    # The same world at 64 px, a wider ResNet and a bigger batch: the course's model on a GPU.
    "shapes-gpu": TrainConfig(
        preset="shapes-gpu",
        train_size=100_000, eval_size=2000, image_size=64, context_length=16,
        model="course-rn",
        model_overrides=dict(embed_dim=128, vision_layers=(1, 1, 1, 1), vision_width=32,
                             transformer_width=128, transformer_heads=2, transformer_layers=2),
        steps=4000, batch_size=256, lr=2e-3, warmup_steps=100, weight_decay=0.1, positives="compatible",
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


# ------------------------------------------------------------------ fine-tuning a pretrained file

# Fine-tuning moves pretrained weights a little: a learning rate 50-100x below training from scratch, a
# short warmup and decoupled weight decay on the matrices only (optim.no_weight_decay), as WiSE-FT
# fine-tunes CLIP (Wortsman et al. 2022: AdamW, lr 3e-5, weight decay 0.1, warmup, cosine) and
# FLYP (Goyal et al. 2023: lr 1e-5). Only the settings a run leaves at its preset's value take them.
FINETUNE_DEFAULTS = {"lr": 1e-5, "weight_decay": 0.1}
FINETUNE_MAX_WARMUP = 100  # warmup: a tenth of the run, at most this many steps
FILE_ARCH_FIELDS = ("embed_dim", "vision_layers", "vision_width", "vision_patch_size", "vision_heads",
                    "transformer_width", "transformer_heads", "transformer_layers", "act")


def explicit_fields(config: TrainConfig, overrides: dict) -> set[str]:
    """The fields a user set: those in `overrides`, and those where `config` differs from its preset."""
    preset = get_preset(config.preset) if config.preset in PRESETS else TrainConfig(preset=config.preset)
    changed = {f.name for f in dataclasses.fields(TrainConfig) if getattr(config, f.name) != getattr(preset, f.name)}
    return changed | set(overrides)


def finetune_config(config: TrainConfig, arch: CLIPConfig, tokenizer: str, explicit: set[str]) -> TrainConfig:
    """`config` fitted to a pretrained file of architecture `arch` that speaks `tokenizer` ("clip" or "bpe").

    The file decides the architecture: image size, context length, vocabulary, the loss (SigLIP when
    the file has a bias) and the model (model_overrides then hold every architecture field, so
    `setup.model_config` builds the file's shapes). A field in `explicit` that disagrees with the file,
    or a preset that speaks another tokenizer, raises a ValueError that says what to do. Optimisation
    fields outside `explicit` take FINETUNE_DEFAULTS.
    """
    from_file = {"image_size": arch.image_resolution, "context_length": arch.context_length,
                 "vocab_size": arch.vocab_size, "loss": "clip" if arch.init_logit_bias is None else "siglip",
                 "tokenizer": tokenizer}
    asked = {k: getattr(config, k) for k in from_file if k in explicit or k == "tokenizer"}
    if "model" in explicit:
        asked.update({k: v for k, v in vars(get_config(config.model)).items() if k != "init_logit_bias"})
    if "model_overrides" in explicit:
        asked.update(config.model_overrides)
    file_values = {**from_file, **{k: v for k, v in vars(arch).items() if k != "init_logit_bias"}}
    disagree = [f"{k}: the file has {file_values.get(k, '(no such field)')!r}, the run asks for {v!r}"
                for k, v in asked.items() if file_values.get(k) != (tuple(v) if isinstance(v, list) else v)]
    if disagree:
        raise ValueError(
            f"{config.init} does not fit this run (preset {config.preset!r}):\n  " + "\n  ".join(disagree)
            + "\nA run started from a weights file takes its architecture, tokenizer and preprocessing from the "
            "file: drop these settings, or use a preset that speaks the file's tokenizer (captions-folder, "
            "with --data DIR, for CLIP's BPE; the shapes and digits presets train their own).")
    model = next((name for name, c in CONFIGS.items()
                  if c == dataclasses.replace(arch, act="quick_gelu", init_logit_bias=None)), config.model)
    defaults = {**FINETUNE_DEFAULTS, "warmup_steps": min(FINETUNE_MAX_WARMUP, config.steps // 10)}
    return dataclasses.replace(config, **from_file, model=model,
                               model_overrides={k: getattr(arch, k) for k in FILE_ARCH_FIELDS},
                               **{k: v for k, v in defaults.items() if k not in explicit})
