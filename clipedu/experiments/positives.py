"""One positive or several: what false negatives do to a trained model's batches (notebooks 08 and 13).

CLIP's loss has one right caption per image, the diagonal. In the course
world a batch of 64 holds, for most rows, another caption that is also true of
the image (`clipedu.data.negatives`). `batch_metrics` scores a trained model on
fresh training-style batches and separates what that costs:

- `clip_loss`: the diagonal loss. It cannot reach 0 while a row has a second
  true caption: the best the model can do is share the probability between them;
- `indifferent_floor`: the mean over rows and both directions of ln(number of
  true captions in the row): the diagonal loss of a model that scores every
  true caption of a row alike, however well it knows the world. (A model can
  go below it only by preferring its own caption among true ones, e.g. the
  more specific one; nothing in an image says which of them was written.)
- `inbatch_acc`: the share of rows whose top caption is their own;
- `inbatch_true_acc`: the share of rows whose top caption is true of the image
  (its own or a false negative). The gap between the two is the false
  negatives, not mistakes.
"""

from __future__ import annotations

import torch

from clipedu.data.meaning import compatible
from clipedu.data.sampler import UniqueCaptionBatchSampler
from clipedu.embed import encode_images, encode_texts
from clipedu.loss import clip_loss, multi_positive_clip_loss
from clipedu.train.setup import TrainData


@torch.no_grad()
def batch_metrics(model, tokenizer, data: TrainData, batch_size: int = 64, batches: int = 20,
                  seed: int = 12345) -> dict[str, float]:
    """The losses and in-batch accuracies of `model` on `batches` unique-caption batches of the training set.

    The batches come from a sampler seeded apart from training (`seed`), so they are new combinations
    of training pairs, as the loss saw them. Needs `data.meaning` (the shapes world).
    """
    if data.meaning is None:
        raise ValueError("batch_metrics needs captions whose meaning is known: a shapes-world TrainData")
    image_values, caption_values = data.meaning
    sampler = UniqueCaptionBatchSampler(data.train.captions, batch_size, seed=seed)
    scale = float(model.logit_scale.exp())
    totals = {"clip_loss": 0.0, "multi_positive_loss": 0.0, "indifferent_floor": 0.0, "inbatch_acc": 0.0,
              "inbatch_true_acc": 0.0, "true_captions_per_row": 0.0}
    for step in range(batches):
        images, chosen = sampler.batch(step)
        texts = [data.train.captions[i][c] for i, c in zip(images.tolist(), chosen.tolist())]
        img = encode_images(model, data.train.images[images])
        txt = encode_texts(model, tokenizer, texts, truncate=True)
        img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
        positives = compatible(image_values[images], caption_values[images, chosen])
        positives.fill_diagonal_(True)
        top = (img @ txt.T).argmax(1)
        rows = torch.arange(len(images))
        totals["clip_loss"] += clip_loss(img, txt, scale).item()
        totals["multi_positive_loss"] += multi_positive_clip_loss(img, txt, scale, positives).item()
        per_row, per_column = positives.sum(1).double(), positives.sum(0).double()
        totals["indifferent_floor"] += ((per_row.log().mean() + per_column.log().mean()) / 2).item()
        totals["inbatch_acc"] += (top == rows).double().mean().item()
        totals["inbatch_true_acc"] += positives[rows, top].double().mean().item()
        totals["true_captions_per_row"] += per_row.mean().item()
    return {k: v / batches for k, v in totals.items()}
