"""What a training config names, built: the data, the tokenizer, the initial model (freshly
initialised, or read from a pretrained file: `resolve_config`, `start_model`), the device.

`clipedu.train.loop.train` and the experiment runs (`clipedu.experiments.runs`)
both start here, so a preset means the same data, vocabulary, initial weights
and batches wherever it is trained.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clipedu.checkpoint import FORMAT as CHECKPOINT_FORMAT
from clipedu.checkpoint import unwrap
from clipedu.data.contract import CaptionedImages
from clipedu.model import CLIP, CLIPConfig, get_config
from clipedu.tokenizer import BPETokenizer, clip_tokenizer
from clipedu.train.config import (
    DATA_SOURCES,
    LOSSES,
    POSITIVES,
    TrainConfig,
    apply_overrides,
    explicit_fields,
    finetune_config,
    get_preset,
)
from clipedu.train.distributed import DistState, init_distributed
from clipedu.weights_file import WeightsError, detect_format


@dataclass
class TrainData:
    """The training set and what evaluation needs.

    zeroshot_sets maps a metric name ("zeroshot_acc", "zeroshot_heldout_acc") to a
    labelled test set whose labels index `class_prompts` (one prompt list per class).
    retrieval_set is a held-out captioned set for Recall@K. For the shapes world, `meaning`
    holds what each training image shows and each caption states (`clipedu.data.meaning`:
    image_table [N, 5], meaning_table [N, K, 5]), and `hard` the hard evaluation suite.
    """

    train: CaptionedImages
    zeroshot_sets: dict[str, CaptionedImages]
    class_prompts: list[list[str]] | None
    retrieval_set: CaptionedImages
    meaning: tuple[torch.Tensor, torch.Tensor] | None = None
    hard: CaptionedImages | None = None


def _load_folder(root: str | None, image_size: int) -> CaptionedImages:
    """A CaptionFolder read into memory once, resized to the training resolution."""
    from clipedu.data.folders import CaptionFolder

    if root is None:
        raise ValueError("the captions-folder preset needs your data: pass --data DIR "
                         "(a folder of images with a captions CSV, Flickr or COCO file)")
    if not Path(root).is_dir():
        raise FileNotFoundError(f"data folder not found: {root}; pass --data with an existing folder")
    folder = CaptionFolder(root, image_size=image_size)
    images = torch.stack([folder[i][0] for i in range(len(folder))])
    return CaptionedImages(images, [list(c) for c in folder.captions])


def _subset(data: CaptionedImages, index: slice) -> CaptionedImages:
    return CaptionedImages(data.images[index], data.captions[index])


def load_data(config: TrainConfig) -> TrainData:
    """Generate or read the datasets a config names."""
    if config.data == "shapes":
        from clipedu.data.meaning import image_table, meaning_table
        from clipedu.data.shapes import ShapesWorld

        world = ShapesWorld(seed=config.data_seed, image_size=config.image_size)
        train, seen = world.train(config.train_size), world.test(config.eval_size, "seen")
        prompts = world.prompts()
        return TrainData(train, {"zeroshot_acc": seen, "zeroshot_heldout_acc": world.test(config.eval_size, "heldout")},
                         [prompts[name] for name in world.class_names], seen,
                         meaning=(image_table(train.attributes), meaning_table(train.captions)),
                         hard=world.test(config.eval_size, "all"))
    if config.data == "shapes-multi":
        from clipedu.data.shapes import ShapesWorld

        world = ShapesWorld(seed=config.data_seed, image_size=config.image_size)
        third = config.train_size // 3
        parts = [world.train(config.train_size - 2 * third), world.relations(third, seed=1),
                 world.counts(third, seed=1)]
        train = CaptionedImages(torch.cat([p.images for p in parts]), [c for p in parts for c in p.captions])
        seen = world.test(config.eval_size, "seen")
        prompts = world.prompts()
        return TrainData(train, {"zeroshot_acc": seen}, [prompts[name] for name in world.class_names], seen)
    if config.data == "digits":
        from clipedu.data.digits import DIGIT_WORDS, PROMPT_TEMPLATES, digits_dataset

        test = digits_dataset("test", config.data_seed, config.image_size)
        return TrainData(digits_dataset("train", config.data_seed, config.image_size), {"zeroshot_acc": test},
                         [[t.format(w) for t in PROMPT_TEMPLATES] for w in DIGIT_WORDS], test)
    if config.data == "captions-folder":
        data = _load_folder(config.data_dir, config.image_size)
        n_val = min(config.eval_size, len(data) // 5)  # the last images are kept for validation
        if n_val < 1:
            raise ValueError(f"{config.data_dir} holds {len(data)} images, too few to train and validate")
        return TrainData(_subset(data, slice(0, len(data) - n_val)), {}, None,
                         _subset(data, slice(len(data) - n_val, None)))
    raise ValueError(f"unknown data source {config.data!r}; known sources: {', '.join(DATA_SOURCES)}")


SIGLIP_INIT_SCALE, SIGLIP_INIT_BIAS = 10.0, -10.0  # the SigLIP paper's start: t' = ln 10 and b = -10


def model_config(config: TrainConfig, vocab_size: int, logit_bias: float | None = None) -> CLIPConfig:
    """The named architecture with the preset's overrides, image size and vocabulary.

    loss="siglip" adds the learned bias, started at -10 or at `logit_bias`.
    """
    arch = get_config(config.model)
    fields = dict(config.model_overrides, image_resolution=config.image_size,
                  context_length=config.context_length, vocab_size=vocab_size)
    if config.loss == "siglip":
        fields["init_logit_bias"] = SIGLIP_INIT_BIAS if logit_bias is None else logit_bias
    return CLIPConfig(**{**vars(arch), **fields})


def init_model(config: TrainConfig, vocab_size: int, logit_bias: float | None = None) -> CLIP:
    """A freshly initialised CLIP (seeded) with the paper's temperature init ln(1/tau).

    loss="siglip" starts as SigLIP does instead: scale 10 and a learned bias
    `model.logit_bias` of -10 (or `logit_bias`). learn_temperature=False freezes the scale.
    """
    if config.loss not in LOSSES:
        raise ValueError(f"unknown loss {config.loss!r}; choose one of {', '.join(LOSSES)}")
    if logit_bias is not None and config.loss != "siglip":
        raise ValueError("only the siglip loss has a bias")
    torch.manual_seed(config.seed)
    model = CLIP(model_config(config, vocab_size, logit_bias))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(SIGLIP_INIT_SCALE if config.loss == "siglip" else 1 / config.init_temperature))
    model.logit_scale.requires_grad_(config.learn_temperature)
    return model


def build_tokenizer(config: TrainConfig, captions: list[list[str]], pretrained: "Pretrained | None" = None
                    ) -> BPETokenizer:
    """The pretrained model's tokenizer; else CLIP's, or BPE merges learnt from the training captions."""
    if pretrained is not None:
        return tokenizer_from_state(pretrained.tokenizer)
    if config.tokenizer == "clip":
        return clip_tokenizer()
    if config.tokenizer == "bpe":
        return BPETokenizer.from_captions(captions, config.vocab_size)
    raise ValueError(f"unknown tokenizer {config.tokenizer!r}; use 'bpe' or 'clip'")


def tokenizer_state(config: TrainConfig, tokenizer: BPETokenizer) -> dict:
    """The tokenizer as plain lists and strings, so that a checkpoint stays weights_only-loadable."""
    if config.tokenizer == "clip":
        return {"kind": "clip"}
    return {"kind": "bpe", "merges": [list(m) for m in tokenizer.merges]}


def tokenizer_from_state(state: dict) -> BPETokenizer:
    return clip_tokenizer() if state["kind"] == "clip" else BPETokenizer([tuple(m) for m in state["merges"]])


def init_device(config: TrainConfig) -> tuple[torch.device, DistState]:
    """The device this process trains on, and its place among the processes that torchrun started."""
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dist = init_distributed(device.type)
    return (torch.device("cuda", dist.local_rank) if dist.backend == "nccl" else device), dist


def check_config(config: TrainConfig, data: TrainData, dist: DistState) -> None:
    """Raise a ValueError naming the setting that cannot work with this data and these processes."""
    if config.batch_size > len(data.train):
        raise ValueError(f"batch larger than the dataset: batch_size={config.batch_size} but the training set "
                         f"has {len(data.train)} images; use --batch-size {len(data.train)} or less, or more data")
    parts = dist.world_size * config.accum_steps
    if config.batch_size % parts:
        raise ValueError(f"batch_size={config.batch_size} must divide evenly into {dist.world_size} processes x "
                         f"{config.accum_steps} accumulation steps")
    if config.stop_after is not None and not 0 < config.stop_after <= config.steps:
        raise ValueError(f"stop_after={config.stop_after} must lie in 1..steps={config.steps}")
    if config.positives not in POSITIVES:
        raise ValueError(f"unknown positives {config.positives!r}; choose one of {', '.join(POSITIVES)}")
    if config.positives == "compatible":
        if data.meaning is None:
            raise ValueError(f"positives='compatible' needs captions whose meaning is known (data='shapes'); "
                             f"data={config.data!r} has none: use --positives diagonal")
        if config.loss != "clip":
            raise ValueError("positives='compatible' needs the clip loss; the siglip loss has one positive per row")




# ------------------------------------------------------------------ starting from a pretrained file

@dataclass
class Pretrained:
    """A model read from a weights file (float32, eval mode) and the tokenizer it speaks (`tokenizer_state`)."""

    model: CLIP
    tokenizer: dict


def saved_run(path: str | Path) -> dict | None:
    """The `extra` of a clipedu training checkpoint (its model config and tokenizer); None for other files."""
    try:
        if detect_format(Path(path).expanduser()) != "torch":
            return None
        obj = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True, mmap=True)
    except (WeightsError, RuntimeError, ValueError, OSError):
        return None  # load_clip reads the file next, and says what is wrong with it
    extra = obj.get("extra") if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT else None
    return extra if isinstance(extra, dict) and {"model_config", "tokenizer"} <= set(extra) else None


def load_pretrained(path: str | Path, allow_torchscript: bool = False) -> Pretrained:
    """The CLIP in a weights file of any format `clipedu.weights.load_clip` reads, and its tokenizer.

    OpenAI, OpenCLIP and Hugging Face files speak CLIP's BPE. A clipedu training checkpoint brings
    its own tokenizer, and the architecture details its shapes cannot tell (heads, activation).
    """
    from clipedu.weights import load_clip  # here: only a run from a file needs it

    saved = saved_run(path)
    details = {k: saved["model_config"][k] for k in ("transformer_heads", "vision_heads", "act")} if saved else {}
    # fp32 master weights. OpenAI's files hold fp16 weights, and Adam on fp16 parameters is the classic
    # source of NaNs when fine-tuning CLIP (openai/CLIP #40, #57): eps=1e-8 rounds to 0 in fp16 and the
    # second moment underflows, so the update divides by zero. load_clip returns float32 already; .float()
    # keeps it so whatever reads the file. On CUDA the loop runs the forward pass in bf16 autocast instead.
    model = load_clip(path, allow_torchscript=allow_torchscript, **details).float()
    tokenizer = saved["tokenizer"] if saved else {"kind": "clip"}
    if tokenizer["kind"] == "clip" and model.vocab_size != clip_tokenizer().vocab_size:
        raise WeightsError(f"{path} has a vocabulary of {model.vocab_size} tokens, but a file without its own "
                           f"tokenizer is read with CLIP's BPE ({clip_tokenizer().vocab_size} tokens); "
                           "fine-tune a model trained with CLIP's tokenizer")
    return Pretrained(model, tokenizer)


def resolve_config(config: TrainConfig | str, overrides: dict) -> tuple[TrainConfig, Pretrained | None]:
    """The run's config: a preset (or config) with `overrides`. With `init`, also the file's model, and the
    config fitted to it (`finetune_config`: the file's architecture, fine-tuning defaults where unset)."""
    base = get_preset(config) if isinstance(config, str) else config
    resolved = apply_overrides(base, **overrides)
    if not resolved.init:
        return resolved, None
    pretrained = load_pretrained(resolved.init, resolved.allow_torchscript)
    fitted = finetune_config(resolved, pretrained.model.config, pretrained.tokenizer["kind"],
                             explicit_fields(base, overrides))
    return fitted, pretrained


def start_model(config: TrainConfig, vocab_size: int, pretrained: Pretrained | None = None) -> CLIP:
    """The run's first model: the pretrained one, or a fresh seeded one (`init_model`).

    lock_image freezes the image tower as LiT does (Zhai et al. 2022): no gradients, so the optimizer
    leaves it out (`optim.param_groups` takes trainable parameters only); `train_mode` keeps it in eval mode.
    """
    if pretrained is None:
        model = init_model(config, vocab_size)
    else:
        torch.manual_seed(config.seed)
        model = pretrained.model
        model.logit_scale.requires_grad_(config.learn_temperature)  # the file's temperature, learned or not
    model.visual.requires_grad_(not config.lock_image)
    return model


def train_mode(model: nn.Module, config: TrainConfig) -> None:
    """Training mode, except a locked image tower: it stays the pretrained function in eval mode, so
    its BatchNorm statistics (ResNets) do not drift with the new data. Call before every step (evaluation
    puts the whole model back in training mode)."""
    model.train()
    if config.lock_image:
        unwrap(model).visual.eval()
