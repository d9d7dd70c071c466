"""Byte-level BPE, the tokenizer of CLIP's text encoder (paper Sec. 2.4).

A caption becomes token ids in four steps (1-3 in `clipedu.pretokenize`):
  1. clean it: fix mojibake (ftfy), unescape HTML twice, collapse whitespace,
     lowercase;
  2. pre-tokenize it into words with CLIP's regex (digits one by one);
  3. write each word's UTF-8 bytes as printable characters (`bytes_to_unicode`)
     and mark its last symbol with `</w>`;
  4. merge adjacent symbols, lowest merge rank first (Sennrich et al. 2016),
     until no learned merge applies; look the symbols up in the vocabulary.

Vocabulary layout (CLIP's): 256 byte symbols, the same 256 with `</w>`, one
token per merge, then `<|startoftext|>` and `<|endoftext|>` as the last two ids.
EOT having the largest id lets the text encoder find it with `argmax`.
"""
from __future__ import annotations

import gzip
import heapq
import json
import os
from collections import Counter, defaultdict
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import torch

from clipedu.checkpoint import atomic_write
from clipedu.pretokenize import END_OF_WORD, EOT, SOT, bytes_to_unicode, pre_tokenize, word_symbols

CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"  # shipped in clipedu/assets, read with importlib.resources
CLIP_NUM_MERGES = 48_894  # 49,408 ids = 512 byte symbols + 48,894 merges + 2 specials
SAVE_FORMAT = "clipedu-bpe-tokenizer"

_WORD_CACHE_SIZE = 1 << 18  # words remembered per tokenizer; bounds memory on huge corpora


def merge_pair(symbols: Sequence[str], pair: tuple[str, str]) -> list[str]:
    """Replace every occurrence of `pair` in `symbols` by one joined symbol, left to right."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == pair[0] and symbols[i + 1] == pair[1]:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


class BPETokenizer:
    """CLIP's byte-level BPE tokenizer, built from an ordered list of merges."""

    def __init__(self, merges: Sequence[tuple[str, str]]):
        self.merges = [tuple(m) for m in merges]
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        byte_symbols = list(bytes_to_unicode().values())
        self.encoder: dict[str, int] = {}
        for token in byte_symbols + [s + END_OF_WORD for s in byte_symbols]:
            self.encoder[token] = len(self.encoder)
        for a, b in self.merges:
            # Two merge paths can spell the same token (ab+c, a+bc): one id for both.
            self.encoder.setdefault(a + b, len(self.encoder))
        self.sot_token = self.encoder.setdefault(SOT, len(self.encoder))
        self.eot_token = self.encoder.setdefault(EOT, len(self.encoder))
        self.vocab_size = len(self.encoder)
        self.decoder = {i: token for token, i in self.encoder.items()}
        self._byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
        self._cache: dict[str, tuple[int, ...]] = {SOT: (self.sot_token,), EOT: (self.eot_token,)}

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"

    # ---- learning merges -------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, verbose: bool = False) -> BPETokenizer:
        """Learn merges from `texts` with CLIP's scheme until the vocabulary has `vocab_size` ids.

        Each step merges the adjacent symbol pair that is most frequent over the
        corpus' words (ties: the smallest pair in string order). Words are counted
        first, and a step only updates the distinct words that hold the chosen
        pair. Stops early (smaller vocabulary) when every word is one symbol.
        """
        if vocab_size < 514:
            raise ValueError(f"vocab_size={vocab_size} is too small: the 512 byte symbols and the "
                             "2 special tokens already take 514 ids; ask for at least 514.")
        word_counts: Counter[str] = Counter()
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"train() expects an iterable of str, got an item of type {type(text).__name__}")
            word_counts.update(w for w in pre_tokenize(text) if w not in (SOT, EOT))
        words = [word_symbols(w) for w in word_counts]
        freqs = list(word_counts.values())

        pair_counts: Counter[tuple[str, str]] = Counter()
        where: defaultdict[tuple[str, str], set[int]] = defaultdict(set)  # pair -> words that held it
        for i, symbols in enumerate(words):
            for pair in zip(symbols, symbols[1:]):
                pair_counts[pair] += freqs[i]
                where[pair].add(i)
        # Max-heap of (-count, pair). Scanning all pairs each step is too slow, so a
        # changed count is pushed again and outdated entries are skipped when popped.
        heap = [(-count, pair) for pair, count in pair_counts.items()]
        heapq.heapify(heap)

        known = set(cls([]).encoder)  # the 514 tokens every vocabulary starts with
        tokenizer_size, merges = len(known), []
        while tokenizer_size < vocab_size and heap:
            neg_count, pair = heapq.heappop(heap)
            if pair_counts.get(pair) != -neg_count:
                continue  # outdated entry
            changed = set()
            for i in sorted(where.pop(pair)):
                old = words[i]
                new = words[i] = merge_pair(old, pair)
                if len(new) == len(old):
                    continue  # the pair left this word in an earlier step
                for p in zip(old, old[1:]):
                    pair_counts[p] -= freqs[i]
                    changed.add(p)
                for p in zip(new, new[1:]):
                    pair_counts[p] += freqs[i]
                    changed.add(p)
                    where[p].add(i)
            for p in changed:
                if pair_counts[p] > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
                else:
                    del pair_counts[p]
            merges.append(pair)
            if pair[0] + pair[1] not in known:
                known.add(pair[0] + pair[1])
                tokenizer_size += 1
            if verbose:
                print(f"merge {len(merges)}: {pair[0]!r} + {pair[1]!r} -> {pair[0] + pair[1]!r} ({-neg_count} times)")
        return cls(merges)

    @classmethod
    def from_captions(cls, captions: Sequence[Sequence[str]], vocab_size: int) -> BPETokenizer:
        """Merges learned on a dataset's captions (captions[i] lists image i's captions), as `train` does.

        The course trains its small tokenizers this way; with a vocabulary larger than
        the captions need (ShapesWorld's `VOCAB_SIZE`), every word becomes one token.
        """
        return cls.train((c for caps in captions for c in caps), vocab_size)

    # ---- loading and saving ----------------------------------------------

    @classmethod
    def from_clip_bpe(cls, path: str | os.PathLike | None = None) -> BPETokenizer:
        """CLIP's tokenizer: the first 48,894 merges of `bpe_simple_vocab_16e6.txt.gz`."""
        source = Path(path) if path is not None else resources.files("clipedu.assets").joinpath(CLIP_BPE_FILE)
        if not source.is_file():
            raise FileNotFoundError(f"CLIP's merges file {source} is missing; copy {CLIP_BPE_FILE} "
                                    "from openai/CLIP (or the open_clip_torch wheel) to that place.")
        try:
            lines = gzip.decompress(source.read_bytes()).decode("utf-8").split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise ValueError(f"{source} is not a readable gzip-compressed merges file ({e}).") from e
        merges = [tuple(line.split()) for line in lines[1:CLIP_NUM_MERGES + 1]]  # line 0 is a header
        if len(merges) < CLIP_NUM_MERGES or any(len(m) != 2 for m in merges):
            raise ValueError(f"{source} is not CLIP's merges file: expected {CLIP_NUM_MERGES} lines "
                             "'<symbol> <symbol>' after the header.")
        return cls(merges)

    def save(self, path: str | os.PathLike) -> None:
        """Write the merges and metadata as JSON, atomically (temp file, then os.replace)."""
        state = {"format": SAVE_FORMAT, "version": 1, "vocab_size": self.vocab_size,
                 "special_tokens": [SOT, EOT], "merges": [list(m) for m in self.merges]}

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(state, f, ensure_ascii=False)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a tokenizer written by `save`; a file of another kind raises ValueError."""
        path = Path(path)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not a tokenizer file written by BPETokenizer.save: "
                             f"it is not valid JSON ({e}).") from e
        if not isinstance(state, dict) or state.get("format") != SAVE_FORMAT:
            raise ValueError(f"{path} is not a tokenizer file written by BPETokenizer.save "
                             f"(its 'format' is not {SAVE_FORMAT!r}).")
        merges = state.get("merges")
        is_pair = lambda m: isinstance(m, list) and len(m) == 2 and all(isinstance(s, str) and s for s in m)
        if not isinstance(merges, list) or not all(is_pair(m) for m in merges):
            raise ValueError(f"{path} is corrupt: 'merges' must be a list of [symbol, symbol] pairs.")
        tokenizer = cls([(a, b) for a, b in merges])
        if tokenizer.vocab_size != state.get("vocab_size"):
            raise ValueError(f"{path} is corrupt: its merges give {tokenizer.vocab_size} ids "
                             f"but it records vocab_size={state.get('vocab_size')}.")
        return tokenizer

    # ---- encoding and decoding ---------------------------------------------

    def bpe(self, word: str) -> list[str]:
        """Step 4 for one word: apply the merges, lowest rank first, until none applies."""
        symbols = word_symbols(word)
        while len(symbols) > 1:
            pair = min(zip(symbols, symbols[1:]), key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if pair not in self.bpe_ranks:
                break
            symbols = merge_pair(symbols, pair)
        return symbols

    def _word_ids(self, word: str) -> tuple[int, ...]:
        """Ids of one word; captions repeat words a lot, so results are cached."""
        ids = self._cache.get(word)
        if ids is None:
            ids = tuple(self.encoder[s] for s in self.bpe(word))
            if len(self._cache) < _WORD_CACHE_SIZE:
                self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without SOT/EOT (a literal "<|endoftext|>" in the text is EOT, as in CLIP)."""
        if not isinstance(text, str):
            raise TypeError(f"encode() expects a str, got {type(text).__name__}")
        ids: list[int] = []
        for word in pre_tokenize(text):
            ids.extend(self._word_ids(word))
        return ids

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """Text of token ids; every word comes back followed by one space.

        SOT is dropped and decoding stops at the first EOT, so a padded row of
        `__call__` decodes to its caption. Unlike CLIP's decode, `</w>` is
        turned into a space per token, so text that itself contains "</w>"
        also round-trips: decode(encode(x)) == "".join(w + " " for w in pre_tokenize(x)).
        """
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 1:
                raise ValueError(f"decode() takes one sequence of ids, got a tensor of shape {tuple(ids.shape)}; "
                                 "decode rows one at a time: [tok.decode(row) for row in tokens].")
            ids = ids.tolist()
        out = bytearray()
        for i in ids:
            if i == self.eot_token:
                break
            if i == self.sot_token:
                continue
            token = self.decoder.get(i)
            if token is None:
                raise ValueError(f"token id {i} is outside this tokenizer's vocabulary [0, {self.vocab_size}).")
            word_end = token.endswith(END_OF_WORD)
            out += bytes(self._byte_decoder[c] for c in (token[:-len(END_OF_WORD)] if word_end else token))
            if word_end:
                out += b" "
        return out.decode("utf-8", errors="replace")

    def __call__(self, texts: str | list[str], context_length: int = 77, truncate: bool = False) -> torch.LongTensor:
        """Batch of token ids [N, context_length]: SOT, tokens, EOT, zero padding (openai's clip.tokenize).

        A text that does not fit raises ValueError; with truncate=True it is cut
        and EOT replaces the last kept token, so every row still ends in EOT.
        """
        if isinstance(texts, str):
            texts = [texts]
        if context_length < 2:
            raise ValueError(f"context_length={context_length} leaves no room for SOT and EOT; use at least 2.")
        rows = []
        for text in texts:
            ids = [self.sot_token, *self.encode(text), self.eot_token]
            if len(ids) > context_length:
                if not truncate:
                    raise ValueError(
                        f"text {text[:40]!r}{'...' if len(text) > 40 else ''} is {len(ids)} tokens long "
                        f"(with SOT and EOT), more than context_length={context_length}; shorten it "
                        "or pass truncate=True to keep its beginning.")
                ids = ids[:context_length - 1] + [self.eot_token]
            rows.append(ids + [0] * (context_length - len(ids)))
        if not rows:
            return torch.zeros(0, context_length, dtype=torch.long)
        return torch.tensor(rows, dtype=torch.long)


@lru_cache(maxsize=None)
def clip_tokenizer() -> BPETokenizer:
    """CLIP's tokenizer (49,408 ids), loaded once and shared."""
    return BPETokenizer.from_clip_bpe()


def caption_token_table(tokenizer, captions: list[list[str]], context_length: int) -> torch.Tensor:
    """Every caption tokenised once: [N, K, L], where [i, j] is caption j of image i.

    K is the longest caption list; shorter lists are padded by repeating their
    captions, so `table[image_idx, caption_idx]` reads a sampler batch directly.
    """
    width = max(len(c) for c in captions)
    flat = [c[j % len(c)] for c in captions for j in range(width)]
    return tokenizer(flat, context_length=context_length, truncate=True).view(len(captions), width, -1)
