"""Cross-modal retrieval: search by cosine similarity, and Recall@K in both directions.

Retrieval datasets (Flickr30k, COCO, the shapes world) give each image several
captions. The usual protocol (CLIP paper, table 13; open_clip):
  - text -> image: a caption is a hit at K if its one image is among the top K;
  - image -> text: an image is a hit at K if ANY of its captions is among the top K.
Ties count against the query: a true item tied with a wrong one ranks below it,
so a collapsed model (all similarities equal) scores 0, not 1.
"""

from typing import Sequence

import torch
import torch.nn.functional as F


def similarity(query_features: torch.Tensor, gallery_features: torch.Tensor) -> torch.Tensor:
    """Cosine similarity matrix [Q, G]."""
    return F.normalize(query_features.float(), dim=-1) @ F.normalize(gallery_features.float(), dim=-1).T


def search(
    query_features: torch.Tensor, gallery_features: torch.Tensor, k: int = 5
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most similar gallery items for each query: (scores [Q, k], indices [Q, k])."""
    k = min(k, len(gallery_features))
    return similarity(query_features, gallery_features).topk(k, dim=-1)


def recall_at_k(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    text_to_image: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@K for image->text ("i2t_r{k}") and text->image ("t2i_r{k}").

    text_to_image[j] is the index of the image that caption j describes.
    """
    n_img, n_txt = len(image_features), len(text_features)
    text_to_image = torch.as_tensor(text_to_image, dtype=torch.long).cpu()
    if len(text_to_image) != n_txt:
        raise ValueError(f"text_to_image has {len(text_to_image)} entries for {n_txt} captions")
    if n_txt and (text_to_image.min() < 0 or text_to_image.max() >= n_img):
        raise ValueError(f"text_to_image must index the {n_img} images")
    sims = similarity(text_features, image_features).cpu()  # [T, I]
    own = F.one_hot(text_to_image, n_img).bool()  # own[j, i]: caption j belongs to image i
    if not own.any(dim=0).all():  # an image without captions can never be retrieved
        raise ValueError(f"{int((~own.any(dim=0)).sum())} images have no caption; drop them first")

    # text -> image: rank = number of wrong images scoring >= the true image.
    true_score = sims[torch.arange(n_txt), text_to_image]
    t2i_rank = ((sims >= true_score[:, None]) & ~own).sum(dim=1)

    # image -> text: rank of an image's best caption among all wrong captions.
    sims_it, own_it = sims.T, own.T  # [I, T]
    best_own = sims_it.masked_fill(~own_it, float("-inf")).amax(dim=1)
    i2t_rank = ((sims_it >= best_own[:, None]) & ~own_it).sum(dim=1)

    out = {}
    for k in ks:
        out[f"i2t_r{k}"] = (i2t_rank < k).double().mean().item()
        out[f"t2i_r{k}"] = (t2i_rank < k).double().mean().item()
    return out


def flatten_captions(captions: Sequence[Sequence[str]]) -> tuple[list[str], torch.Tensor]:
    """Caption lists per image -> (all captions in one list, text_to_image [T]) for `recall_at_k`."""
    texts = [text for caps in captions for text in caps]
    owner = torch.tensor([i for i, caps in enumerate(captions) for _ in caps], dtype=torch.long)
    return texts, owner


def pair_similarity(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Cosine of each image with its own caption [N] (row i with row i): a CLIP score per pair.

    Low scores flag pairs whose caption does not fit the image, which is how
    web-scale datasets (LAION, DataComp) are filtered with CLIP.
    """
    if image_features.shape != text_features.shape:
        raise ValueError(f"one caption per image: got {tuple(image_features.shape)} image and "
                         f"{tuple(text_features.shape)} text features")
    return (F.normalize(image_features.float(), dim=-1) * F.normalize(text_features.float(), dim=-1)).sum(-1)
