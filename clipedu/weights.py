"""Real CLIP weights on disk: find them, read them safely, build the model.

The course downloads only when you ask it to (`download_openai("ViT-B/32")` in
Python, `make weights MODEL=ViT-B/32` in a shell); everything else here works on
files already on disk and turns them into a `clipedu.model.CLIP`:

    download_openai("ViT-B/32")         # once: ~/.cache/clip/ViT-B-32.pt, checked against its SHA-256
    path = find_checkpoint()            # $CLIPEDU_WEIGHTS, ~/.cache/clip, the Hugging Face cache
    model = load_clip(path)             # format detected, names mapped, architecture inferred
    weights_file.convert_checkpoint(path, "ViT-B-32.safetensors", allow_torchscript=True)  # once

load_clip reads openai/CLIP's layout (OpenAI's releases, open_clip's files, clipedu's
checkpoints) and transformers' (a `CLIPModel.save_pretrained` folder, or its weights
file with config.json beside it). Recognising a file's format and reading it safely
live in `clipedu.weights_file`; transformers' layout in `clipedu.weights_hf`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from clipedu import weights_hf

# downloads, only when asked: re-exported so that clipedu.weights.download_openai(...) works
from clipedu.download import download, download_openai, download_openclip  # noqa: F401
from clipedu.model import CLIP, build_model
from clipedu.weights_file import ENV_VAR, OPENAI_SHA256, WeightsError, load_state_dict, openai_filename

# openai's clip.load("ViT-B/32") saves to ~/.cache/clip/ViT-B-32.pt, and so on.
OPENAI_FILENAMES = {name: openai_filename(name) for name in OPENAI_SHA256}
# open_clip's files inside a Hugging Face snapshot folder.
OPEN_CLIP_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

HOW_TO_GET_WEIGHTS = f"""\
No CLIP checkpoint found. The course downloads only when asked; to use real weights, either
  - download OpenAI's release: `clipedu.weights.download_openai("ViT-B/32")` or `make weights MODEL=ViT-B/32`
    (saved to ~/.cache/clip/ViT-B-32.pt, checked against its SHA-256), or
  - load a transformers CLIP once: `transformers.CLIPModel.from_pretrained("openai/clip-vit-base-patch32")`
    (it caches model.safetensors and config.json under ~/.cache/huggingface/hub; `.save_pretrained(DIR)` copies), or
  - use open_clip's files in the Hugging Face cache (open_clip_model.safetensors), or
  - put any such file or folder anywhere, with its path in the environment variable {ENV_VAR}.
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
       safetensors before ``.bin``;
    4. transformers CLIP weights there (``model.safetensors``, then ``pytorch_model.bin``, beside a
       config.json whose model_type is "clip").

    A folder in 1. may also be a transformers CLIP folder (``save_pretrained(DIR)``).
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
        found.extend(transformers_files([folder]))

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
    found.extend(transformers_files(snapshots))
    unique: list[Path] = []
    for p in found:
        if p not in unique:
            unique.append(p)
    return unique


def transformers_files(folders: list[Path]) -> list[Path]:
    """The transformers CLIP weights files in `folders`, safetensors first (beside a config.json of model_type "clip")."""

    def is_clip(folder: Path) -> bool:
        try:
            return json.loads((folder / weights_hf.CONFIG_NAME).read_text()).get("model_type") == "clip"
        except (OSError, ValueError, AttributeError):  # no config.json, or not a JSON object
            return False

    clip = [f for f in folders if is_clip(f)]
    return [f / name for name in weights_hf.WEIGHTS_NAMES for f in clip if (f / name).is_file()]


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

    `path` is a weights file of any format `weights_file` knows, in openai/CLIP's
    layout or transformers' (then with its config.json beside it), or a transformers
    CLIP folder. `overrides` go to `build_model` (e.g. act="gelu" for an OpenCLIP model
    trained with GELU); by default they come from the open_clip_config.json or
    config.json next to the file.
    """
    path = Path(path).expanduser()
    is_hf_folder = path.is_dir() or path.name in weights_hf.INDEX_NAMES
    files = weights_hf.weights_files(path) if is_hf_folder else [path]
    sd = {}
    for file in files:  # one, or the shards of a large transformers model
        sd.update(load_state_dict(file, allow_torchscript=allow_torchscript))
    try:
        if any(k.startswith(("text_model.", "vision_model.")) for k in sd):
            return weights_hf.clip_from_hf(sd, weights_hf.read_config(files[0].parent), **overrides)
        return build_model(sd, **{**open_clip_overrides(path), **overrides})
    except ValueError as err:  # WeightsError included
        raise WeightsError(f"{path}: {err}") from None
    except RuntimeError as err:  # load_state_dict(strict=True): names or shapes differ
        first = str(err).split("\n\t")[:3]
        raise WeightsError(f"{path} is a CLIP-like state dict, but not one clipedu's CLIP can hold "
                           f"(a different architecture?): {' '.join(first)}") from None
