"""TODO docstring."""

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clipedu.data.contract import CaptionedImages
from clipedu.model import CLIP, CLIPConfig, get_config
from clipedu.tokenizer import BPETokenizer, clip_tokenizer
from clipedu.train.config import DATA_SOURCES, TrainConfig


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
        parts = [world.train(config.train_size - 2 * third), world.relations(third, seed=1), world.counts(third, seed=1)]
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


def model_config(config: TrainConfig, vocab_size: int) -> CLIPConfig:
    """The named architecture with the preset's overrides, image size and vocabulary."""
    arch = get_config(config.model)
    fields = dict(config.model_overrides, image_resolution=config.image_size,
                  context_length=config.context_length, vocab_size=vocab_size)
    return CLIPConfig(**{**vars(arch), **fields})


LOSSES = ("clip", "siglip")


def init_model(config: TrainConfig, vocab_size: int) -> CLIP:
    """A freshly initialised CLIP (seeded) with the paper's temperature init ln(1/tau).

    loss="siglip" starts as SigLIP does instead: scale 10 and a learned bias -10
    (`model.logit_bias`). learn_temperature=False freezes the scale.
    """
    if config.loss not in LOSSES:
        raise ValueError(f"unknown loss {config.loss!r}; use 'clip' or 'siglip'")
    torch.manual_seed(config.seed)
    model = CLIP(model_config(config, vocab_size))
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0 if config.loss == "siglip" else 1 / config.init_temperature))
    if config.loss == "siglip":
        model.logit_bias = nn.Parameter(torch.tensor(-10.0))
    model.logit_scale.requires_grad_(config.learn_temperature)
    return model


def build_tokenizer(config: TrainConfig, captions: list[list[str]]) -> BPETokenizer:
    """CLIP's tokenizer, or BPE merges learnt from the training captions (small vocabulary)."""
    if config.tokenizer == "clip":
        return clip_tokenizer()
    if config.tokenizer == "bpe":
        return BPETokenizer.train((c for caps in captions for c in caps), config.vocab_size)
    raise ValueError(f"unknown tokenizer {config.tokenizer!r}; use 'bpe' or 'clip'")


def tokenizer_state(config: TrainConfig, tokenizer: BPETokenizer) -> dict:
    """The tokenizer as plain lists and strings, so that a checkpoint stays weights_only-loadable."""
    if config.tokenizer == "clip":
        return {"kind": "clip"}
    return {"kind": "bpe", "merges": [list(m) for m in tokenizer.merges]}


def tokenizer_from_state(state: dict) -> BPETokenizer:
    return clip_tokenizer() if state["kind"] == "clip" else BPETokenizer([tuple(m) for m in state["merges"]])


def caption_token_table(tokenizer, captions: list[list[str]], context_length: int) -> torch.Tensor:
    """Every caption tokenised once: [N, K, L], where [i, j] is caption j of image i.

    K is the longest caption list; shorter lists are padded by repeating their
    captions, so `table[image_idx, caption_idx]` reads a sampler batch directly.
    """
    width = max(len(c) for c in captions)
    flat = [c[j % len(c)] for c in captions for j in range(width)]
    return tokenizer(flat, context_length=context_length, truncate=True).view(len(captions), width, -1)
