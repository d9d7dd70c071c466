"""CLIP in Hugging Face `transformers`' layout: read it into `clipedu.model.CLIP`, and write it back.

A `transformers` CLIP folder (``CLIPModel.save_pretrained(DIR)``, or a snapshot in the
Hugging Face cache) holds ``config.json`` (``"model_type": "clip"``) and the weights,
``model.safetensors`` or ``pytorch_model.bin`` (large models: shards listed in
``model.safetensors.index.json``). The tensors are openai/CLIP's, renamed and cut up:

    openai/CLIP (clipedu)                   transformers
    visual.conv1                            vision_model.embeddings.patch_embedding
    visual.class_embedding                  vision_model.embeddings.class_embedding
    visual.positional_embedding             vision_model.embeddings.position_embedding.weight
    visual.ln_pre / visual.ln_post          vision_model.pre_layrnorm (sic) / vision_model.post_layernorm
    visual.proj [in, out]                   visual_projection.weight [out, in] (a Linear: transposed)
    token_embedding, positional_embedding   text_model.embeddings.{token,position}_embedding
    ln_final                                text_model.final_layer_norm
    text_projection [in, out]               text_projection.weight [out, in] (transposed)
    ...resblocks.i.ln_1 / ln_2              ...encoder.layers.i.layer_norm1 / layer_norm2
    ...resblocks.i.attn.in_proj_* [3D, D]   ...encoder.layers.i.self_attn.{q,k,v}_proj (stacked in this order)
    ...resblocks.i.attn.out_proj            ...encoder.layers.i.self_attn.out_proj
    ...resblocks.i.mlp.c_fc / c_proj        ...encoder.layers.i.mlp.fc1 / fc2

What shapes cannot tell comes from config.json: the activation (``hidden_act``),
the number of heads of each tower, and the LayerNorm eps. `transformers` has ViT
image towers only, so there is no ResNet CLIP in this layout.

Text pooling: clipedu takes the features at the argmax of the token ids (EOT has
the largest id); transformers takes them at the first ``eos_token_id`` (or at the
argmax too, for old configs with ``eos_token_id == 2``). The two agree whenever
each row holds EOT = the largest id in the vocabulary (49407 for CLIP's), as
CLIP's tokenizers produce; they differ for rows without EOT or with ids above it
(tokens added to the vocabulary).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from clipedu.checkpoint import atomic_write, write_json
from clipedu.model import CLIP, build_model, config_from_state_dict
from clipedu.weights_file import WeightsError

CONFIG_NAME = "config.json"
WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")  # one file, preferred first
INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")  # shards

# (openai/CLIP name, transformers name); names ending in "." are prefixes, the others whole names.
NAMES = (
    ("visual.conv1.", "vision_model.embeddings.patch_embedding."),
    ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
    ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
    ("visual.ln_pre.", "vision_model.pre_layrnorm."),
    ("visual.ln_post.", "vision_model.post_layernorm."),
    ("visual.transformer.resblocks.", "vision_model.encoder.layers."),
    ("visual.proj", "visual_projection.weight"),
    ("token_embedding.", "text_model.embeddings.token_embedding."),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
    ("transformer.resblocks.", "text_model.encoder.layers."),
    ("ln_final.", "text_model.final_layer_norm."),
    ("text_projection", "text_projection.weight"),
    ("logit_scale", "logit_scale"),
)
# Inside one residual block (after "<layer index>."); "qkv" stands for the three of q, k and v.
BLOCK_NAMES = (
    ("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("attn.out_proj.", "self_attn.out_proj."),
    ("attn.in_proj_", "self_attn.qkv_proj."), ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2."),
)
LAYERS = ("visual.transformer.resblocks.", "vision_model.encoder.layers.",
          "transformer.resblocks.", "text_model.encoder.layers.")
QKV = ("q", "k", "v")  # the order of the three parts of in_proj_weight
TRANSPOSED = ("visual.proj", "text_projection")  # openai keeps [in, out] matrices; an nn.Linear has [out, in]
ACTS = ("quick_gelu", "gelu")  # transformers' "gelu" is the exact (erf) GELU, nn.GELU()


def rename(name: str, to_hf: bool) -> str | None:
    """`name` in the other layout (q, k, v written as "qkv"), or None when it has no counterpart."""
    names = NAMES if to_hf else [(b, a) for a, b in NAMES]
    block = BLOCK_NAMES if to_hf else [(b, a) for a, b in BLOCK_NAMES]
    for src, dst in names:
        if name == src or (src.endswith(".") and name.startswith(src)):
            rest = name[len(src):]
            if src not in LAYERS:
                return dst + rest
            layer, _, inner = rest.partition(".")
            inner = next((b_dst + inner[len(b_src):] for b_src, b_dst in block if inner.startswith(b_src)), "")
            return f"{dst}{layer}.{inner}" if layer.isdigit() and inner else None
    return None


def hf_names(name: str) -> list[str]:
    """The transformers name(s) of an openai/CLIP parameter: three (q, k, v) for an ``in_proj_*``."""
    hf = rename(name, to_hf=True)
    if hf is None:
        raise WeightsError(f"{name} has no counterpart in transformers' CLIPModel")
    return [hf.replace(".qkv_proj.", f".{p}_proj.") for p in QKV] if ".qkv_proj." in hf else [hf]


def openai_name(name: str) -> tuple[str, int | None] | None:
    """The openai/CLIP name of a transformers tensor, and which third of in_proj it is (None: all of it)."""
    attn = re.search(r"\.self_attn\.([qkv])_proj\.", name)
    if attn:
        name = name.replace(attn[0], ".self_attn.qkv_proj.")
    openai = rename(name, to_hf=False)
    return None if openai is None else (openai, QKV.index(attn[1]) if attn else None)


def to_openai(hf_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers CLIPModel state dict with openai/CLIP's names and layout (q, k, v stacked)."""
    sd, parts, unknown = {}, {}, []
    for key, value in hf_sd.items():
        if key.endswith("embeddings.position_ids"):  # a buffer older transformers versions saved
            continue
        found = openai_name(key)
        if found is None:
            unknown.append(key)
        elif found[1] is not None:
            parts.setdefault(found[0], [None] * 3)[found[1]] = value
        else:
            sd[found[0]] = value.t() if found[0] in TRANSPOSED else value
    if unknown:
        raise WeightsError(f"names that are not transformers' CLIPModel's (a different architecture?): "
                           f"{', '.join(unknown[:3])}" + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""))
    for name, qkv in parts.items():
        missing = [hf_names(name)[i] for i, t in enumerate(qkv) if t is None]
        if missing:
            raise WeightsError(f"{', '.join(missing)} missing: q, k and v projections come in threes")
        sd[name] = torch.cat(qkv)
    return sd


def to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An openai/CLIP state dict with transformers' names and layout (float32, one tensor per name)."""
    out = {}
    for key, value in sd.items():
        names = hf_names(key)
        value = value.detach().float().cpu()
        value = value.t() if key in TRANSPOSED else value
        for name, part in zip(names, value.chunk(3) if len(names) == 3 else [value]):
            out[name] = part.contiguous().clone()  # safetensors refuses tensors that share memory
    return out


# ------------------------------------------------------------------ reading


def read_config(folder: str | os.PathLike) -> dict:
    """The config.json of a transformers CLIP folder, checked to be a full CLIPModel's."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise WeightsError(f"{path.parent} holds Hugging Face transformers CLIP weights but no {CONFIG_NAME} beside them: "
                           "keep the folder that CLIPModel.save_pretrained(DIR) wrote (or the snapshot) whole")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise WeightsError(f"{path} is damaged (not JSON: {err}); save or download the model again") from None
    kind = config.get("model_type") if isinstance(config, dict) else None
    if kind != "clip":
        raise WeightsError(f"{path} describes a {kind!r} model, not a transformers CLIPModel (model_type 'clip'); "
                           "clipedu reads CLIPModel folders only")
    return config


def tower_config(config: dict, tower: str) -> dict:
    """config["text_config"] or ["vision_config"] (the older "*_config_dict" entries win, as in transformers)."""
    return {**(config.get(f"{tower}_config") or {}), **(config.get(f"{tower}_config_dict") or {})}


def overrides_from_config(config: dict) -> dict:
    """build_model overrides (act, heads) from a CLIPModel config.json, with transformers' defaults."""
    text, vision = tower_config(config, "text"), tower_config(config, "vision")
    acts = {text.get("hidden_act", "quick_gelu"), vision.get("hidden_act", "quick_gelu")}
    if len(acts) > 1 or not acts <= set(ACTS):
        raise WeightsError(f"hidden_act {sorted(acts)} in config.json: clipedu's CLIP has one activation for "
                           f"both towers, one of {ACTS}")
    return dict(act=acts.pop(), transformer_heads=int(text.get("num_attention_heads", 8)),
                vision_heads=int(vision.get("num_attention_heads", 12)))


def weights_files(path: str | os.PathLike) -> list[Path]:
    """The weights file(s) of a transformers CLIP folder, or the shards an index file lists; config checked."""
    path = Path(path).expanduser()
    folder = path if path.is_dir() else path.parent
    if path.is_dir() and not (folder / CONFIG_NAME).is_file():
        raise WeightsError(f"{path} is a folder without a {CONFIG_NAME}: pass a weights file, or a transformers "
                           f"CLIP folder ({CONFIG_NAME} + {' or '.join(WEIGHTS_NAMES)})")
    read_config(folder)
    single = [folder / n for n in WEIGHTS_NAMES if (folder / n).is_file()]
    index = next((folder / n for n in INDEX_NAMES if (folder / n).is_file()), None) if path.is_dir() else path
    if path.is_dir() and single:
        return single[:1]
    if index is None:
        raise WeightsError(f"{folder} has a CLIP {CONFIG_NAME} but no weights file ({' or '.join(WEIGHTS_NAMES)}): "
                           "the download or save_pretrained did not finish; do it again")
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise WeightsError(f"cannot read the shard index {index} ({type(err).__name__}: {err}); "
                           "download the model again") from None
    return [folder / s for s in shards]


def set_layer_norm_eps(model: CLIP, text_eps: float, vision_eps: float) -> None:
    """Give every LayerNorm of each tower its eps (CLIPConfig has no field for it; transformers' default is 1e-5)."""
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = text_eps
    for module in model.visual.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = vision_eps


def clip_from_hf(hf_sd: dict[str, torch.Tensor], config: dict, **overrides) -> CLIP:
    """A clipedu CLIP (float32, eval mode) from a transformers CLIPModel state dict and its config.json."""
    sd = to_openai(hf_sd)
    overrides = {**overrides_from_config(config), **overrides}
    try:
        arch = dataclasses.replace(config_from_state_dict(sd), **overrides)
    except ValueError as err:
        raise WeightsError(f"not a whole CLIPModel ({err}); a CLIPTextModel or CLIPVisionModel holds one "
                           "tower only") from None
    with torch.device("meta"):  # the shapes clipedu expects, without allocating anything
        expected = CLIP(arch).state_dict()
    wrong = [f"{hf_names(k)[0]} {list(v.shape)} (expected {list(expected[k].shape)})"
             for k, v in sd.items() if k in expected and v.shape != expected[k].shape]
    missing = [hf_names(k)[0] for k in expected if k not in sd]
    if wrong or missing:
        raise WeightsError("shapes or names that clipedu's CLIP cannot hold: "
                           + "; ".join((wrong + [f"{m} missing" for m in missing])[:3]))
    model = build_model(sd, **overrides)
    text, vision = tower_config(config, "text"), tower_config(config, "vision")
    eos = text.get("eos_token_id", 2)
    if eos not in (2, arch.vocab_size - 1):
        warnings.warn(f"transformers pools this model's text at the first token {eos} (its eos_token_id), clipedu "
                      "at the largest id: their text features differ unless that is the same token", stacklevel=3)
    set_layer_norm_eps(model, float(text.get("layer_norm_eps", 1e-5)), float(vision.get("layer_norm_eps", 1e-5)))
    return model


# ------------------------------------------------------------------ writing


def hf_config(model: CLIP) -> dict:
    """The config.json of `model` as a transformers CLIPModel (ViT only)."""
    c = model.config
    text_eps, vision_eps = model.ln_final.eps, model.visual.ln_pre.eps
    common = dict(hidden_act=c.act, projection_dim=c.embed_dim)
    return {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": c.embed_dim,
        "logit_scale_init_value": model.logit_scale.item(), "torch_dtype": "float32",
        "text_config": dict(
            common, model_type="clip_text_model", hidden_size=c.transformer_width,
            intermediate_size=4 * c.transformer_width, num_hidden_layers=c.transformer_layers,
            num_attention_heads=c.transformer_heads, max_position_embeddings=c.context_length,
            vocab_size=c.vocab_size, layer_norm_eps=text_eps,
            # clipedu's tokenizers put SOT and EOT last; transformers pools at the first eos_token_id
            bos_token_id=c.vocab_size - 2, eos_token_id=c.vocab_size - 1),
        "vision_config": dict(
            common, model_type="clip_vision_model", hidden_size=c.vision_width,
            intermediate_size=4 * c.vision_width, num_hidden_layers=c.vision_layers,
            num_attention_heads=c.heads_for_vision, image_size=c.image_resolution,
            patch_size=c.vision_patch_size, num_channels=3, layer_norm_eps=vision_eps),
    }


def save_hf(model: CLIP, folder: str | os.PathLike) -> Path:
    """Write `model` as a transformers CLIP folder (config.json + model.safetensors, float32).

    ``transformers.CLIPModel.from_pretrained(folder)`` then computes the same
    features (text: for rows that end in EOT, the largest id; see the module docstring).
    """
    if not model.config.is_vit:
        raise WeightsError("transformers' CLIPModel has ViT image towers only: a ResNet CLIP (RN50, course-rn) "
                           "has no transformers layout. Save it with clipedu.checkpoint or convert_checkpoint.")
    if model.logit_bias is not None:
        raise WeightsError("this model has a SigLIP logit_bias, which transformers' CLIPModel has no place for")
    from safetensors.torch import save_file

    folder = Path(folder).expanduser()
    tensors = to_hf(model.state_dict())
    atomic_write(folder / WEIGHTS_NAMES[0], lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    write_json(folder / CONFIG_NAME, hf_config(model))
    return folder
