"""Steps 1-3 of CLIP's tokenizer: clean a caption, split it into words, spell each word in byte symbols.

`clipedu.tokenizer` runs step 4, byte-pair encoding, on the symbols this module
produces; the two steps are apart because cleaning and splitting are fixed rules,
while the merges are learned (or loaded from CLIP's merges file).
"""
from __future__ import annotations

import html
from functools import lru_cache

import ftfy
import regex

SOT, EOT, END_OF_WORD = "<|startoftext|>", "<|endoftext|>", "</w>"

# CLIP's pre-tokenizer: special tokens, English contractions, runs of letters,
# single digits, runs of other non-space characters.
PRE_TOKENIZE_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


@lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """Map each byte 0..255 to a printable character, as GPT-2 and CLIP do.

    Printable Latin-1 bytes stand for themselves; the other 68 (controls,
    space, ...) are shifted to code points 256+ so that no symbol is whitespace.
    The dict's order is CLIP's: it fixes the ids of the 256 byte symbols.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}


def clean_text(text: str) -> str:
    """CLIP's cleaning: ftfy.fix_text, html.unescape twice, strip, collapse whitespace, lowercase."""
    # Fast path: ftfy and html.unescape leave printable ASCII without '&' unchanged
    # (no mojibake, entities or control characters possible), and ftfy is slow.
    if not (text.isascii() and text.isprintable() and "&" not in text):
        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


def pre_tokenize(text: str) -> list[str]:
    """Clean `text` and split it into CLIP's words (steps 1 and 2)."""
    return PRE_TOKENIZE_PATTERN.findall(clean_text(text))


def word_symbols(word: str) -> list[str]:
    """A word's bytes as printable symbols, the last one carrying `</w>` (step 3)."""
    byte_encoder = bytes_to_unicode()
    symbols = [byte_encoder[b] for b in word.encode("utf-8")]
    symbols[-1] += END_OF_WORD
    return symbols
