"""What a training run measures: zero-shot accuracy on the labelled test sets, Recall@K on the retrieval set,
and for the shapes world the hard suite (`clipedu.data.hard_suite`): fine-grained zero-shot and full-caption R@1."""

import torch

from clipedu.data.contract import CaptionedImages
from clipedu.data.hard_suite import fine_labels, fine_prompts, full_captions
from clipedu.embed import encode_images, encode_texts
from clipedu.model import CLIP
from clipedu.retrieval import flatten_captions, recall_at_k
from clipedu.train.setup import TrainData
from clipedu.zeroshot import classifier_from_prompts, classify_features, zeroshot_accuracy


@torch.no_grad()
def evaluate(model: CLIP, tokenizer, data: TrainData) -> dict[str, float]:
    """Zero-shot accuracy on each labelled test set, and Recall@1/5 on the retrieval set."""
    was_training = model.training
    model.eval()
    metrics = {}
    if data.class_prompts:
        classifier = classifier_from_prompts(model, tokenizer, data.class_prompts)
        for name, dataset in data.zeroshot_sets.items():
            metrics[name] = zeroshot_accuracy(model, dataset.images, dataset.labels, classifier)
    texts, owner = flatten_captions(data.retrieval_set.captions)
    recall = recall_at_k(encode_images(model, data.retrieval_set.images),
                         encode_texts(model, tokenizer, texts, truncate=True), owner, ks=(1, 5))
    metrics.update(recall)
    if data.hard is not None:
        metrics.update(hard_suite(model, tokenizer, data.hard))
    model.train(was_training)
    return metrics


@torch.no_grad()
def hard_suite(model: CLIP, tokenizer, test: CaptionedImages) -> dict[str, float]:
    """fine_zeroshot_acc (864 classes: colour x shape x size x position) and retrieval_r1 (each image's
    full caption, Recall@1 averaged over image->text and text->image) on a ShapesWorld test set."""
    images = encode_images(model, test.images)
    classifier = classifier_from_prompts(model, tokenizer, fine_prompts())
    fine = (classify_features(images, classifier) == fine_labels(test.attributes)).float().mean().item()
    texts = encode_texts(model, tokenizer, full_captions(test.attributes), truncate=True)
    recall = recall_at_k(images, texts, torch.arange(len(texts)), ks=(1,))
    return {"fine_zeroshot_acc": fine, "retrieval_r1": (recall["i2t_r1"] + recall["t2i_r1"]) / 2}
