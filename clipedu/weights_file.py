"""A weights file: recognise its format, read the CLIP state dict in it safely, convert it.

`clipedu.weights` finds the file and builds the model; this module reads it.

Known formats (`detect_format`):

- ``"torch"``: a ``torch.save`` zip of a state dict (open_clip's
  ``open_clip_pytorch_model.bin``, a training checkpoint with a ``state_dict``
  entry, or a clipedu checkpoint). Read with ``torch.load(weights_only=True)``,
  which unpickles tensors and plain containers only.
- ``"safetensors"``: a flat table of tensors (``open_clip_model.safetensors``),
  read with the ``safetensors`` package if it is installed.
- ``"torchscript"``: OpenAI's own release files (``~/.cache/clip/ViT-B-32.pt``)
  are TorchScript archives: a program plus its weights. Loading one runs
  ``torch.jit.load``, which is not restricted the way ``weights_only`` is, so it
  is opt-in (``allow_torchscript=True``). `openai_release` tells whether a
  file's SHA-256 equals one of OpenAI's published files.
- ``"torch-legacy"``: the pre-1.6 ``torch.save`` format, read with ``weights_only=True``.

Anything else (a truncated download, an HTML error page saved as ``.pt``)
raises `WeightsError` with the file name and what to do.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path

import torch

from clipedu.checkpoint import FORMAT as CLIPEDU_FORMAT
from clipedu.errors import ClipeduError

# Entries of OpenAI's TorchScript archives that are not parameters (build_model drops them too).
JIT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")

# SHA-256 of OpenAI's released files: openai/CLIP puts it in each download URL
# (https://openaipublic.azureedge.net/clip/models/<sha256>/<file>) and checks it after download.
OPENAI_SHA256 = {
    "RN50": "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
    "RN101": "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599",
    "RN50x4": "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd",
    "RN50x16": "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa",
    "RN50x64": "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c",
    "ViT-B/32": "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
    "ViT-B/16": "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
    "ViT-L/14": "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
    "ViT-L/14@336px": "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
}


# The environment variable that names a weights file (or folder) for clipedu.weights to use.
ENV_VAR = "CLIPEDU_WEIGHTS"


def openai_filename(name: str) -> str:
    """The file name OpenAI publishes a model under (and clip.load saves): "ViT-L/14@336px" -> "ViT-L-14-336px.pt"."""
    return name.replace("/", "-").replace("@", "-") + ".pt"


class WeightsError(ClipeduError, ValueError):
    """A weights file that cannot be used: unknown format, corrupt, or not a CLIP state dict."""


def detect_format(path: str | os.PathLike) -> str:
    """'torch', 'torchscript', 'safetensors' or 'torch-legacy', from the file's first bytes.

    Raises FileNotFoundError for a missing file, WeightsError for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":  # a zip archive: torch.save (>= 1.6) and TorchScript both use one
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise WeightsError(f"{path} is a damaged zip archive ({err}): the download was probably cut "
                               "short. Delete the file and download it again.") from err
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("/data.pkl") for n in names):
            return "torch"
        raise WeightsError(f"{path} is a zip archive but not a PyTorch file (no data.pkl inside)")
    if len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size:
        return "safetensors"  # an 8-byte little-endian header length, then a JSON header
    if head[:2] == b"\x80\x02":  # a protocol-2 pickle: torch.save's format before PyTorch 1.6
        return "torch-legacy"
    hint = " (it looks like a web page: the download failed)" if head.lstrip()[:1] == b"<" else ""
    raise WeightsError(f"{path} is not a weights format clipedu knows{hint}: expected a PyTorch file (.pt, .bin), "
                       "a TorchScript archive (OpenAI's .pt) or a .safetensors file")


def sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """The SHA-256 of a file, as hex (reads it in 4 MB pieces)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def openai_release(path: str | os.PathLike) -> str | None:
    """The OpenAI model name ("ViT-B/32", ...) whose published SHA-256 the file has, else None."""
    digest = sha256(path)
    return next((name for name, h in OPENAI_SHA256.items() if h == digest), None)


def extract_state_dict(obj) -> dict[str, torch.Tensor]:
    """The CLIP state dict inside what a weights file held, with openai/CLIP's key names.

    Unwraps a clipedu checkpoint (its "model" entry) and a training checkpoint
    (its "state_dict" entry, as open_clip saves them), strips the "module." prefix
    of a model saved from DistributedDataParallel, and drops the entries of
    OpenAI's TorchScript files that are not parameters (`JIT_EXTRA_KEYS`, and any
    `attn_mask` buffer).
    """
    if isinstance(obj, dict) and obj.get("format") == CLIPEDU_FORMAT and "model" in obj:
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise WeightsError(f"expected a state dict (a dict of tensors), got {type(obj).__name__}"
                           + (" (empty)" if isinstance(obj, dict) else ""))
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsError(f"expected a state dict of tensors; entries {not_tensors[:3]} are not tensors")
    # attention masks are rebuilt from the config: TorchScript archives may store them as buffers
    sd = {k: v for k, v in obj.items() if k not in JIT_EXTRA_KEYS and k.rsplit(".", 1)[-1] != "attn_mask"}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _read(path: Path, kind: str, allow_torchscript: bool):
    if kind == "safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise WeightsError(f"{path} is a .safetensors file: install the safetensors package "
                               "(pip install safetensors) to read it") from None
        return load_file(str(path), device="cpu")
    if kind == "torchscript":
        if not allow_torchscript:
            release = openai_release(path)
            origin = (f"Its SHA-256 is that of OpenAI's {release} release." if release else
                      "Its SHA-256 matches none of OpenAI's releases: make sure you know where it comes from.")
            raise WeightsError(
                f"{path} is a TorchScript archive (OpenAI's release format): a program as well as weights. "
                f"Reading it runs torch.jit.load, which is not restricted like torch.load(weights_only=True). "
                f"{origin} If you downloaded it yourself from a source you trust, pass allow_torchscript=True.")
        if openai_release(path) is None:
            warnings.warn(f"{path}: loading a TorchScript archive that is not one of OpenAI's releases "
                          "(unknown SHA-256)", stacklevel=3)
        with warnings.catch_warnings():  # recent PyTorch marks TorchScript as deprecated
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").state_dict()
    return torch.load(path, map_location="cpu", weights_only=True)


def load_state_dict(path: str | os.PathLike, allow_torchscript: bool = False) -> dict[str, torch.Tensor]:
    """Read a CLIP state dict (openai/CLIP names) from a file of any known format.

    TorchScript archives (OpenAI's own ``.pt`` files) need ``allow_torchscript=True``:
    see the module docstring.
    """
    path = Path(path).expanduser()
    kind = detect_format(path)
    try:
        obj = _read(path, kind, allow_torchscript)
    except WeightsError:
        raise
    except Exception as err:  # a truncated tensor, a foreign pickle, a broken safetensors header
        message = str(err).splitlines()[0] if str(err) else ""
        if "weights only" in str(err).lower() or "weights_only" in str(err).lower():
            raise WeightsError(f"{path} holds Python objects besides tensors, which torch.load(weights_only=True) "
                               f"refuses to build ({message}). clipedu reads weights only; re-save the state dict "
                               "with torch.save(model.state_dict(), path) where you trust the file.") from err
        raise WeightsError(f"cannot read {path} as a {kind} file: {type(err).__name__}: {message}. The file may "
                           "be damaged (a partial download): delete it and download it again.") from err
    try:
        return extract_state_dict(obj)
    except WeightsError as err:
        raise WeightsError(f"{path}: {err}") from None


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, allow_torchscript: bool = False) -> Path:
    """Write the CLIP state dict of `src` to `dst` as plain weights: .safetensors, or a torch state dict.

    Convert an OpenAI TorchScript file once, where you trust it; from then on the
    copy loads with no code execution at all (and without torch.jit, which
    recent PyTorch versions deprecate).
    """
    sd = {k: v.contiguous() for k, v in load_state_dict(src, allow_torchscript=allow_torchscript).items()}
    dst = Path(dst).expanduser()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.suffix == ".safetensors":
        try:
            from safetensors.torch import save_file
        except ImportError:
            raise WeightsError("writing .safetensors needs the safetensors package (pip install safetensors); "
                               "or choose a .pt destination") from None
        save_file(sd, str(dst))
    else:
        torch.save(sd, dst)
    return dst
