"""Batch samplers: which (image, caption) pairs form each step's batch.

CLIP's loss treats the N-1 other captions of a batch as negatives for each
image. When two images in a batch share a caption string ("a red circle"),
the loss pushes each image away from a caption that describes it perfectly.
`UniqueCaptionBatchSampler` chooses, for every image of a batch, one of its
captions such that no caption string appears twice (compared the way CLIP's
tokenizer sees them: lower-cased, whitespace collapsed). That removes exact
duplicates only: "something red" and "a crimson disc" are different strings
and still both true of a red circle (semantic false negatives,
`clipedu.data.negatives`). `RandomBatchSampler` is the plain sampler it is
measured against.

Each step's global batch is a pure function of (seed, step): the training
loop can resume at any step, and shards the batch across processes by
slicing, so the data never depends on the number of processes.
"""

from __future__ import annotations

from collections import deque
from itertools import chain

import numpy as np
import torch


def _caption_key(text: str) -> str:
    return " ".join(text.lower().split())


def _checked_captions(dataset_captions, batch_size: int) -> list:
    """The caption lists of a dataset (or the lists themselves), checked against the batch size."""
    captions = getattr(dataset_captions, "captions", dataset_captions)
    n = len(captions)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if batch_size > n:
        raise ValueError(f"batch larger than the dataset: batch_size={batch_size} but only {n} images; "
                         "use a smaller batch or more data")
    for i, caps in enumerate(captions):
        if len(caps) == 0:
            raise ValueError(f"image {i} has no captions: every image needs at least one")
    return captions


def _epoch_of(step: int, steps_per_epoch: int) -> tuple[int, int]:
    """(epoch, batch index within it) of a step."""
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    return divmod(step, steps_per_epoch)


class UniqueCaptionBatchSampler:
    """Global batches of (image index, caption index) with no caption string twice.

    The data is walked in epochs: epoch e visits the images in a permutation
    seeded by (seed, e), `steps_per_epoch = N // batch_size` batches per
    epoch (the last partial batch is dropped; it differs every epoch). An
    image whose captions are all taken in the current batch is deferred to
    the next batch of the same epoch; if a batch still comes out short, it is
    topped up with other images that have a free caption. `dataset_captions`
    is a list of caption lists, or a dataset with a `captions` attribute.
    """

    def __init__(self, dataset_captions, batch_size: int, seed: int = 0):
        captions = _checked_captions(dataset_captions, batch_size)
        n = len(captions)
        keys: dict[str, int] = {}
        self.caption_ids = []  # per image: the integer id of each caption's text
        for caps in captions:
            self.caption_ids.append([keys.setdefault(_caption_key(c), len(keys)) for c in caps])
        if batch_size > len(keys):
            raise ValueError(f"batch_size={batch_size} but the dataset has only {len(keys)} distinct captions, "
                             "so a batch without duplicate captions is impossible; use a batch of at most "
                             f"{len(keys)}")
        self.num_images, self.num_distinct_captions = n, len(keys)
        self.batch_size, self.seed = batch_size, seed
        self.steps_per_epoch = n // batch_size
        self._epoch, self._plan = -1, (torch.empty(0), torch.empty(0))

    def __len__(self) -> int:
        return self.steps_per_epoch

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch of `step`: image indices and caption indices, LongTensors [B]."""
        epoch, j = _epoch_of(step, self.steps_per_epoch)
        if epoch != self._epoch:  # one plan per epoch, cached: O(N) once, then O(B) per step
            self._plan, self._epoch = self._plan_epoch(epoch), epoch
        images, captions = self._plan
        return images[j].clone(), captions[j].clone()

    def _plan_epoch(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All batches of one epoch, [steps_per_epoch, B] each, from (seed, epoch) alone."""
        # SeedSequence spreads (seed, epoch) into one well-mixed 64-bit seed
        state = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1, dtype=np.uint64)[0])
        g = torch.Generator().manual_seed(state)
        n, size = self.num_images, self.batch_size
        queue = deque(torch.randperm(n, generator=g).tolist())
        first_choice = torch.randint(0, 1 << 30, (n,), generator=g).tolist()  # varies captions across epochs
        plan_images, plan_captions = [], []
        for _ in range(self.steps_per_epoch):
            images, captions, used = [], [], set()
            deferred = []
            # walk the permutation; give up scanning after many clashes (heavily repeated captions)
            while queue and len(images) < size and len(deferred) < 4 * size:
                i = queue.popleft()
                c = self._free_caption(i, first_choice[i], used)
                if c is None:
                    deferred.append(i)
                else:
                    images.append(i)
                    captions.append(c)
            queue.extendleft(reversed(deferred))  # deferred images open the next batch
            if len(images) < size:
                self._top_up(images, captions, used, first_choice, g)
            plan_images.append(images)
            plan_captions.append(captions)
        return torch.tensor(plan_images, dtype=torch.long), torch.tensor(plan_captions, dtype=torch.long)

    def _free_caption(self, i: int, first: int, used: set[int]) -> int | None:
        """Index of a caption of image i whose text is not in `used` (and mark it used)."""
        ids = self.caption_ids[i]
        for t in range(len(ids)):
            c = (first + t) % len(ids)
            if ids[c] not in used:
                used.add(ids[c])
                return c
        return None

    def _top_up(self, images: list[int], captions: list[int], used: set[int],
                first_choice: list[int], g: torch.Generator) -> None:
        """Complete a short batch with random images (then any image) that have a free caption."""
        size, taken = self.batch_size, set(images)
        candidates = torch.randint(0, self.num_images, (8 * size,), generator=g).tolist()
        for i in chain(candidates, range(self.num_images)):
            if len(images) == size:
                return
            if i not in taken:
                c = self._free_caption(i, first_choice[i], used)
                if c is not None:
                    images.append(i)
                    captions.append(c)
                    taken.add(i)
        if len(images) < size:
            raise ValueError(f"could only find {len(images)} images with distinct captions for a batch of "
                             f"{size}; use a smaller batch_size")




class RandomBatchSampler:
    """Global batches of (image index, caption index) drawn uniformly: the plain sampler.

    Epoch e visits the images in a permutation seeded by (seed, e); each image
    takes one of its captions at random. Duplicate captions are left in: this is
    the sampler that `UniqueCaptionBatchSampler` is measured against. The same
    interface: `batch(step)` is a pure function of (seed, step).
    """

    def __init__(self, dataset_captions, batch_size: int, seed: int = 0):
        captions = _checked_captions(dataset_captions, batch_size)
        n = len(captions)
        self.num_captions = torch.tensor([len(c) for c in captions])
        self.num_images, self.batch_size, self.seed = n, batch_size, seed
        self.steps_per_epoch = n // batch_size
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch of `step`: image indices and caption indices, LongTensors [B]."""
        epoch, j = _epoch_of(step, self.steps_per_epoch)
        state = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1, dtype=np.uint64)[0])
        if epoch != self._epoch:
            self._order, self._epoch = torch.randperm(self.num_images, generator=torch.Generator().manual_seed(state)), epoch
        images = self._order[j * self.batch_size:(j + 1) * self.batch_size]
        g = torch.Generator().manual_seed(state + 1 + j)
        captions = (torch.rand(len(images), generator=g) * self.num_captions[images]).long()
        return images.clone(), captions
