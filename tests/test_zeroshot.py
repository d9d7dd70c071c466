import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score
from sklearn.metrics import confusion_matrix as sk_confusion

from clipedu.zeroshot import (
    accuracy,
    classifier_from_prompts,
    classify_features,
    confusion_matrix,
    ensemble_prompts,
    zeroshot_accuracy,
    zeroshot_classifier,
)

WORDS = ["red", "green", "blue", "a", "photo", "of", "drawing"]


class WordTokenizer:
    """Maps each word to a fixed id (1-based; 0 pads)."""

    def __call__(self, texts, context_length=77, truncate=False):
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [WORDS.index(w) + 1 for w in t.rstrip(".").split()]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


class BagOfWords(torch.nn.Module):
    """A model whose text embedding is a fixed vector per word, summed, and whose
    image embedding is the image itself (a 3-vector: the colour)."""

    class config:
        image_resolution = 1

    def __init__(self, word_vectors):
        super().__init__()
        self.word_vectors = torch.nn.Parameter(word_vectors)  # [len(WORDS) + 1, D]
        self.positional_embedding = torch.zeros(8, 1)  # context length 8

    def encode_text(self, tokens):
        return self.word_vectors[tokens].sum(dim=1)

    def encode_image(self, images):
        return images.flatten(1)


def colour_model():
    vecs = torch.zeros(len(WORDS) + 1, 3)
    vecs[1:4] = torch.eye(3) * 5  # colours dominate
    vecs[4:] = torch.tensor([0.3, 0.2, 0.1])  # context words add a shared offset
    vecs[7] = torch.tensor([0.0, 0.0, 2.0])  # "drawing" leans blue
    return BagOfWords(vecs)


def test_prompt_ensembling_matches_hand_computation():
    model = colour_model()
    templates = ("a photo of {}.", "a drawing of {}.")
    W = zeroshot_classifier(model, WordTokenizer(), ["red", "green"], templates)
    assert W.shape == (3, 2)
    vecs = model.word_vectors.detach()
    for c, colour in enumerate(["red", "green"]):
        prompts = []
        for t in templates:
            ids = [WORDS.index(w) + 1 for w in t.format(colour).rstrip(".").split()]
            e = vecs[ids].sum(0)
            prompts.append(e / e.norm())
        mean = (prompts[0] + prompts[1]) / 2
        assert torch.allclose(W[:, c], mean / mean.norm(), atol=1e-6)


def test_ensembling_normalises_before_averaging():
    # a long prompt embedding must not outweigh a short one
    feats = torch.tensor([[[10.0, 0.0], [0.0, 1.0]]])  # 1 class, 2 prompts
    W = ensemble_prompts(feats)
    assert torch.allclose(W[:, 0], torch.tensor([1.0, 1.0]) / 2**0.5)


def test_predictions_of_identity_like_towers():
    model = colour_model()
    names = ["red", "green", "blue"]
    W = zeroshot_classifier(model, WordTokenizer(), names, ("a photo of {}.",))
    images = torch.tensor([[0.9, 0.1, 0.0], [0.0, 1.0, 0.2], [0.1, 0.0, 1.0], [0.0, 0.7, 0.1]])
    images = images.view(4, 3, 1, 1)
    labels = torch.tensor([0, 1, 2, 2])  # the last one is wrong on purpose
    assert zeroshot_accuracy(model, images, labels, W, batch_size=3) == 0.75
    # classify_features uses cosine similarity: scaling an image changes nothing
    feats = images.flatten(1)
    assert torch.equal(classify_features(feats, W), classify_features(100 * feats, W))
    assert classify_features(feats, W).tolist() == [0, 1, 2, 1]


def test_accuracy_and_confusion_against_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 200)
    preds = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 5, 200))
    p, l = torch.tensor(preds), torch.tensor(labels)
    assert accuracy(p, l) == pytest.approx(accuracy_score(labels, preds))
    cm = confusion_matrix(p, l, num_classes=6)
    assert np.array_equal(cm.numpy(), sk_confusion(labels, preds, labels=range(6)))
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        accuracy(torch.zeros(3), torch.zeros(2))


def test_empty_class_list_is_rejected():
    with pytest.raises(ValueError, match="at least one class"):
        zeroshot_classifier(colour_model(), WordTokenizer(), [])


def test_classes_may_have_different_numbers_of_prompts():
    model = colour_model()
    W = classifier_from_prompts(model, WordTokenizer(), [["red"], ["a photo of green", "a drawing of green", "green"]])
    vecs = model.word_vectors.detach()
    assert torch.allclose(W[:, 0], F.normalize(vecs[1], dim=0), atol=1e-6)
    prompts = [vecs[[4, 5, 6, 2]].sum(0), vecs[[4, 7, 6, 2]].sum(0), vecs[2]]
    mean = torch.stack([F.normalize(p, dim=0) for p in prompts]).mean(0)
    assert torch.allclose(W[:, 1], F.normalize(mean, dim=0), atol=1e-6)
    with pytest.raises(ValueError, match="at least one prompt for every class"):
        classifier_from_prompts(model, WordTokenizer(), [["red"], []])


def test_prompt_features_stack_classes_by_templates():
    from clipedu.zeroshot import prompt_features

    model = colour_model()
    prompts = [["a photo of red", "red"], ["a photo of blue", "blue"]]
    feats = prompt_features(model, WordTokenizer(), prompts)
    assert feats.shape == (2, 2, 3)
    vecs = model.word_vectors.detach()
    assert torch.allclose(feats[1, 0], F.normalize(vecs[[4, 5, 6, 3]].sum(0), dim=0), atol=1e-6)
    assert torch.allclose(feats[0, 1], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    # any subset of templates ensembles into the same classifier as classifier_from_prompts
    W = classifier_from_prompts(model, WordTokenizer(), prompts)
    assert torch.allclose(ensemble_prompts(feats), W, atol=1e-6)
    with pytest.raises(ValueError, match="same number"):
        prompt_features(model, WordTokenizer(), [["red"], ["blue", "a photo of blue"]])


def test_zeroshot_probs_is_a_scaled_cosine_softmax():
    from clipedu.zeroshot import zeroshot_logits, zeroshot_probs

    W = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1).T  # [D=2, C=3]
    x = torch.tensor([[3.0, 0.0]])  # cosines 1, 0, 0.7071 whatever its length
    logits = zeroshot_logits(x, W, logit_scale=10.0)
    assert torch.allclose(logits, torch.tensor([[10.0, 0.0, 10 / 2**0.5]]), atol=1e-5)
    p = zeroshot_probs(x, W, logit_scale=10.0)
    e = np.exp([10.0, 0.0, 10 / 2**0.5])
    assert np.allclose(p.numpy(), [e / e.sum()], atol=1e-6)
    # the argmax of the probabilities is classify_features' prediction
    rng = torch.Generator().manual_seed(0)
    feats, W2 = torch.randn(20, 5, generator=rng), F.normalize(torch.randn(5, 4, generator=rng), dim=0)
    assert torch.equal(zeroshot_probs(feats, W2).argmax(-1), classify_features(feats, W2))


def test_linear_classifier_reproduces_zero_shot_logits():
    from clipedu.zeroshot import linear_classifier, zeroshot_logits

    g = torch.Generator().manual_seed(1)
    W = F.normalize(torch.randn(6, 4, generator=g), dim=0)
    feats = F.normalize(torch.randn(10, 6, generator=g), dim=-1)
    layer = linear_classifier(W, logit_scale=50.0)
    assert isinstance(layer, torch.nn.Linear) and layer.weight.shape == (4, 6)
    with torch.no_grad():
        assert torch.allclose(layer(feats), zeroshot_logits(feats, W, 50.0), atol=1e-5)
    assert torch.all(layer.bias == 0)
