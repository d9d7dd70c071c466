"""What a training config names, built: the data, the tokenizer, the freshly initialised model,
the device, and each step's batch (`step_inputs`: this process's slice of it).

`clipedu.train.loop.train` and the experiment runs (`clipedu.experiments.runs`)
both start here, so a preset means the same data, vocabulary, initial weights
and batches wherever it is trained.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from clipedu.data.contract import CaptionedImages
from clipedu.model import CLIP, CLIPConfig, get_config
from clipedu.tokenizer import BPETokenizer, clip_tokenizer
from clipedu.train.config import DATA_SOURCES, LOSSES, TrainConfig
from clipedu.train.distributed import DistState, init_distributed


@dataclass
class TrainData:
    """The training set and what evaluation needs.

    zeroshot_sets maps a metric name ("zeroshot_acc", "zeroshot_heldout_acc") to a
    labelled test set whose labels index `class_prompts` (one prompt list per class).
    retrieval_set is a held-out captioned set for Recall@K.
    """

    train: CaptionedImages
    zeroshot_sets: dict[str, CaptionedImages]
    class_prompts: list[list[str]] | None
    retrieval_set: CaptionedImages


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
        from clipedu.data.shapes import ShapesWorld

        world = ShapesWorld(seed=config.data_seed, image_size=config.image_size)
        seen = world.test(config.eval_size, "seen")
        prompts = world.prompts()
        return TrainData(world.train(config.train_size),
                         {"zeroshot_acc": seen, "zeroshot_heldout_acc": world.test(config.eval_size, "heldout")},
                         [prompts[name] for name in world.class_names], seen)
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


def build_tokenizer(config: TrainConfig, captions: list[list[str]]) -> BPETokenizer:
    """CLIP's tokenizer, or BPE merges learnt from the training captions (small vocabulary)."""
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


