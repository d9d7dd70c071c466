"""clipedu.tokenizer against open_clip's copy of openai's SimpleTokenizer, hand-worked BPE and properties."""
import gzip
import html
import json
import os
from collections import Counter

import ftfy
import open_clip
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from open_clip.tokenizer import SimpleTokenizer
from open_clip.tokenizer import bytes_to_unicode as open_clip_bytes_to_unicode

from clipedu.pretokenize import EOT, SOT, bytes_to_unicode, clean_text, pre_tokenize
from clipedu.tokenizer import BPETokenizer, clip_tokenizer, merge_pair

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MOJIBAKE = ["cafÃ© au lait", "SchÃ¶ne GrÃ¼ÃŸe", "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",
            "â€œmojibakeâ€\x9d in quotes", "ＦＵＬＬ ｗｉｄｔｈ letters", "ﬁne ﬂour"]
LONG = " ".join(f"word{i} and, more: {i * 7}!" for i in range(60))
CORPUS = [
    "", "   ", "Hello World!", "a photo of a cat.", "A PHOTO OF A DOG", "MiXeD cAsE tExT",
    "it's, we'll, they're, I'd, you've, I'm, IT'S", "don't-stop (really) [now] {ok} <tag> ... ?!",
    "numbers 2021 3.14 1,000,000 and 42nd", "tabs\tand\nnewlines\r\nand  double   spaces ",
    "Tom &amp; Jerry", "1 &lt; 2 &gt; 0", "it&#39;s fine", "double &amp;amp; escaped &amp;#39;",
    "non&nbsp;breaking", "café naïve résumé Zürich façade", "Ωμέγα ΣΊΣΥΦΟΣ", "İstanbul straße",
    "日本語のテキストです", "中文字符和标点。", "한국어 문장", "привет, мир", "مرحبا بالعالم",
    "emoji 🐱🐶 and 👩‍👩‍👧 family 🇫🇷", "combining e\u0301 accents", "control\x00chars\x1b[31m red",
    "curly ‘single’ and “double” quotes", "a</w>b and </w> itself", "under_score and-hyphen/slash",
    "lone \ud800 surrogate", "paired \ud83d\ude00 surrogates", "zero\u200bwidth a\ufeffb",
    "x" * 300, LONG, "1234567890" * 10,
] + MOJIBAKE


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return clip_tokenizer()


@pytest.fixture(scope="module")
def reference() -> SimpleTokenizer:
    return SimpleTokenizer()


# ---- CLIP's tokenizer is exactly openai's ------------------------------------

def test_hello_world_vector(tok):
    row = tok("Hello World!")
    assert row.shape == (1, 77) and row.dtype == torch.long
    assert row[0, :5].tolist() == [49406, 3306, 1002, 256, 49407]
    assert row[0, 5:].eq(0).all()


def test_mojibake_corpus_really_needs_ftfy():
    # Otherwise the equality tests below would not exercise the cleaning step.
    assert all(ftfy.fix_text(text) != text for text in MOJIBAKE)


@pytest.mark.parametrize("text", CORPUS)
def test_encode_and_cleaning_match_open_clip(tok, reference, text):
    assert clean_text(text) == reference.clean_fn(text)
    assert tok.encode(text) == reference.encode(text)


def test_batch_matches_open_clip_tokenize(tok):
    # open_clip always truncates, keeping EOT last; truncate=True is the same rule.
    for context_length in (77, 16):
        expected = open_clip.tokenize(CORPUS, context_length=context_length)
        assert torch.equal(tok(CORPUS, context_length=context_length, truncate=True), expected)


def test_decode_matches_open_clip(tok, reference):
    for text in CORPUS:
        if "</w>" not in text:  # the one place where clipedu's decode is deliberately exact
            ids = tok.encode(text)
            assert tok.decode(ids) == reference.decode(ids)
    assert tok.decode(tok.encode("a photo of a cat.")) == "a photo of a cat . "


@SETTINGS
@given(st.one_of(st.text(), st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F))))
def test_random_text_matches_open_clip(tok, reference, text):
    # open_clip renamed the special tokens; openai's literal "<|endoftext|>" rule is tested below.
    assume(SOT not in clean_text(text) and EOT not in clean_text(text))
    assert tok.encode(text) == reference.encode(text)


@SETTINGS
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="&")))
def test_fast_path_assumption_cleaning_is_identity_on_plain_ascii(text):
    # clean_text skips ftfy and html.unescape on printable ASCII without '&': both must be no-ops there.
    assert ftfy.fix_text(text) == text
    assert html.unescape(text) == text


def test_special_token_strings_are_special_as_in_openai_clip(tok):
    # openai's regex and cache map these literal strings to SOT/EOT; "a" alone is id 320.
    assert tok.encode("a <|endoftext|>") == [320, 49407]
    assert tok.encode("<|startoftext|>") == [49406]


def test_vocab_layout(tok, reference):
    byte_symbols = list(bytes_to_unicode().values())
    assert bytes_to_unicode() == open_clip_bytes_to_unicode()
    assert [tok.decoder[i] for i in range(256)] == byte_symbols
    assert [tok.decoder[256 + i] for i in range(256)] == [s + "</w>" for s in byte_symbols]
    # every byte exactly once, and no symbol is whitespace or a control character
    assert sorted(bytes_to_unicode()) == list(range(256))
    assert all(s.isprintable() and not s.isspace() for s in byte_symbols)
    assert (tok.vocab_size, tok.sot_token, tok.eot_token) == (49408, 49406, 49407)
    assert tok.decoder[49406] == SOT and tok.decoder[49407] == EOT
    assert len(tok.merges) == 48_894
    ordinary = {t: i for t, i in reference.encoder.items() if i < 49406}
    assert {t: i for t, i in tok.encoder.items() if i < 49406} == ordinary


def test_clip_tokenizer_is_cached():
    assert clip_tokenizer() is clip_tokenizer()


# ---- batching, truncation, errors --------------------------------------------

def test_too_long_raises_unless_truncate(tok):
    text = "a photo of " * 40
    n = len(tok.encode(text)) + 2
    with pytest.raises(ValueError, match=rf"'a photo of a photo of a photo of a photo.*{n} tokens.*truncate=True"):
        tok(["short", text])
    row = tok(["short", text], truncate=True)[1]
    full = [49406, *tok.encode(text), 49407]
    assert row[-1].item() == tok.eot_token and row.tolist()[:76] == full[:76]


def test_text_that_exactly_fits_is_kept_whole(tok):
    text = "cat " * 75  # 75 tokens + SOT + EOT = 77
    row = tok(text)[0]
    assert row.tolist() == [49406] + [2368] * 75 + [49407]  # "cat</w>" is 2368 in CLIP's vocab
    with pytest.raises(ValueError):
        tok(text + " cat")


def test_padding_and_eot_position(tok):
    tokens = tok(["a", "a red cube on a blue sphere"])
    assert tokens.argmax(-1).tolist() == [2, 8]  # EOT has the largest id: argmax finds it
    assert tok.decode(tokens[1]) == "a red cube on a blue sphere "


def test_bad_inputs_raise_clear_errors(tok):
    with pytest.raises(ValueError, match="context_length"):
        tok("a", context_length=1)
    with pytest.raises(TypeError, match="str"):
        tok([b"bytes"])
    with pytest.raises(ValueError, match="one at a time"):
        tok.decode(tok(["a", "b"]))
    with pytest.raises(ValueError, match="outside"):
        tok.decode([49408])
    assert tok([]).shape == (0, 77)


def test_missing_and_corrupt_merges_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        BPETokenizer.from_clip_bpe(tmp_path / "nope.txt.gz")
    garbage = tmp_path / "garbage.txt.gz"
    garbage.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="garbage.txt.gz"):
        BPETokenizer.from_clip_bpe(garbage)
    short = tmp_path / "short.txt.gz"
    with gzip.open(short, "wt") as f:
        f.write("#version: 0.2\ni n\nt h\n")
    with pytest.raises(ValueError, match="short.txt.gz"):
        BPETokenizer.from_clip_bpe(short)


@SETTINGS
@given(st.text(max_size=400))
def test_random_text_never_crashes_and_ids_in_range(tok, text):
    row = tok(text, truncate=True)[0]
    assert row.shape == (77,) and row[0] == tok.sot_token
    assert 0 <= row.min() and row.max() < tok.vocab_size
    assert tok.eot_token in row.tolist()


# ---- training ----------------------------------------------------------------

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "grey", "pink"]
SHAPES = ["cube", "sphere", "cone", "cylinder", "pyramid", "torus"]
PLACES = ["left of", "right of", "above", "below", "next to"]
CAPTIONS = [f"a {c1} {s1} {p} the {c2} {s2}." for c1 in COLORS for s1 in SHAPES for p in PLACES
            for c2 in COLORS[::3] for s2 in SHAPES[::2]] + ["café crème, 2 × 3 = 6 ✓", "日本の猫"]


@pytest.fixture(scope="module")
def trained() -> BPETokenizer:
    return BPETokenizer.train(CAPTIONS, vocab_size=600)


def test_train_worked_example_by_hand():
    # Word counts: hug 10, pug 5, pun 12, bun 4, hugs 5. Pair counts before each merge:
    # (p,u) 17 > (u,n</w>) 16 > (h,u) 15; then (h,u) 15; then (pu,n</w>) 12; then (hu,g</w>) 10.
    # After that five pairs tie at 5, so we ask for exactly four merges.
    texts = ["hug"] * 10 + ["pug"] * 5 + ["pun"] * 12 + ["bun"] * 4 + ["hugs"] * 5
    tok = BPETokenizer.train(texts, vocab_size=514 + 4)
    assert tok.merges == [("p", "u"), ("h", "u"), ("pu", "n</w>"), ("hu", "g</w>")]
    assert (tok.vocab_size, tok.sot_token, tok.eot_token) == (518, 516, 517)
    g_end = 256 + (ord("g") - ord("!"))  # "g</w>": printable bytes start at "!"
    assert tok.encode("Hug pun pug") == [515, 514, 512, g_end]


def test_train_is_independent_of_corpus_order(trained):
    # Ties are broken by the pairs themselves, not by the order words were seen in.
    assert BPETokenizer.train(reversed(CAPTIONS), vocab_size=600).merges == trained.merges
    assert BPETokenizer.train(["cd", "ab"], vocab_size=515).merges == [("a", "b</w>")]


def test_train_stops_when_every_word_is_one_token(capsys):
    tok = BPETokenizer.train(["abc abc", "ab"], vocab_size=1000, verbose=True)
    # "abc" x2 then "ab" x1: (a,b) 2 and (b,c</w>) 2 tie, (a,b) < (b,c</w>); then (ab,c</w>) 2; then (a,b</w>) 1.
    assert tok.merges == [("a", "b"), ("ab", "c</w>"), ("a", "b</w>")]
    assert (tok.vocab_size, tok.eot_token) == (517, 516)
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_merges_spelling_the_same_token_share_one_id():
    tok = BPETokenizer([("a", "b"), ("ab", "c"), ("b", "c"), ("a", "bc")])
    assert tok.vocab_size == 514 + 3  # "ab", "abc", "bc"
    assert sorted(tok.decoder) == list(range(tok.vocab_size)) and tok.eot_token == tok.vocab_size - 1


def test_train_rejects_small_vocab():
    with pytest.raises(ValueError, match="at least 514"):
        BPETokenizer.train(CAPTIONS, vocab_size=513)


def test_each_merge_is_a_most_frequent_pair():
    # Replay the merges on every word occurrence (no frequency table, no incremental
    # counts): each learned merge must be a pair of maximal count at its step.
    texts = CAPTIONS[::10] + CAPTIONS[-2:]
    trained = BPETokenizer.train(texts, vocab_size=600)
    words = [BPETokenizer([]).bpe(w) for text in texts for w in pre_tokenize(text)]
    assert len(trained.merges) == 86
    for pair in trained.merges:
        counts = Counter(p for w in words for p in zip(w, w[1:]))
        assert counts[pair] == max(counts.values()), pair
        words = [merge_pair(w, pair) for w in words]


def test_from_captions_trains_on_every_caption_of_every_image():
    per_image = [CAPTIONS[i:i + 3] for i in range(0, 90, 3)]
    flat = [c for caps in per_image for c in caps]
    assert BPETokenizer.from_captions(per_image, 600).merges == BPETokenizer.train(flat, 600).merges


def test_trained_vocab_layout(trained):
    assert trained.vocab_size == 600 == len(trained.encoder) == len(trained.decoder)
    assert (trained.sot_token, trained.eot_token) == (598, 599)
    assert sorted(trained.decoder) == list(range(600))
    assert [trained.decoder[i] for i in range(256)] == list(bytes_to_unicode().values())
    tokens = trained(CAPTIONS[:50])
    assert tokens.max() == 599 and (tokens.argmax(-1) == (tokens != 0).sum(-1) - 1).all()


def test_trained_tokenizer_compresses_its_corpus(trained):
    # Every word of this small corpus should become one token, except the rare unicode ones.
    assert trained.encode("a red cube left of the blue sphere.") == [
        trained.encoder[w + "</w>"] for w in ["a", "red", "cube", "left", "of", "the", "blue", "sphere", "."]]


@SETTINGS
@given(st.text(max_size=200))
def test_round_trip_is_exact_up_to_spacing(trained, text):
    # Decoding gives back every pre-token followed by one space; removing the spaces,
    # that is the cleaned text itself (the regex covers every non-space character).
    assume(SOT not in clean_text(text) and EOT not in clean_text(text))
    for tokenizer in (trained, clip_tokenizer()):
        words = pre_tokenize(text)
        assert tokenizer.decode(tokenizer.encode(text)) == "".join(w + " " for w in words)
        assert "".join(words) == clean_text(text).replace(" ", "")


@SETTINGS
@given(st.text(max_size=200))
def test_trained_random_text_never_crashes(trained, text):
    row = trained(text, context_length=32, truncate=True)[0]
    assert 0 <= row.min() and row.max() < trained.vocab_size


def test_save_load_round_trip(trained, tmp_path):
    path = tmp_path / "tok.json"
    trained.save(path)
    assert os.listdir(tmp_path) == ["tok.json"]  # the temp file was renamed, not left behind
    loaded = BPETokenizer.load(path)
    assert loaded.merges == trained.merges and loaded.encoder == trained.encoder
    texts = CAPTIONS[::97] + CORPUS
    assert torch.equal(loaded(texts, truncate=True), trained(texts, truncate=True))


def test_load_rejects_corrupt_files(trained, tmp_path):
    path = tmp_path / "tok.json"
    trained.save(path)
    good = path.read_text(encoding="utf-8")
    bad_files = {
        "truncated.json": good[: len(good) // 2],
        "binary.json": "\x00\xff garbage",
        "other.json": json.dumps({"model": "something else"}),
        "badmerges.json": json.dumps({**json.loads(good), "merges": [["a", "b", "c"]]}),
        "badsize.json": json.dumps({**json.loads(good), "vocab_size": 9}),
    }
    for name, content in bad_files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=name):
            BPETokenizer.load(tmp_path / name)
    (tmp_path / "notutf8.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="notutf8.json"):
        BPETokenizer.load(tmp_path / "notutf8.json")
