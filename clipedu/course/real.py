"""Real CLIP in a notebook: load released weights if they are here, or say in one line how to get them.

Each "now with real CLIP" section of the course starts with

    DOWNLOAD = False          # at the top of the notebook: True fetches ViT-B/32 (~350 MB) once
    real = load_real_clip(download=DOWNLOAD)

and carries on with `if real is not None:`. Without weights and without DOWNLOAD,
nothing is fetched: one line says how to get them, and the notebook goes on.

`RealCLIP` bundles the model with what belongs to it (CLIP's tokenizer, its
input resolution) and encodes PIL images and strings into normalised
embeddings, remembered on disk: the second run of a notebook, or a search over
the same folder, does not encode a photo or a prompt again.

    photos = load_photos()                    # or load_photos("~/Pictures")
    real.search("a cup of coffee", photos)    # [(photo, cosine), ...], best first
    search_figure(real, "a cup of coffee", photos)
"""

from __future__ import annotations

import hashlib
import os
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from PIL import Image

from clipedu.checkpoint import atomic_write
from clipedu.course.gallery import draw_image, show_images, to_hwc
from clipedu.data.photos import Photo
from clipedu.embed import encode_texts
from clipedu.model import CLIP
from clipedu.tokenizer import BPETokenizer, clip_tokenizer
from clipedu.train.cache import CACHE_DIR
from clipedu.transforms import load_image, preprocess
from clipedu.weights import ENV_VAR, find_checkpoint, load_clip
from clipedu.weights_file import WeightsError, detect_format, openai_release

DEFAULT_MODEL = "ViT-B/32"
CACHE_ENV = "CLIPEDU_EMBEDDING_CACHE"  # where embeddings are remembered (default: <cache>/real_clip)
HOW_TO = (f"no real CLIP weights here: run `clipedu.weights.download_openai('{DEFAULT_MODEL}')` or "
          f"`make weights` once (or set DOWNLOAD = True at the top), or point {ENV_VAR} at a checkpoint; "
          "this section is skipped")


class RealCLIP:
    """A released CLIP model with its tokenizer, encoding images and texts with a disk cache."""

    def __init__(self, model: CLIP, path: Path, cache_dir: Path | None = None):
        self.model, self.path = model.eval(), Path(path)
        self.tokenizer: BPETokenizer = clip_tokenizer()
        stat = self.path.stat()
        key = f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()
        self.fingerprint = hashlib.sha256(key).hexdigest()[:16]
        root = cache_dir or os.environ.get(CACHE_ENV) or CACHE_DIR / "real_clip"
        self.cache_dir = Path(root).expanduser() / self.fingerprint
        self._memory: dict[str, dict[str, torch.Tensor]] = {}

    @property
    def resolution(self) -> int:
        return self.model.config.image_resolution

    @property
    def logit_scale(self) -> float:
        return self.model.logit_scale.exp().item()

    # ------------------------------------------------------------ the disk cache

    def _table(self, kind: str) -> dict[str, torch.Tensor]:
        if kind not in self._memory:
            file = self.cache_dir / f"{kind}.pt"
            table = {}
            if file.is_file():
                try:
                    table = torch.load(file, weights_only=True)
                except Exception:  # a damaged cache is rebuilt, never trusted
                    table = {}
            self._memory[kind] = table
        return self._memory[kind]

    def _cached(self, kind: str, keys: Sequence[str], compute) -> torch.Tensor:
        table = self._table(kind)
        first = {k: i for i, k in reversed(list(enumerate(keys)))}  # a duplicate is encoded once
        missing = [i for k, i in first.items() if k not in table]
        if missing:
            new = compute(missing)
            table.update({keys[i]: row.clone() for i, row in zip(missing, new)})
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.cache_dir / f"{kind}.pt", lambda f: torch.save(table, f))
        return torch.stack([table[k] for k in keys]) if keys else torch.zeros(0, self.model.config.embed_dim)

    # ------------------------------------------------------------ encoding

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image | str | os.PathLike], batch_size: int = 32) -> torch.Tensor:
        """L2-normalised image embeddings [N, D]; files are cached by their bytes, PIL images by their pixels."""
        def key(x) -> str:
            data = Path(x).read_bytes() if isinstance(x, (str, os.PathLike)) else x.convert("RGB").tobytes()
            return hashlib.sha256(data).hexdigest()

        def compute(rows: list[int]) -> torch.Tensor:
            device = next(self.model.parameters()).device
            out = []
            for start in range(0, len(rows), batch_size):
                chunk = [images[i] for i in rows[start:start + batch_size]]
                pil = [load_image(x) if isinstance(x, (str, os.PathLike)) else x for x in chunk]  # EXIF-upright
                batch = torch.stack([preprocess(im, self.resolution) for im in pil]).to(device)
                out.append(torch.nn.functional.normalize(self.model.encode_image(batch).float(), dim=-1).cpu())
            return torch.cat(out)

        return self._cached("images", [key(x) for x in images], compute)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings [N, D], cached by the text (cut at 77 tokens, as CLIP does;
        each batch runs only up to its last end-of-text token, which makes short prompts several times cheaper)."""
        texts = list(texts)
        return self._cached("texts", texts, lambda rows: encode_texts(
            self.model, self.tokenizer, [texts[i] for i in rows], truncate=True, trim=True))

    def encode_photos(self, photos: Sequence[Photo]) -> torch.Tensor:
        """Image embeddings [N, D] of `clipedu.data.photos` photos (read from their files, cached by their bytes)."""
        return self.encode_images([p.path for p in photos])

    def search(self, query: str, photos: Sequence[Photo], k: int = 5,
               photo_features: torch.Tensor | None = None) -> list[tuple[Photo, float]]:
        """The k photos whose embeddings are closest to the text query: [(photo, cosine), ...], best first.

        `photo_features` (from `encode_photos`) skips even the cache lookup, for many queries over one folder.
        """
        if not query.strip():
            raise ValueError("the query is empty: describe a photo, e.g. 'a cup of coffee'")
        if not photos:
            raise ValueError("no photos to search")
        features = self.encode_photos(photos) if photo_features is None else photo_features
        if len(features) != len(photos):
            raise ValueError(f"{len(features)} photo features for {len(photos)} photos")
        scores = (self.encode_texts([query]) @ features.T)[0]
        top = scores.topk(min(k, len(photos)))
        return [(photos[i], s) for s, i in zip(top.values.tolist(), top.indices.tolist())]


def load_real_clip(download: bool = False, name: str = DEFAULT_MODEL,
                   device: str | torch.device | None = None) -> RealCLIP | None:
    """Released CLIP weights if any are on disk (`find_checkpoint`), else None after one line of advice.

    With download=True and nothing on disk, fetches OpenAI's `name` first (verified by its SHA-256).
    OpenAI's own files are TorchScript archives; they are opened only when their hash is OpenAI's.
    """
    try:
        path = find_checkpoint()
    except FileNotFoundError as err:  # CLIPEDU_WEIGHTS names a file that does not exist
        print(f"{err}; this section is skipped")
        return None
    if path is None and download:
        from clipedu.download import download_openai
        path = download_openai(name)
    if path is None:
        print(HOW_TO)
        return None
    try:
        torchscript = detect_format(path) == "torchscript"
        model = load_clip(path, allow_torchscript=torchscript and openai_release(path) is not None)
    except WeightsError as err:
        print(f"cannot use {path}: {err}\nthis section is skipped")
        return None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    real = RealCLIP(model.to(device), path)
    print(f"real CLIP from {path}: {model.num_parameters():,} parameters, {real.resolution}-pixel images, "
          f"logit scale {real.logit_scale:.1f}")
    return real


# ------------------------------------------------------------ figures of photos


def thumbnail(photo: Photo | Image.Image, size: int = 224) -> Image.Image:
    """A photo shrunk to fit in size x size pixels (aspect kept), for figures."""
    image = photo.image() if isinstance(photo, Photo) else photo.convert("RGB")
    image.thumbnail((size, size))
    return image


def photo_grid(photos: Sequence[Photo], titles: Sequence[str] | None = None, ncols: int = 7,
               wrap: int = 26) -> Figure:
    """The photos in a grid, each titled (default: its caption), titles wrapped at `wrap` characters."""
    if not photos:
        raise ValueError("no photos to show")
    titles = [p.caption for p in photos] if titles is None else list(titles)
    if len(titles) != len(photos):
        raise ValueError(f"got {len(titles)} titles for {len(photos)} photos")
    return show_images([thumbnail(p) for p in photos], [textwrap.fill(t, wrap) for t in titles], ncols,
                       panel=(2.2, 2.9))


def search_figure(real: RealCLIP, query: str, photos: Sequence[Photo], k: int = 5,
                  photo_features: torch.Tensor | None = None) -> Figure:
    """The text query (orange, the course's colour for text) and its k best photos with their cosines."""
    found = real.search(query, photos, k, photo_features)
    fig, axes = plt.subplots(1, len(found) + 1, figsize=(2.1 * (len(found) + 1), 2.6), layout="constrained")
    axes[0].text(0.5, 0.5, textwrap.fill(query, 18), ha="center", va="center", fontsize=10, color="tab:orange")
    axes[0].set_axis_off()
    axes[0].set_title("text query", fontsize=9)
    for rank, (ax, (photo, cosine)) in enumerate(zip(axes[1:], found), start=1):
        draw_image(ax, to_hwc(thumbnail(photo)), f"#{rank}  cosine {cosine:.3f}\n{photo.label}")
    fig.suptitle(f"the {len(found)} photos closest to the query, of {len(photos)}", fontsize=10)
    return fig
