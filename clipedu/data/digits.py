"""Handwritten digits with captions: scikit-learn's bundled 8x8 digits, as a tiny image-text set.

`sklearn.datasets.load_digits` ships with scikit-learn (1,797 images of
8x8 pixels, 16 grey levels), so it works offline. Each image is upscaled to
an RGB image of dark ink on white paper and gets captions from templates
("a handwritten 7", "the digit seven", "a photo of the number 7").

Class names are the English words "zero" .. "nine" (`DIGIT_WORDS`); the
captions use both the word and the numeral, so prompts may use either.
The split is stratified and fixed by `seed`: about 20% of each digit is test.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from clipedu.data.contract import CaptionedImages

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# {n}: the numeral, {w}: the word
CAPTION_TEMPLATES = [
    "a handwritten {n}", "the digit {w}", "a photo of the number {n}", "a handwritten {w}",
    "the number {w}", "a picture of the digit {n}", "a scan of a handwritten {w}",
    "the digit {n}, written by hand", "an image of the number {w}", "the handwritten number {n}",
]
PROMPT_TEMPLATES = ["a handwritten {}", "the digit {}", "a photo of the number {}"]
CAPTIONS_PER_IMAGE = 5
TEST_FRACTION = 0.2


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import

    digits = load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int64)


def _split_indices(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified train/test split of the indices, fixed by seed."""
    rng = np.random.default_rng([seed, 8])
    train, test = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        n_test = round(TEST_FRACTION * len(idx))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def digits_dataset(split: str = "train", seed: int = 0, image_size: int = 32) -> CaptionedImages:
    """The digits as captioned uint8 RGB images [N, 3, image_size, image_size].

    `labels` are the digits 0..9 and `class_names` DIGIT_WORDS. Every image
    gets CAPTIONS_PER_IMAGE distinct templates, chosen by (seed, index).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 (the original resolution), got {image_size}")
    pixels, labels = _load()
    train_idx, test_idx = _split_indices(labels, seed)
    idx = train_idx if split == "train" else test_idx

    # 0..16 ink levels -> dark ink on white paper, smoothly upscaled
    ink = torch.from_numpy(pixels[idx]).unsqueeze(1) / 16
    ink = F.interpolate(ink, size=(image_size, image_size), mode="bilinear", align_corners=False)
    gray = ((1 - ink.clamp(0, 1)) * 255).round().to(torch.uint8)
    images = gray.expand(-1, 3, -1, -1).contiguous()

    rng = np.random.default_rng([seed, 10])
    order = np.argsort(rng.random((len(pixels), len(CAPTION_TEMPLATES))), 1)[idx]  # keyed by original index
    captions = [[CAPTION_TEMPLATES[t].format(n=int(d), w=DIGIT_WORDS[d]) for t in order[k, :CAPTIONS_PER_IMAGE]]
                for k, d in enumerate(labels[idx])]
    return CaptionedImages(images, captions, torch.from_numpy(labels[idx]), list(DIGIT_WORDS),
                           {"index": torch.from_numpy(idx)})
