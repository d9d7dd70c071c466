"""Throughput of clipedu's tokenizer against open_clip's SimpleTokenizer.

Both tokenize the same 40,000 distinct captions (built from templates, words
and numbers, nothing downloaded) into [N, 77] tensors. Rounds alternate between
the two, each on a fresh tokenizer (empty word caches), and the script prints
median times and the ratio open_clip / clipedu (above 1: clipedu is faster).
It also times BPETokenizer.train on 5,000 captions with thousands of distinct
made-up words, asking for 4,000 ids.

    python benchmarks/bench_tokenizer.py [--rounds 5] [--n 40000]
"""
import argparse
import itertools
import statistics
import time

import torch
from open_clip.tokenizer import SimpleTokenizer

from clipedu.tokenizer import BPETokenizer

TEMPLATES = [
    "a photo of {n} {adj} {noun}.",
    "{n} {adj} {noun}s next to a {noun2}",
    "A close-up picture of the {adj} {noun} (number {n})",
    "there are {n} {noun}s and a {adj} {noun2} in this image!",
    "an {adj} {noun} sitting on a {noun2}, photo #{n}",
    "Two {noun}s & one {adj} {noun2}: shot {n}",  # '&' takes the slow (ftfy) path
    "le {noun} {adj} au café, n°{n}",  # accents take the slow path too
    "a blurry photo of a {adj} {noun}; it's {n} cm tall",
]
ADJECTIVES = ["red", "small", "large", "shiny", "wooden", "striped", "old", "green",
              "tiny", "fluffy", "broken", "purple", "square", "round", "wet", "bright"]
NOUNS = ["cat", "dog", "car", "tree", "house", "chair", "bird", "boat", "cup", "lamp",
         "horse", "apple", "clock", "bicycle", "teapot", "guitar", "mountain", "pizza"]


def make_captions(n: int) -> list[str]:
    """`n` distinct captions, the same every run."""
    combos = itertools.product(range(1000), TEMPLATES, ADJECTIVES, NOUNS)
    captions = []
    for number, template, adj, noun in combos:
        noun2 = NOUNS[(number + len(adj)) % len(NOUNS)]
        captions.append(template.format(n=number, adj=adj, noun=noun, noun2=noun2))
        if len(captions) == n:
            break
    assert len(set(captions)) == n, "captions must be distinct"
    return captions


def make_training_captions(n: int) -> list[str]:
    """`n` captions over 10,000 made-up words (four syllables each), the same every run."""
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "fu"]
    words = ["".join(w) for w in itertools.product(syllables, repeat=4)]
    return [f"a photo of the {words[(7 * i) % 10_000]} {words[(13 * i + 5) % 10_000]} and a "
            f"{words[(31 * i + 11) % 10_000]} {ADJECTIVES[i % len(ADJECTIVES)]} {NOUNS[i % len(NOUNS)]}"
            for i in range(n)]


def time_once(tokenize, captions) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    tokens = tokenize(captions)
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=40_000)
    args = parser.parse_args()
    captions = make_captions(args.n)

    times = {"clipedu": [], "open_clip": []}
    for _ in range(args.rounds):
        # Fresh instances: each round starts with empty word caches on both sides.
        ours, theirs = BPETokenizer.from_clip_bpe(), SimpleTokenizer()
        t_ours, tokens_ours = time_once(lambda c: ours(c, context_length=77), captions)
        t_theirs, tokens_theirs = time_once(lambda c: theirs(c, context_length=77), captions)
        assert torch.equal(tokens_ours, tokens_theirs), "clipedu and open_clip disagree"
        times["clipedu"].append(t_ours)
        times["open_clip"].append(t_theirs)

    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"{args.n} distinct captions, {args.rounds} rounds, outputs identical")
    for name, t in med.items():
        print(f"  {name:9s} median {t:.3f} s  ({args.n / t:,.0f} captions/s)")
    print(f"  speed-up open_clip / clipedu: {med['open_clip'] / med['clipedu']:.2f}x")

    training_captions = make_training_captions(5_000)
    start = time.perf_counter()
    trained = BPETokenizer.train(training_captions, vocab_size=4_000)
    print(f"BPETokenizer.train on {len(training_captions)} captions: {time.perf_counter() - start:.2f} s "
          f"({len(trained.merges)} merges, vocab_size {trained.vocab_size})")


if __name__ == "__main__":
    main()
