"""Fine-tuning a trained CLIP (notebook 12): a classifier end to end, or more contrastive training.

`finetune_classifier` trains an `ImageClassifier` (image tower + linear head)
with two learning rates; `finetune_contrastive` continues CLIP's own loss on new
captioned data, optionally one direction only (an ablation).
"""

import torch
import torch.nn.functional as F
from torch import nn

from clipedu.data.sampler import UniqueCaptionBatchSampler
from clipedu.embed import input_resolution, prepare_images
from clipedu.loss import (
    image_to_text_loss,
    logits_matrix,
    text_to_image_loss,
)
from clipedu.probe import ImageClassifier
from clipedu.train.config import MAX_LOGIT_SCALE
from clipedu.train.loop import train_step
from clipedu.train.optim import build_optimizer


def finetune_classifier(classifier: ImageClassifier, images: torch.Tensor, labels: torch.Tensor, steps: int = 50,
                        batch_size: int = 64, lr_backbone: float = 1e-4, lr_head: float = 1e-3,
                        weight_decay: float = 0.0, seed: int = 0) -> list[float]:
    """Train tower and head together on (uint8 images, labels) with two AdamW learning rates.

    Random batches are drawn from a generator seeded by `seed`; lr_backbone=0 freezes
    the tower (a linear probe trained end to end). Returns the loss of every step.
    """
    groups = [{"params": list(classifier.visual.parameters()), "lr": lr_backbone},
              {"params": list(classifier.head.parameters()), "lr": lr_head}]
    opt = torch.optim.AdamW(groups, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels, dtype=torch.long)
    classifier.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(images), (batch_size,), generator=g)
        batch = (images[idx], labels[idx].to(classifier.head.weight.device))
        losses.append(train_step(classifier, batch, opt, lambda model, x, y: F.cross_entropy(model(x), y)))
    classifier.eval()
    return losses


def finetune_contrastive(model: nn.Module, tokenizer, dataset, steps: int = 50, batch_size: int = 64,
                         lr: float = 1e-4, weight_decay: float = 0.1, warmup_steps: int = 0,
                         directions: str = "both", seed: int = 0, grad_clip: float | None = 1.0) -> list[float]:
    """Continue CLIP's contrastive training on a captioned dataset (in place); return the losses.

    The training recipe in short: batches without duplicate captions
    (`UniqueCaptionBatchSampler`), AdamW without decay on gains and biases, a
    linear warmup over `warmup_steps` then a constant rate, the gradient norm
    clipped at `grad_clip`, the temperature clamped. It minimises the symmetric loss
    (directions="both"), or only its image->text or text->image half (ablations).
    """
    terms = {"both": (image_to_text_loss, text_to_image_loss), "image_to_text": (image_to_text_loss,),
             "text_to_image": (text_to_image_loss,)}
    if directions not in terms:
        raise ValueError(f"directions must be one of {sorted(terms)}, got {directions!r}")

    def loss_fn(model: nn.Module, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        logits = logits_matrix(*model(images, tokens))
        return sum(term(logits) for term in terms[directions]) / len(terms[directions])

    device = next(model.parameters()).device
    resolution, context_length = input_resolution(model), model.positional_embedding.shape[0]
    opt = build_optimizer(model, lr, weight_decay)  # no decay on gains, biases, embeddings, temperature
    sampler = UniqueCaptionBatchSampler(dataset.captions, batch_size, seed=seed)
    model.train()
    losses = []
    for step in range(steps):
        image_idx, caption_idx = sampler.batch(step)
        texts = [dataset.captions[i][j] for i, j in zip(image_idx.tolist(), caption_idx.tolist())]
        images = prepare_images(dataset.images[image_idx], resolution).to(device)
        tokens = tokenizer(texts, context_length=context_length, truncate=True).to(device)
        losses.append(train_step(model, (images, tokens), opt, loss_fn, grad_clip=grad_clip,
                                 lr=lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else lr,
                                 max_logit_scale=MAX_LOGIT_SCALE))
    model.eval()
    return losses
