"""The data contract: every image-text set is a `CaptionedImages` (or looks like one).

Item i is `(image, captions)`: a uint8 [3, H, W] RGB image and a list of one or
more strings. Sets with classes also carry `labels` and `class_names`; extra
per-image annotations (a shape's size, its position) ride in `attributes`.
Preprocessing happens later, batched, in training and evaluation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset


class CaptionedImages(Dataset):
    """Images in memory (`images` uint8 [N, 3, H, W]) with their captions.

    `attributes` holds optional per-image annotations beyond the label
    (e.g. size and position of a shape), each of length N.
    """

    def __init__(
        self,
        images: torch.Tensor,
        captions: list[list[str]],
        labels: torch.Tensor | None = None,
        class_names: list[str] | None = None,
        attributes: dict[str, Any] | None = None,
    ):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        if len(captions) != len(images):
            raise ValueError(f"{len(images)} images but {len(captions)} caption lists")
        if any(len(c) == 0 for c in captions):
            raise ValueError("every image needs at least one caption")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.captions = captions
        self.labels = labels
        self.class_names = class_names
        self.attributes = attributes or {}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, list[str]]:
        return self.images[i], list(self.captions[i])

    def __repr__(self) -> str:
        n, _, h, w = self.images.shape
        classes = f", {len(self.class_names)} classes" if self.class_names else ""
        return f"CaptionedImages({n} images {h}x{w}{classes})"
