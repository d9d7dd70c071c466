"""Real CLIP weights from a file you downloaded yourself: find it, read it safely, build the model.

The course never downloads anything. If you have a checkpoint on disk, these
functions turn it into a `clipedu.model.CLIP`:

    path = find_checkpoint()            # $CLIPEDU_WEIGHTS, ~/.cache/clip, the Hugging Face cache
    model = load_clip(path)             # format detected, state dict cleaned, architecture inferred
    weights_file.convert_checkpoint(path, "ViT-B-32.safetensors", allow_torchscript=True)  # once

Finding a file and building the model live here; recognising a file's format
and reading its weights safely live in `clipedu.weights_file`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from clipedu.model import CLIP, build_model
from clipedu.weights_file import OPENAI_SHA256, WeightsError, load_state_dict

ENV_VAR = "CLIPEDU_WEIGHTS"

# openai's clip.load("ViT-B/32") saves to ~/.cache/clip/ViT-B-32.pt, and so on.
OPENAI_FILENAMES = {name: name.replace("/", "-").replace("@", "-") + ".pt" for name in OPENAI_SHA256}
# open_clip's files inside a Hugging Face snapshot folder.
OPEN_CLIP_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

HOW_TO_GET_WEIGHTS = f"""\
No CLIP checkpoint found. The course downloads nothing; to use real weights, put a file on disk yourself:
  - OpenAI's release: `pip install git+https://github.com/openai/CLIP` then `clip.load("ViT-B/32")` once
    (it saves ~/.cache/clip/ViT-B-32.pt, a TorchScript archive: load it with allow_torchscript=True), or
  - OpenCLIP: `open_clip.create_model_and_transforms("ViT-B-32-quickgelu", pretrained="openai")` once
    (it saves open_clip_model.safetensors under ~/.cache/huggingface/hub), or
  - any such file anywhere, with its path in the environment variable {ENV_VAR}.
Then run this cell again."""


# ------------------------------------------------------------------ finding a file


def _hf_hub_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
    return Path(home) / "hub"


def candidate_paths() -> list[Path]:
    """Every checkpoint file found in the known places, in the order they are tried.

    1. ``$CLIPEDU_WEIGHTS`` (a file, or a folder searched like the two below);
    2. openai/CLIP's download folder ``~/.cache/clip/`` (``ViT-B-32.pt`` first, then
       the other release names, then any ``.pt``);
    3. open_clip files in the Hugging Face cache (``~/.cache/huggingface/hub/models--*/snapshots/*/``),
       safetensors before ``.bin``.
    """
    found: list[Path] = []

    def search(folder: Path) -> None:
        if not folder.is_dir():
            return
        names = list(OPENAI_FILENAMES.values())
        names.insert(0, names.pop(names.index("ViT-B-32.pt")))
        found.extend(folder / n for n in names if (folder / n).is_file())
        found.extend(sorted(p for p in folder.glob("*.pt") if p.name not in names))
        for name in OPEN_CLIP_FILENAMES:
            found.extend(sorted(folder.glob(name)))

    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            search(path)
        else:
            raise FileNotFoundError(f"{ENV_VAR}={env} is set, but there is no such file or folder; "
                                    f"fix the path or unset {ENV_VAR}")
    search(Path(os.path.expanduser("~")) / ".cache" / "clip")
    snapshots = sorted(_hf_hub_dir().glob("models--*/snapshots/*"))
    for name in OPEN_CLIP_FILENAMES:
        found.extend(p / name for p in snapshots if (p / name).is_file())
    unique: list[Path] = []
    for p in found:
        if p not in unique:
            unique.append(p)
    return unique


def find_checkpoint() -> Path | None:
    """The first checkpoint file of `candidate_paths`, or None when there is none."""
    paths = candidate_paths()
    return paths[0] if paths else None


# ------------------------------------------------------------------ building the model


def open_clip_overrides(path: str | os.PathLike) -> dict:
    """build_model overrides for an open_clip file in the Hugging Face layout, from the
    open_clip_config.json next to it; {} when there is none.

    Shapes cannot tell QuickGELU from GELU: OpenAI's models use QuickGELU, most
    OpenCLIP (LAION) models GELU. The config's "quick_gelu" decides when present;
    without it, a repository named after OpenAI's weights ("...openai") means QuickGELU.
    """
    path = Path(path).expanduser()
    config = path.parent / "open_clip_config.json"
    if not config.is_file():
        return {}
    model_cfg = json.loads(config.read_text()).get("model_cfg", {})
    repo = next((p.name for p in path.parents if p.name.startswith("models--")), "")
    quick_gelu = model_cfg.get("quick_gelu", repo.lower().endswith("openai"))
    overrides = {} if quick_gelu else {"act": "gelu"}
    text = model_cfg.get("text_cfg", {})
    if "heads" in text:
        overrides["transformer_heads"] = int(text["heads"])
    return overrides


def load_clip(path: str | os.PathLike, allow_torchscript: bool = False, **overrides) -> CLIP:
    """A CLIP model (float32, eval mode) holding the weights in `path`.

    `overrides` go to `build_model` (e.g. act="gelu" for an OpenCLIP model trained
    with GELU); by default they come from an open_clip_config.json next to the file.
    """
    sd = load_state_dict(path, allow_torchscript=allow_torchscript)
    if any(k.startswith(("text_model.", "vision_model.")) for k in sd):
        raise WeightsError(f"{path} is a Hugging Face transformers CLIPModel checkpoint: its names (text_model..., "
                           "vision_model..., q_proj/k_proj/v_proj) are not openai/CLIP's. Use OpenAI's file or "
                           "open_clip's (open_clip_model.safetensors) instead.")
    overrides = {**open_clip_overrides(path), **overrides}
    try:
        return build_model(sd, **overrides)
    except ValueError as err:
        raise WeightsError(f"{path}: {err}") from None
    except RuntimeError as err:  # load_state_dict(strict=True): names or shapes differ
        first = str(err).split("\n\t")[:3]
        raise WeightsError(f"{path} is a CLIP-like state dict, but not one clipedu's CLIP can hold "
                           f"(a different architecture?): {' '.join(first)}") from None
