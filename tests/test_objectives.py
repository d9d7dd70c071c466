import math

import pytest
import torch
import torch.nn.functional as F

from clipedu.data.shapes import ShapesWorld
from clipedu.experiments import efficiency
from clipedu.experiments import objectives as O
from clipedu.experiments.captioning import caption_loss
from clipedu.loss import clip_loss
from clipedu.tokenizer import BPETokenizer
from clipedu.transforms import normalize

CAPTIONS = ["a red circle", "a blue square", "a photo of a red red circle", "there is a star"]


@pytest.fixture(scope="module")
def tokenizer():
    return BPETokenizer.train(CAPTIONS * 3 + ["a circle that is red", "a green star on the left"], vocab_size=600)


def tiny(name, tokenizer, seed=0):
    return O.build_objective(name, tokenizer, image_size=24, width=32, layers=1, context_length=16, seed=seed)


def images(n, seed=0):
    return torch.randn(n, 3, 24, 24, generator=torch.Generator().manual_seed(seed))


def test_bag_of_words_counts_words_and_ignores_sot_eot_padding(tokenizer):
    tokens = tokenizer(["a photo of a red red circle", "a red circle"], context_length=16)
    bags = O.bag_of_words(tokens, tokenizer.vocab_size, tokenizer.eot_token)
    assert bags.shape == (2, tokenizer.vocab_size)
    red, a = tokenizer.encode("red"), tokenizer.encode("a")
    assert len(red) == 1 and len(a) == 1
    assert bags[0, red[0]] == 2 and bags[0, a[0]] == 2 and bags[1, red[0]] == 1
    assert bags.sum(1).tolist() == [7, 3]  # words only: no SOT, EOT or padding zeros
    assert bags[:, tokenizer.sot_token].sum() == 0 and bags[:, tokenizer.eot_token].sum() == 0
    assert bags[:, 0].sum() == 0  # id 0 is the padding, not a word here
    # order does not matter; extra dimensions are kept
    swapped = tokenizer(["circle red a"], context_length=16)
    assert torch.equal(O.bag_of_words(swapped, tokenizer.vocab_size, tokenizer.eot_token)[0], bags[1])
    batched = O.bag_of_words(tokens.view(1, 2, 16), tokenizer.vocab_size, tokenizer.eot_token)
    assert batched.shape == (1, 2, tokenizer.vocab_size)


def test_bow_prediction_loss_is_cross_entropy_with_the_word_distribution():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 10, generator=g)
    one_word = torch.zeros(3, 10)
    one_word[torch.arange(3), torch.tensor([1, 4, 7])] = 1
    want = F.cross_entropy(logits, torch.tensor([1, 4, 7])).item()
    assert O.bow_prediction_loss(logits, one_word) == pytest.approx(want)
    bags = torch.tensor([[2.0, 0, 1, 0, 0, 0, 0, 0, 0, 1]] * 3)
    want = -(bags / 4 * logits.log_softmax(-1)).sum(1).mean()
    assert O.bow_prediction_loss(logits, bags) == pytest.approx(want.item(), rel=1e-6)
    assert O.bow_prediction_loss(torch.zeros(2, 10), bags[:2]) == pytest.approx(math.log(10), rel=1e-6)


def test_the_three_objectives_share_the_same_initial_image_encoder(tokenizer):
    encoders = [tiny(name, tokenizer).encoder.state_dict() for name in O.OBJECTIVES]
    for other in encoders[1:]:
        assert all(torch.equal(encoders[0][k], other[k]) for k in encoders[0])
    with pytest.raises(ValueError, match="unknown objective 'lm'; choose one of transformer"):
        O.build_objective("lm", tokenizer)


def test_caption_transformer_is_causal_and_its_loss_is_the_captioning_loss(tokenizer):
    model = tiny("transformer", tokenizer).eval()
    x = images(2)
    tokens = tokenizer(["a red circle", "there is a star"], context_length=16)
    logits = model(x, tokens)
    assert logits.shape == (2, 15, tokenizer.vocab_size)
    changed = tokens.clone()
    changed[:, 3] = tokenizer.encode("blue")[0]
    later = model(x, changed)
    assert torch.allclose(logits[:, :3], later[:, :3], atol=1e-6)  # outputs before position 3 cannot see it
    assert not torch.allclose(logits[:, 3:], later[:, 3:])
    trimmed = O.trim_padding(tokens, tokenizer.eot_token)
    assert trimmed.shape[1] == 6  # SOT there is a star EOT, the longest row
    assert model.loss(x, tokens).item() == pytest.approx(caption_loss(model(x, trimmed), trimmed,
                                                                       tokenizer.eot_token).item(), rel=1e-6)
    # the image matters: another image changes the predictions
    assert not torch.allclose(model(images(2, seed=1), tokens), logits)


def test_caption_transformer_scores_each_prompt_by_its_log_likelihood(tokenizer):
    model = tiny("transformer", tokenizer).eval()
    x = images(3)
    prompts = efficiency.prompt_tokens(tokenizer, [["a red circle", "there is a red circle"], ["a star", "there is a star"]],
                              context_length=16)
    scores = model.class_scores(x, prompts, chunk=5)  # chunks smaller than one image's prompts still work
    assert scores.shape == (3, 2)
    for c in range(2):
        for i in range(3):
            lls = []
            for k in range(2):
                t = O.trim_padding(prompts[c, k][None], tokenizer.eot_token)
                n_targets = t.shape[1] - 1  # every token after SOT, EOT included
                lls.append(-caption_loss(model(x[i:i + 1], t), t, tokenizer.eot_token).item() * n_targets)
            assert scores[i, c].item() == pytest.approx(sum(lls) / 2, rel=1e-4, abs=1e-4)


def test_bow_objectives_ignore_word_order(tokenizer):
    x = images(2)
    a = efficiency.prompt_tokens(tokenizer, [["a red circle"], ["a star"]], context_length=16)
    b = efficiency.prompt_tokens(tokenizer, [["circle red a"], ["star a"]], context_length=16)
    for name in ("bow_prediction", "bow_contrastive"):
        model = tiny(name, tokenizer).eval()
        with torch.no_grad():
            assert torch.allclose(model.class_scores(x, a), model.class_scores(x, b), atol=1e-6), name


def test_bow_contrastive_is_clip_loss_on_bag_embeddings(tokenizer):
    model = tiny("bow_contrastive", tokenizer)
    x = images(4)
    tokens = tokenizer(CAPTIONS, context_length=16)
    img = F.normalize(model.encoder(x), dim=-1)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    assert model.loss(x, tokens).item() == pytest.approx(clip_loss(img, txt, 1 / 0.07).item(), rel=1e-5)
    prompts = efficiency.prompt_tokens(tokenizer, [["a red circle", "a photo of a red red circle"], ["a blue square"] * 2],
                              context_length=16)
    scores = model.class_scores(x, prompts)
    assert scores.shape == (4, 2) and scores.abs().max() <= 1 + 1e-6  # cosines


def test_bow_predictor_scores_are_prompt_word_log_probabilities(tokenizer):
    model = tiny("bow_prediction", tokenizer).eval()
    x = images(2)
    prompts = efficiency.prompt_tokens(tokenizer, [["a red circle"]], context_length=16)
    log_p = model(x).log_softmax(-1)
    ids = [tokenizer.encode(w)[0] for w in ("a", "red", "circle")]
    want = log_p[:, ids].mean(1)
    assert torch.allclose(model.class_scores(x, prompts)[:, 0], want, atol=1e-6)


def test_training_lowers_every_objective_loss_and_logs_the_history(tokenizer):
    world = ShapesWorld(image_size=24)
    data = world.train(64)
    tok = BPETokenizer.train((c for caps in data.captions for c in caps), vocab_size=1000)
    test = world.test(20, "seen")
    prompts = efficiency.prompt_tokens(tok, [world.prompts(["a {}"])[n] for n in world.class_names])
    for name in O.OBJECTIVES:
        model = O.build_objective(name, tok, image_size=24, width=32, layers=1)
        history = efficiency.train_objective(model, data, tok, steps=30, batch_size=16, lr=3e-3, warmup_steps=3,
                                    evaluate=lambda m: {"acc": efficiency.objective_accuracy(m, test.images, test.labels,
                                                                                    prompts)}, eval_every=10)
        assert [h["step"] for h in history] == list(range(1, 31))
        assert history[-1]["images_seen"] == 30 * 16
        shared = ["step", "images_seen", "seconds", "loss", "lr"]  # step_record's, as in every loop
        assert list(history[0]) == shared + (["logit_scale"] if name == "bow_contrastive" else [])
        assert [h["step"] for h in history if "acc" in h] == [10, 20, 30]
        assert 0 <= history[-1]["acc"] <= 1
        first, last = history[0]["loss"], sum(h["loss"] for h in history[-5:]) / 5
        assert last < first, name
        assert not model.training


def test_objective_accuracy_takes_the_argmax_of_the_class_scores():
    class Fixed(torch.nn.Module):
        def class_scores(self, x, prompt_ids):
            return torch.stack([x[:, 0, 0, 0], -x[:, 0, 0, 0]], 1)  # class 0 if the first pixel is large

    imgs = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    imgs[:2] = 255
    assert normalize(imgs)[0, 0, 0, 0] > 0 > normalize(imgs)[3, 0, 0, 0]
    assert efficiency.objective_accuracy(Fixed(), imgs, torch.tensor([0, 0, 1, 0]), None) == 0.75


def test_images_to_reach_interpolates_between_evaluations():
    seen, acc = [100, 200, 300], [0.1, 0.3, 0.5]
    assert efficiency.images_to_reach(seen, acc, 0.2) == pytest.approx(150)
    assert efficiency.images_to_reach(seen, acc, 0.5) == pytest.approx(300)
    assert efficiency.images_to_reach(seen, acc, 0.05) == 100  # reached at the first evaluation
    assert efficiency.images_to_reach(seen, acc, 0.6) == math.inf
    assert efficiency.images_to_reach([100, 200, 300], [0.1, 0.4, 0.2], 0.3) == pytest.approx(100 + 100 * 2 / 3)
