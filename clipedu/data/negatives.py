"""The negatives of a contrastive batch, measured: duplicates, false negatives, hard negatives.

CLIP's loss treats the other N-1 captions of a batch as negatives for each
image. For one row (an image and its caption) of a batch, another caption of
the same batch can be:

- an **exact duplicate**: the same string as the row's caption ("a red circle"
  twice). `UniqueCaptionBatchSampler` removes these, and only these;
- a **semantic false negative**: a different string that is still true of the
  row's image ("something red", "a crimson disc" for a red circle). No string
  comparison finds these; the meaning of the captions does
  (`clipedu.data.meaning.compatible`);
- a **hard negative**: a caption that is false of the image in exactly one
  attribute it states and right in at least one other ("a blue circle" for a
  red circle; "something blue" is an easy negative: the colour alone rules it
  out). These are the negatives that teach; they are not mistakes of the data.

`batch_negatives` counts the three per row; `false_negative_rate` is the share
of rows of a sampler's batches that hold at least one false negative (exact
duplicates included: they are true of the image too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clipedu.data.meaning import UNSTATED, compatible


@dataclass
class BatchNegatives:
    """Per row of one batch: is there another caption that is a duplicate / true of the image / off by one?"""

    duplicate: torch.Tensor  # bool [B]: another caption of the batch is the same string
    false_negative: torch.Tensor  # bool [B]: another caption is true of this row's image (duplicates included)
    hard_negative: torch.Tensor  # bool [B]: another caption is wrong in exactly one stated attribute, right in another


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def batch_negatives(image_values: torch.Tensor, caption_values: torch.Tensor, texts: list[str] | None = None
                    ) -> BatchNegatives:
    """Classify the off-diagonal captions of one batch for each row.

    image_values int [B, 5] and caption_values int [B, 5] (row i: image i and its own caption,
    `meaning.image_table` / `meaning.meaning_table`); texts, the B caption strings, find duplicates.
    """
    if image_values.shape != caption_values.shape:
        raise ValueError(f"one caption per image: got images {tuple(image_values.shape)} and captions "
                         f"{tuple(caption_values.shape)}")
    b = len(image_values)
    others = ~torch.eye(b, dtype=torch.bool)
    true_of = compatible(image_values, caption_values) & others
    stated = caption_values[None] != UNSTATED
    wrong = (caption_values[None] != image_values[:, None]) & stated  # [B image, B caption, 5]
    off_by_one = (wrong.sum(-1) == 1) & (stated.sum(-1) >= 2) & others
    if texts is None:
        duplicate = torch.zeros(b, dtype=torch.bool)
    else:
        keys = [_key(t) for t in texts]
        duplicate = torch.tensor([keys.count(k) > 1 for k in keys], dtype=torch.bool)
    return BatchNegatives(duplicate, true_of.any(1), off_by_one.any(1))


def sampler_negatives(sampler, image_values: torch.Tensor, caption_values: torch.Tensor,
                      captions: list[list[str]], steps: int = 50) -> dict[str, float]:
    """The share of rows with a duplicate / false negative / hard negative over `steps` batches of `sampler`.

    image_values [N, 5] for the dataset, caption_values [N, K, 5] (`meaning_table(data.captions)`).
    """
    counts = {"duplicate": 0, "false_negative": 0, "hard_negative": 0}
    rows = 0
    for step in range(steps):
        images, chosen = sampler.batch(step)
        texts = [captions[i][c] for i, c in zip(images.tolist(), chosen.tolist())]
        kinds = batch_negatives(image_values[images], caption_values[images, chosen], texts)
        for name in counts:
            counts[name] += int(getattr(kinds, name).sum())
        rows += len(images)
    return {f"{name}_rate": count / rows for name, count in counts.items()}


def false_negative_rate(sampler, image_values: torch.Tensor, caption_values: torch.Tensor,
                        steps: int = 50) -> float:
    """The share of rows, over `steps` batches of `sampler`, whose image has another caption of the
    batch that is true of it: the rows whose loss pushes the image away from a correct description."""
    rows = hits = 0
    for step in range(steps):
        images, chosen = sampler.batch(step)
        true_of = compatible(image_values[images], caption_values[images, chosen])
        true_of.fill_diagonal_(False)
        hits += int(true_of.any(1).sum())
        rows += len(images)
    return hits / rows
