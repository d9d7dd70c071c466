"""What ShapesWorld's captions and prompts say: the words, their synonyms, the templates.

`clipedu.data.shapes` draws an image's attributes and picks its words from
these tables; keeping the language here lets the captioning and prompt
studies read the same tables without the drawing code.
"""

import math
import re

# the first word of each list is the canonical one (used in prompts)
COLOR_WORDS = {"red": ["red", "crimson", "scarlet"], "orange": ["orange", "amber", "tangerine"],
               "yellow": ["yellow", "golden", "lemon"], "green": ["green", "emerald", "grassy green"],
               "cyan": ["cyan", "turquoise", "teal"], "blue": ["blue", "azure", "cobalt"],
               "purple": ["purple", "violet", "lilac"], "pink": ["pink", "rose", "fuchsia"]}
SHAPE_WORDS = {"circle": ["circle", "disc", "round shape"], "square": ["square", "box"],
               "triangle": ["triangle", "three-sided shape"], "star": ["star", "five-pointed star"],
               "cross": ["cross", "plus sign"], "heart": ["heart", "heart shape"]}
SIZE_WORDS = {"small": ["small", "little", "tiny"], "large": ["large", "big"]}
POSITION_WORDS = {
    "top left": ["in the top left corner", "in the upper left"], "top": ["at the top", "near the top"],
    "top right": ["in the top right corner", "in the upper right"], "left": ["on the left", "on the left side"],
    "centre": ["in the centre", "in the middle"], "right": ["on the right", "on the right side"],
    "bottom left": ["in the bottom left corner", "in the lower left"], "bottom": ["at the bottom", "near the bottom"],
    "bottom right": ["in the bottom right corner", "in the lower right"]}
BACKGROUND_WORDS = {"white": ["on a white background", "on white"],
                    "black": ["on a black background", "on a dark background"],
                    "grey": ["on a grey background", "on a gray background"],
                    "striped": ["on a striped background", "on stripes"],
                    "checkered": ["on a checkered background", "on a checkerboard"]}
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles",
           "star": "stars", "cross": "crosses", "heart": "hearts"}

# (template, weight): {c} colour, {s} shape, {z} size, {p} position, {b} background
_TEMPLATES = [
    ("a {c} {s}", 3), ("a photo of a {c} {s}", 3), ("a picture of a {c} {s}", 2),
    ("there is a {c} {s}", 2), ("a {s} that is {c}", 2), ("a {s}, coloured {c}", 1),
    ("the {s} is {c}", 1), ("a {z} {c} {s}", 2), ("a photo of a {z} {c} {s}", 1),
    ("a {z} {s} that is {c}", 1), ("a {c} {s} {p}", 2), ("{p}, a {c} {s}", 1),
    ("a {s} {p}, and it is {c}", 1), ("a {c} {s} {b}", 2), ("a {z} {c} {s} {p}", 2),
    ("a photo of a {z} {c} {s} {p} {b}", 1), ("{p} there is a {z} {c} {s} {b}", 1),
    ("a {c} {s} {p} {b}", 1), ("something {c}", 1), ("a {c} object", 1),
    ("something {c} {p}", 1), ("a {z} {c} thing", 1), ("there is a {s}", 1),
    ("a photo of a {s}", 1), ("a {z} {s} {p}", 1), ("a {s} {b}", 1),
    # loosely related, as alt-text often is: one attribute, in words that are not a description
    ("my favourite {s}", 1), ("clip art in {c}", 1), ("a {c} sticker", 1), ("some kind of {s}, I think", 1),
]
# Templates naming a position ({p}) or a background ({b}) can be drawn more often than the weights
# above say. The course world leaves both at 1. Measured on the course preset at 1800 steps: at 1.75
# the model learns position (fine-grained zero-shot 0.64-0.73 in 3 runs) but composing the held-out
# colour-shape pairs becomes fragile (0.58-0.95 in 4 runs of seeds 0 and 1); at 1 it leaves position at
# chance and composes reliably (benchmarks/bench_course_model.py).
EMPHASIS = {"p": 1, "b": 1}
CAPTION_TEMPLATES = [(t, w * math.prod(k for f, k in EMPHASIS.items() if "{" + f + "}" in t)) for t, w in _TEMPLATES]
WRONG_COLOR_RATE = 0.05  # this share of training captions names a wrong colour: mislabelled, as web data is
# {a} / {b}: first / second shape, {r} the relation, {l} its long form, {i} / {j}: the inverse relation
RELATION_TEMPLATES = ["a {a} {r} a {b}", "a photo of a {a} {l} a {b}", "a {b} {i} a {a}", "there is a {b} {j} a {a}"]
LONG_FORM = {"left of": "to the left of", "right of": "to the right of", "above": "over", "below": "under"}
INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
COUNT_TEMPLATES = ["{w} {c} {s}", "a photo of {w} {c} {s}", "{k} {c} {s}", "there are {w} {c} {s}"]
ONE_TEMPLATES = ["one {c} {s}", "a {c} {s}", "a photo of one {c} {s}", "a single {c} {s}"]
DEFAULT_PROMPTS = ["a {}", "a photo of a {}", "a picture of a {}", "there is a {}"]
CAPTIONS_PER_IMAGE = 5
CANONICAL_WORD_PROB = 0.6  # a caption uses an attribute's first word this often, one of its synonyms otherwise

# The course's own tokenizers, trained on these captions (`BPETokenizer.from_captions`):
VOCAB_SIZE = 4096  # ids: with room to spare, every word becomes one token
CONTEXT_LENGTH = 24  # SOT + the longest caption (19 tokens) + EOT, with room to spare

_A_BEFORE_VOWEL = re.compile(r"\ba (?=[aeiou])")


def fix_articles(text: str) -> str:
    """"a" before a vowel becomes "an": "a orange circle" -> "an orange circle"."""
    return _A_BEFORE_VOWEL.sub("an ", text)
