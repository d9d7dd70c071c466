"""What a training run measures: zero-shot accuracy on the labelled test sets, Recall@K on the retrieval set."""

import torch

from clipedu.embed import encode_images, encode_texts
from clipedu.model import CLIP
from clipedu.retrieval import flatten_captions, recall_at_k
from clipedu.train.setup import TrainData
from clipedu.zeroshot import classifier_from_prompts, zeroshot_accuracy


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
    model.train(was_training)
    return metrics
