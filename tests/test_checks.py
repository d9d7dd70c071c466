"""clipedu.course.checks: what a student sees after each exercise."""

import math

import numpy as np
import pytest
import torch

from clipedu.course import checks
from clipedu.course.checks import check_exercise, check_function, check_value, hint
from clipedu.course.compare import compare
from clipedu.grade.registry import REGISTRY, UnknownExercise
from clipedu.loss import clip_loss


def reference_softmax(logits, temperature):
    return torch.softmax(logits / temperature, dim=-1)


def good_softmax(logits, temperature):
    z = logits / temperature
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


LOGITS = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, -0.5]])
CASES = [(LOGITS, 1.0), (LOGITS, 0.5)]


def test_passing_returns_student_function(capsys):
    out = check_function(good_softmax, reference_softmax, CASES, name="softmax_t")
    assert out is good_softmax
    assert capsys.readouterr().out == "softmax_t: correct on all 2 cases.\n"


def test_not_implemented_returns_reference_and_names_it(capsys):
    def softmax_t(logits, temperature):
        # YOUR CODE HERE
        raise NotImplementedError

    out = check_function(softmax_t, reference_softmax, CASES)
    assert out is reference_softmax
    text = capsys.readouterr().out
    assert "softmax_t: not implemented yet" in text
    assert "reference_softmax" in text
    assert text.count("\n") == 1


def test_wrong_value_names_index_values_and_errors(capsys):
    def forgot_temperature(logits, temperature):
        return torch.softmax(logits, dim=-1)

    out = check_function(forgot_temperature, reference_softmax, CASES, name="softmax_t", hint="divide by T")
    assert out is reference_softmax
    text = capsys.readouterr().out
    # case 1 (T = 1) passes; case 2 fails at the very first element
    expected = reference_softmax(LOGITS, 0.5)[0, 0].item()
    got = torch.softmax(LOGITS, dim=-1)[0, 0].item()
    assert "WRONG" in text and "case 2 of 2" in text
    assert f"output[0, 0]: got {got:.6g}, expected {expected:.6g}" in text
    assert "6 of 6 values differ" in text
    assert "max abs error" in text and "max rel error" in text
    assert "hint: divide by T" in text
    assert "continues with the reference implementation test_checks.reference_softmax." in text


def test_wrong_shape(capsys):
    def summed(logits, temperature):
        return reference_softmax(logits, temperature).sum(dim=0)

    assert check_function(summed, reference_softmax, CASES) is reference_softmax
    text = capsys.readouterr().out
    assert "shape (3,), expected (2, 3)" in text


def test_transposed_and_keepdim_hints():
    a = torch.zeros(2, 3)
    assert "transposed" in compare(a.T, a)
    assert "keepdim" in compare(torch.zeros(4), torch.zeros(4, 1))


def test_wrong_dtype(capsys):
    def as_double(logits, temperature):
        return reference_softmax(logits, temperature).double()

    assert check_function(as_double, reference_softmax, CASES) is reference_softmax
    assert "dtype torch.float64, expected torch.float32" in capsys.readouterr().out


def test_other_exception_is_explained_not_raised(capsys):
    def buggy(logits, temperature):
        return logits @ logits  # shapes do not match
    assert check_function(buggy, reference_softmax, CASES, name="buggy") is reference_softmax
    text = capsys.readouterr().out
    assert "buggy: WRONG" in text
    assert "raised RuntimeError" in text
    assert "return logits @ logits" in text  # the student's line that failed
    assert "continues with the reference" in text


def test_missing_return(capsys):
    def no_return(logits, temperature):
        logits / temperature
    assert check_function(no_return, reference_softmax, CASES) is reference_softmax
    assert "returned None" in capsys.readouterr().out


def test_student_cannot_corrupt_the_inputs(capsys):
    def in_place(logits, temperature):
        logits /= temperature
        return torch.softmax(logits, dim=-1)
    before = LOGITS.clone()
    assert check_function(in_place, reference_softmax, CASES) is in_place
    assert torch.equal(LOGITS, before)


def test_kwargs_and_single_argument_cases(capsys):
    assert check_function(good_softmax, reference_softmax, [{"logits": LOGITS, "temperature": 2.0}]) is good_softmax
    assert check_function(lambda x: x.sum(), lambda x: x.sum(), [LOGITS], name="s") is not None
    assert "s: correct on all 1 cases." in capsys.readouterr().out


def test_author_mistakes_raise():
    with pytest.raises(ValueError, match="at least one case"):
        check_function(good_softmax, reference_softmax, [])
    with pytest.raises(TypeError, match="two functions"):
        check_function(good_softmax, 3, CASES)


def test_output_is_deterministic(capsys):
    def wrong(logits, temperature):
        return reference_softmax(logits, temperature) + 0.01
    check_function(wrong, reference_softmax, CASES)
    first = capsys.readouterr().out
    check_function(wrong, reference_softmax, CASES)
    assert capsys.readouterr().out == first
    assert len(first.splitlines()) <= 6


# ---- check_value and compare on every supported type


def test_check_value_pass_wrong_and_not_done(capsys):
    assert check_value(0.99965, 0.99965, "p") == 0.99965
    assert capsys.readouterr().out == "p: correct.\n"
    assert check_value(0.5, 0.25, "p", hint="scale first") == 0.25
    text = capsys.readouterr().out
    assert "answer: got 0.5, expected 0.25 (abs error 0.25, rel error 1)" in text
    assert "hint: scale first" in text

    def answer():
        raise NotImplementedError
    assert check_value(answer, 7, "n") == 7
    assert "n: not done yet" in capsys.readouterr().out

    def crashes():
        return 1 / 0
    assert check_value(crashes, 7, "n") == 7
    assert "raised ZeroDivisionError" in capsys.readouterr().out


def test_check_value_callable_that_works(capsys):
    assert check_value(lambda: [1, 2], (1, 2), "pair") == [1, 2]
    assert "pair: correct." in capsys.readouterr().out


@pytest.mark.parametrize("got, want, fragment", [
    (torch.tensor(0.5), 0.5, "call .item()"),
    (0.5, torch.tensor(0.5), "0-d torch.Tensor"),
    (np.zeros(3), torch.zeros(3), "expected a torch.Tensor, got numpy.ndarray"),
    (torch.zeros(3), np.zeros(3), "expected a numpy.ndarray, got torch.Tensor"),
    (np.array([1, 2, 3]), np.array([1, 2, 4]), "output[2]: got 3, expected 4"),
    (3.0, 3, "expected an int"),
    (4, 3, "got 4, expected 3"),
    ("a photo of a dog", "a photo of a cat", "character 13"),
    ([1, 2], [1, 2, 3], "length 2, expected 3"),
    ({"loss": 1.0}, {"loss": 1.0, "acc": 0.5}, "missing keys ['acc']"),
    ({"loss": 1.5}, {"loss": 1.0}, "output['loss']: got 1.5, expected 1"),
    ((torch.ones(2), 3), (torch.ones(2), 4), "output[1]: got 3, expected 4"),
    (True, False, "got True, expected False"),
    (torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]), "output[1]: got nan, expected 2"),
    (None, 1.0, "expected a number, got NoneType"),
])
def test_compare_explains(got, want, fragment):
    problem = compare(got, want)
    assert problem is not None and fragment in problem


@pytest.mark.parametrize("got, want", [
    (torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-7])),
    (np.arange(3), np.arange(3)),
    (1.0, 1.0 + 1e-9),
    (2, np.int64(2)),
    ([1, "a"], (1, "a")),
    ({"a": torch.zeros(2, 2)}, {"a": torch.zeros(2, 2)}),
    (torch.tensor([float("nan")]), torch.tensor([float("nan")])),
    (None, None),
    (torch.ones(2, requires_grad=True) * 1, torch.ones(2)),
])
def test_compare_accepts(got, want):
    assert compare(got, want) is None


def test_tolerances_are_used():
    assert compare(1.001, 1.0) is not None
    assert compare(1.001, 1.0, rtol=1e-2) is None
    assert compare(torch.tensor([1.001]), torch.tensor([1.0]), atol=1e-2) is None


# ---- check_exercise: registered exercises, hints only when asked or after a wrong answer


@pytest.fixture
def fresh_hints(monkeypatch):
    monkeypatch.setattr(checks, "_hints_shown", {})


def test_check_exercise_correct_shows_no_hint(capsys, fresh_hints):
    def symmetric_clip_loss(image_embed, text_embed, scale):
        logits = scale * image_embed @ text_embed.T
        targets = torch.arange(len(logits))
        return (torch.nn.functional.cross_entropy(logits, targets)
                + torch.nn.functional.cross_entropy(logits.T, targets)) / 2
    assert check_exercise(symmetric_clip_loss, "07-symmetric_clip_loss") is symmetric_clip_loss
    assert capsys.readouterr().out == "symmetric_clip_loss: correct on all 3 cases.\n"


def test_check_exercise_unfinished_carries_on_with_the_package_reference(capsys, fresh_hints):
    def symmetric_clip_loss(image_embed, text_embed, scale):
        raise NotImplementedError
    assert check_exercise(symmetric_clip_loss, "07-symmetric_clip_loss") is clip_loss
    text = capsys.readouterr().out
    assert text == ("symmetric_clip_loss: not implemented yet. The notebook continues with the reference "
                    "implementation clipedu.loss.clip_loss.\n")


def test_wrong_answer_shows_nudge_then_recipe(capsys, fresh_hints):
    def symmetric_clip_loss(image_embed, text_embed, scale):  # one direction only
        logits = scale * image_embed @ text_embed.T
        return torch.nn.functional.cross_entropy(logits, torch.arange(len(logits)))
    nudge, recipe = REGISTRY["07-symmetric_clip_loss"].hints
    assert check_exercise(symmetric_clip_loss, "07-symmetric_clip_loss") is clip_loss
    first = capsys.readouterr().out
    assert "symmetric_clip_loss: WRONG. On case 1 of 3 (Tensor[3, 3] float32, Tensor[3, 3] float32, 14.2857):" in first
    assert "output: got " in first and ", expected " in first and "max abs error" in first
    assert f"  hint: {nudge}" in first and recipe not in first
    check_exercise(symmetric_clip_loss, "07-symmetric_clip_loss")
    second = capsys.readouterr().out
    assert f"  recipe: {recipe}" in second and nudge not in second


def test_hint_on_request_nudge_then_recipe(capsys, fresh_hints):
    nudge, recipe = REGISTRY["00-cosine_similarity"].hints
    hint("00-cosine_similarity")
    assert capsys.readouterr().out.startswith(f"cosine_similarity hint: {nudge}\n")
    hint("00-cosine_similarity")
    assert capsys.readouterr().out == f"cosine_similarity recipe: {recipe}\n"
    with pytest.raises(UnknownExercise, match="no exercise '99-nothing'"):
        hint("99-nothing")


def test_forbidden_reference_is_wrong(capsys, fresh_hints):
    def symmetric_clip_loss(image_embed, text_embed, scale):
        return clip_loss(image_embed, text_embed, scale)
    assert check_exercise(symmetric_clip_loss, "07-symmetric_clip_loss") is clip_loss
    assert "It uses `clip_loss`, which this exercise asks you to write yourself" in capsys.readouterr().out


def test_value_exercise(capsys, fresh_hints):
    assert check_exercise(lambda: math.log(256), "07-loss_at_chance_256") == pytest.approx(math.log(256))
    assert capsys.readouterr().out == "loss_at_chance_256: correct.\n"
    assert check_exercise(lambda: 256.0, "07-loss_at_chance_256") == pytest.approx(math.log(256))
    text = capsys.readouterr().out
    assert "loss_at_chance_256: WRONG. answer: got 256, expected 5.54518" in text
