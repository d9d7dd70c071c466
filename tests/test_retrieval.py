import numpy as np
import pytest
import torch

from clipedu.retrieval import recall_at_k, search


def brute_force_recall(img, txt, text_to_image, ks):
    """Independent reference: sort every row with numpy, look for the true items."""
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    sims = txt @ img.T
    out = {}
    for k in ks:
        t2i = [text_to_image[j] in np.argsort(-sims[j])[:k] for j in range(len(txt))]
        i2t = []
        for i in range(len(img)):
            top = np.argsort(-sims[:, i])[:k]
            i2t.append(any(text_to_image[j] == i for j in top))
        out[f"t2i_r{k}"] = float(np.mean(t2i))
        out[f"i2t_r{k}"] = float(np.mean(i2t))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_with_several_captions_per_image(seed):
    rng = np.random.default_rng(seed)
    n_img, dim = 30, 8
    text_to_image = np.concatenate([np.arange(n_img)] * 3 + [rng.integers(0, n_img, 10)])
    img = rng.normal(size=(n_img, dim))
    # captions near their image, with noise so that ranking is imperfect
    txt = img[text_to_image] + 1.2 * rng.normal(size=(len(text_to_image), dim))
    ks = (1, 3, 5, 10)
    got = recall_at_k(torch.tensor(img), torch.tensor(txt), torch.tensor(text_to_image), ks)
    want = brute_force_recall(img, txt, text_to_image, ks)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key
    assert 0 < got["t2i_r1"] < 1  # the example is non-trivial


def test_hand_example():
    # 2 images along the axes; 3 captions: two of image 0, one of image 1.
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[0.0, 1.0],    # caption of image 0, but looks like image 1
                        [1.0, 0.1],    # caption of image 0, correct
                        [1.0, 0.2]])   # caption of image 1, looks like image 0
    r = recall_at_k(img, txt, torch.tensor([0, 0, 1]), ks=(1, 2))
    # t2i: caption 0 -> image 1 first (miss), caption 1 -> image 0 (hit), caption 2 -> image 0 (miss)
    assert r["t2i_r1"] == pytest.approx(1 / 3)
    assert r["t2i_r2"] == 1.0
    # i2t: image 0 ranks captions by x: c1 (0.995) > c2 (0.98) > c0 -> its own c1 first: hit.
    # image 1 ranks by y/|t|: c0 (1.0) > c2 (0.196) > c1 -> c0 is foreign: miss at 1, hit at 2.
    assert r["i2t_r1"] == 0.5
    assert r["i2t_r2"] == 1.0


def test_ties_count_against_the_query():
    # A collapsed model: every embedding identical. Recall must be at chance or below, not 1.
    img = torch.ones(4, 3)
    txt = torch.ones(4, 3)
    r = recall_at_k(img, txt, torch.arange(4), ks=(1, 4))
    assert r["i2t_r1"] == 0.0 and r["t2i_r1"] == 0.0
    # 3 wrong items tie with the true one: it ranks 4th, a hit only from K = 4 on
    assert r["i2t_r4"] == 1.0 and r["t2i_r4"] == 1.0
    r3 = recall_at_k(img, txt, torch.arange(4), ks=(3,))
    assert r3["i2t_r3"] == 0.0 and r3["t2i_r3"] == 0.0


def test_bad_mapping_is_rejected():
    img, txt = torch.randn(3, 4), torch.randn(2, 4)
    with pytest.raises(ValueError, match="entries"):
        recall_at_k(img, txt, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="index"):
        recall_at_k(img, txt, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="no caption"):
        recall_at_k(img, txt, torch.tensor([0, 1]))


def test_search_returns_topk_by_cosine():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(5, 6)), rng.normal(size=(20, 6))
    scores, idx = search(torch.tensor(q), torch.tensor(g), k=4)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    sims = qn @ gn.T
    want = np.argsort(-sims, axis=1)[:, :4]
    assert np.array_equal(idx.numpy(), want)
    assert np.allclose(scores.numpy(), np.take_along_axis(sims, want, axis=1), atol=1e-6)
    # asking for more than the gallery returns the whole gallery, ranked
    assert search(torch.tensor(q), torch.tensor(g[:3]), k=10)[1].shape == (5, 3)


def test_flatten_captions_maps_each_caption_to_its_image():
    from clipedu.retrieval import flatten_captions

    texts, owner = flatten_captions([["a", "b"], ["c"], ["d", "e", "f"]])
    assert texts == ["a", "b", "c", "d", "e", "f"]
    assert owner.tolist() == [0, 0, 1, 2, 2, 2] and owner.dtype == torch.long


def test_pair_similarity_is_the_diagonal_of_the_similarity_matrix():
    from clipedu.retrieval import pair_similarity, similarity

    rng = np.random.default_rng(3)
    img, txt = torch.tensor(rng.normal(size=(7, 5))), torch.tensor(rng.normal(size=(7, 5)))
    assert torch.allclose(pair_similarity(img, txt), similarity(img, txt).diagonal(), atol=1e-6)
    hand = torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 3.0]])
    assert pair_similarity(*hand).item() == pytest.approx(24 / 25)
    with pytest.raises(ValueError, match="one caption per image"):
        pair_similarity(img, txt[:3])
