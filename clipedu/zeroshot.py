"""Zero-shot classification: a classifier built from text prompts alone (paper, 3.1.2).

Each class name is written into one or more prompt templates ("a photo of a {}.").
The text tower embeds every prompt; the class's weight vector is the normalised
mean of its normalised prompt embeddings (prompt ensembling, paper 3.1.4). An
image is assigned the class whose weight vector has the largest cosine
similarity with its image embedding.
"""

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clipedu.embed import encode_images, encode_texts


def ensemble_prompts(prompt_features: torch.Tensor) -> torch.Tensor:
    """[C, T, D] prompt embeddings -> [D, C] classifier: normalise, mean over T, renormalise."""
    mean = F.normalize(prompt_features, dim=-1).mean(dim=1)
    return F.normalize(mean, dim=-1).T


def classifier_from_prompts(model: nn.Module, tokenizer, prompts: Sequence[Sequence[str]]) -> torch.Tensor:
    """[D, C] classifier from explicit prompts: prompts[c] lists class c's prompts (any number)."""
    if len(prompts) == 0 or any(len(p) == 0 for p in prompts):
        raise ValueError("classifier_from_prompts needs at least one prompt for every class")
    feats = encode_texts(model, tokenizer, [t for p in prompts for t in p])
    columns = [ensemble_prompts(chunk[None]) for chunk in feats.split([len(p) for p in prompts])]
    return torch.cat(columns, dim=1)


def zeroshot_classifier(
    model: nn.Module,
    tokenizer,
    class_names: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
) -> torch.Tensor:
    """The zero-shot weight matrix [D, C]: column c is class c's ensembled prompt embedding."""
    if len(class_names) == 0 or len(templates) == 0:
        raise ValueError("zeroshot_classifier needs at least one class name and one template")
    return classifier_from_prompts(model, tokenizer, [[t.format(n) for t in templates] for n in class_names])


def classify_features(image_features: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """Predicted class per image: argmax of cosine similarity with the classifier columns."""
    logits = F.normalize(image_features.float(), dim=-1) @ classifier.to(image_features.device).float()
    return logits.argmax(dim=-1)


def zeroshot_predict(
    model: nn.Module, images: torch.Tensor, classifier: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Predicted class indices [N] for uint8 (or preprocessed float) images."""
    return classify_features(encode_images(model, images, batch_size), classifier)


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of predictions equal to the labels."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    return (predictions.cpu() == labels.cpu()).double().mean().item()


def zeroshot_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    classifier: torch.Tensor,
    batch_size: int = 256,
) -> float:
    """Top-1 zero-shot accuracy; `labels` index the classifier's columns."""
    return accuracy(zeroshot_predict(model, images, classifier, batch_size), labels)


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[C, C] counts: row = true class, column = predicted class (sklearn's convention)."""
    index = labels.cpu().long() * num_classes + predictions.cpu().long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def prompt_features(model: nn.Module, tokenizer, prompts: Sequence[Sequence[str]],
                    truncate: bool = False) -> torch.Tensor:
    """Normalised embeddings [C, T, D] of prompts[c][t]: class c written into template t.

    Every class needs the same number T of prompts. Encoding all templates once lets a
    template sweep try any subset: `ensemble_prompts(features[:, chosen])`. truncate:
    cut prompts longer than the model's context instead of raising (see `encode_texts`).
    """
    counts = {len(p) for p in prompts}
    if len(prompts) == 0 or len(counts) != 1 or 0 in counts:
        raise ValueError("prompt_features needs the same number (at least one) of prompts for every class; "
                         "use classifier_from_prompts for uneven lists")
    feats = encode_texts(model, tokenizer, [t for p in prompts for t in p], truncate=truncate)
    return feats.view(len(prompts), counts.pop(), -1)


def zeroshot_logits(image_features: torch.Tensor, classifier: torch.Tensor, logit_scale: float = 100.0) -> torch.Tensor:
    """logit_scale * cosine [N, C] of each image with each class column (100: CLIP's clamp, tau = 0.01)."""
    image_features = F.normalize(image_features.float(), dim=-1)
    return logit_scale * image_features @ classifier.to(image_features.device).float()


def zeroshot_probs(image_features: torch.Tensor, classifier: torch.Tensor, logit_scale: float = 100.0) -> torch.Tensor:
    """Class probabilities [N, C]: the softmax of `zeroshot_logits` over the classes."""
    return zeroshot_logits(image_features, classifier, logit_scale).softmax(dim=-1)


def linear_classifier(classifier: torch.Tensor, logit_scale: float = 100.0) -> nn.Linear:
    """The zero-shot classifier as an ordinary `nn.Linear(D, C)` layer on normalised image features.

    Its weight is logit_scale * classifier.T and its bias 0: the text tower wrote the
    weights of a linear classifier (paper 3.1.2), which can be fine-tuned like any other.
    """
    d, c = classifier.shape
    layer = nn.Linear(d, c)
    with torch.no_grad():
        layer.weight.copy_(logit_scale * classifier.T.float())
        layer.bias.zero_()
    return layer
