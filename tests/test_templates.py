"""The paper's 80 ImageNet templates (clipedu.templates), checked against open_clip's independent copy."""

import pytest

from clipedu.templates import IMAGENET_TEMPLATES, SINGLE_TEMPLATE, fill


def test_eighty_templates_each_with_one_slot():
    assert isinstance(IMAGENET_TEMPLATES, tuple)
    assert len(IMAGENET_TEMPLATES) == 80
    assert len(set(IMAGENET_TEMPLATES)) == 80
    assert all(t.count("{}") == 1 and t.count("{") == 1 and t.count("}") == 1 for t in IMAGENET_TEMPLATES)
    assert SINGLE_TEMPLATE in IMAGENET_TEMPLATES


@pytest.mark.parametrize("classname", ["goldfish", "tabby cat", "cup of coffee"])
def test_templates_match_open_clip(classname):
    metadata = pytest.importorskip("open_clip.zero_shot_metadata")
    reference = [template(classname) for template in metadata.OPENAI_IMAGENET_TEMPLATES]  # lambdas there
    assert fill(IMAGENET_TEMPLATES, classname) == reference  # same sentences, same order


def test_fill_writes_the_name_into_every_template():
    assert fill(("a photo of a {}.", "itap of my {}."), "cat") == ["a photo of a cat.", "itap of my cat."]
    assert fill((), "cat") == []
