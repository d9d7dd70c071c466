"""Image preprocessing: CLIP's resize / centre crop / normalise, and the paper's augmentation.

At evaluation CLIP resizes the short side of an image to the model's
resolution (bicubic), takes the centre square, converts to RGB and normalises
each channel with fixed mean and std (openai/CLIP's `_transform`). For
training the paper uses a single augmentation: a random square crop.

Two flavours live here:
- `preprocess` works on one PIL image and matches openai's pipeline exactly;
- `resize_center_crop`, `normalize` and `random_crop` work on batched tensors
  `[N, 3, H, W]`, which is how the training loop and evaluation use them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.ops import roi_align

# openai/CLIP's per-channel statistics (of its training images, RGB order)
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


# ---------------------------------------------------------------- PIL images

def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a PIL image of any mode to RGB.

    Transparent pixels are composited on white (a plain `convert("RGB")`
    would turn them black or keep whatever colour hides behind alpha zero).
    16-bit greyscale (`I;16`, `I`) is scaled from 0..65535 to 0..255.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        # palette images may carry transparency as a palette index or a table
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
        if mode == "RGB":
            return image
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        if mode == "La":  # premultiplied alpha: PIL only converts it to LA
            image = image.convert("LA")
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        # PIL's own I->RGB conversion clips at 255 instead of rescaling
        arr = np.asarray(image, dtype=np.float64) / 257.0
        arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "F":
        arr = np.clip(np.round(np.asarray(image, dtype=np.float64)), 0, 255)
        return Image.fromarray(arr.astype(np.uint8), mode="L").convert("RGB")
    try:
        return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    except ValueError as err:
        raise ValueError(f"cannot convert a PIL image of mode {mode!r} to RGB: {err}") from err


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file as an RGB PIL image (EXIF rotation applied).

    Raises FileNotFoundError for a missing file and ValueError for a file PIL
    cannot decode; both messages name the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here
            image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(
            f"cannot read image {path}: the file is corrupt or not an image ({err}). "
            "Remove it or replace it with a valid image."
        ) from err
    return to_rgb(image)


def resize_center_crop_pil(image: Image.Image, resolution: int) -> Image.Image:
    """Bicubic resize of the short side to `resolution`, then the centre square."""
    w, h = image.size
    # the same output size and crop offsets as torchvision's Resize + CenterCrop
    if w <= h:
        new_w, new_h = resolution, int(resolution * h / w)
    else:
        new_w, new_h = int(resolution * w / h), resolution
    image = image.resize((new_w, new_h), Image.BICUBIC)
    top = int(round((new_h - resolution) / 2.0))
    left = int(round((new_w - resolution) / 2.0))
    return image.crop((left, top, left + resolution, top + resolution))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a uint8 tensor [3, H, W] (the data contract's format)."""
    arr = np.asarray(to_rgb(image), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def preprocess(image: Image.Image, resolution: int = 224) -> torch.Tensor:
    """CLIP's evaluation preprocessing of one PIL image -> float tensor [3, r, r].

    Equal to openai's `_transform(r)` (Resize bicubic, CenterCrop, RGB,
    ToTensor, Normalize) for RGB input. Other modes are converted to RGB
    first, so palette images are resized in colour and transparency becomes white.
    """
    image = resize_center_crop_pil(to_rgb(image), resolution)
    return normalize(pil_to_tensor(image).unsqueeze(0))[0]


# ---------------------------------------------------------- batched tensors

def normalize(images: torch.Tensor) -> torch.Tensor:
    """Scale to [0, 1] (uint8 input) and normalise with CLIP's MEAN / STD.

    Float input is taken to be in [0, 1] already. Returns float32 [N, 3, H, W].
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape [N, 3, H, W], got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images.float() / 255
    elif images.is_floating_point():
        x = images.float()
    else:
        raise TypeError(f"expected uint8 or float images, got {images.dtype}")
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _restore_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.uint8:
        return x.round().clamp(0, 255).to(torch.uint8)
    return x.to(dtype)


def resize_center_crop(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Batched resize of the short side (bicubic, antialiased) and centre crop.

    `images` [N, 3, H, W], uint8 or float; the result keeps the input dtype.
    """
    h, w = images.shape[-2:]
    if (h, w) != (resolution, resolution):
        if w <= h:
            size = (int(resolution * h / w), resolution)
        else:
            size = (resolution, int(resolution * w / h))
        x = F.interpolate(images.float(), size=size, mode="bicubic",
                          align_corners=False, antialias=True)
        top = int(round((size[0] - resolution) / 2.0))
        left = int(round((size[1] - resolution) / 2.0))
        x = x[:, :, top:top + resolution, left:left + resolution]
        images = _restore_dtype(x, images.dtype)
    return images


def _mix64(x: int) -> int:
    # splitmix64: add the golden-ratio constant, then its finaliser (a cheap,
    # well-mixed 64-bit hash: neighbouring inputs give unrelated outputs)
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def augment_seeds(seed: int, indices: torch.Tensor | Sequence[int], step: int) -> torch.Tensor:
    """Per-sample seeds for `random_crop` that depend only on (seed, sample index, step).

    A sample therefore gets the same crop whichever process or batch position
    it lands in. Returns a LongTensor with one seed per index.
    """
    base = _mix64(_mix64(seed & 0xFFFFFFFFFFFFFFFF) ^ (step & 0xFFFFFFFFFFFFFFFF))
    seeds = [_mix64(base ^ (int(i) & 0xFFFFFFFFFFFFFFFF)) >> 1 for i in indices]  # >> 1: fits int64
    return torch.tensor(seeds, dtype=torch.int64)


def random_crop(
    images: torch.Tensor,
    out_size: int,
    seeds: torch.Tensor | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = (0.5, 1.0),
) -> torch.Tensor:
    """The paper's training augmentation: a random square crop, resized to `out_size`.

    Each crop covers a fraction of the largest square in the image drawn
    uniformly from `scale` (by area) at a uniform position. With `seeds`
    (one integer per sample) each sample's crop comes from its own
    torch.Generator, so it does not depend on the batch it is in; otherwise the
    crops are drawn from `generator` (or torch's global generator).
    Returns [N, 3, out_size, out_size] with the input's dtype.
    """
    n, _, h, w = images.shape
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
    if seeds is not None:
        seeds = torch.as_tensor(seeds, dtype=torch.int64).flatten()
        if len(seeds) != n:
            raise ValueError(f"got {len(seeds)} seeds for {n} images: pass one seed per image")
        u = torch.stack([torch.rand(3, generator=torch.Generator().manual_seed(int(s)))
                         for s in seeds]) if n else torch.zeros(0, 3)
    else:
        u = torch.rand(n, 3, generator=generator)
    side = (min(h, w) * torch.sqrt(lo + (hi - lo) * u[:, 0])).round().clamp(min=1)
    x0 = ((w - side + 1) * u[:, 1]).floor()  # any integer offset in 0..w-side
    y0 = ((h - side + 1) * u[:, 2]).floor()
    # roi_align crops and resizes every box in one batched call; averaging
    # several bilinear samples per output pixel acts as an antialias filter
    boxes = torch.stack([torch.arange(n, dtype=torch.float32), x0, y0, x0 + side, y0 + side], 1)
    out = roi_align(images.float(), boxes.to(images.device), output_size=out_size,
                    spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return _restore_dtype(out, images.dtype)
