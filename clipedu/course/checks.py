"""Exercise checks: compare a student's answer with the reference and explain.

Every exercise in the course is followed by a check cell. A registered
exercise (its reference, cases, tolerances and hints live in
`clipedu.grade.registry`, out of the student's sight) is checked by its
grade_id::

    symmetric_clip_loss = check_exercise(symmetric_clip_loss, "07-symmetric_clip_loss")
    hint("07-symmetric_clip_loss")   # first call: a nudge; second call: the recipe

Notebooks whose exercises are not registered yet still pass the reference and
cases themselves::

    softmax_t = check_function(softmax_t, reference_softmax_t,
                               cases=[(logits, 0.5), (logits, 2.0)],
                               name="softmax_t", hint="divide before exp")

The check never raises because of the student's code. It prints one of:

- success: one line, and the student's function is returned;
- not done yet (NotImplementedError): the notebook carries on with the
  reference, which is returned and named;
- wrong: which case, which value differs and by how much, and the reference is
  returned so the rest of the notebook still works. `check_exercise` then
  shows the next hint: the nudge after the first wrong answer, the recipe
  after the second.

Mistakes of the notebook author (an empty case list, a reference that
raises, an unknown grade_id) do raise: they must be fixed before the
notebook is committed.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable, Sequence

import numpy as np
import torch

from clipedu.grade.compare import compare
from clipedu.grade.exercise import forbidden_used
from clipedu.grade.judge import Outcome, call, call_case, describe, forbidden_verdict, judge
from clipedu.grade.registry import get_exercise

__all__ = ["check_exercise", "check_function", "check_value", "hint"]

_hints_shown: dict[str, int] = {}  # grade_id -> how many hints this kernel has shown (0, 1 or 2)


def _where_raised(exc: BaseException, fn: Callable) -> str:
    """The line of the student's own code that raised, if we can find it."""
    code = getattr(fn, "__code__", None)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if code and f.filename == code.co_filename]
    if not frames or not frames[-1].line:
        return ""
    return f"\nat: {frames[-1].line}"


def _ref_name(fn: Callable) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", repr(fn))
    if module in (None, "__main__", "builtins") or "._" in f"{module}.{qualname}":
        return getattr(fn, "__name__", qualname)  # notebook functions and torch builtins
    return f"{module}.{qualname}"


def _report(name: str, problem: str, hint: str | None, fallback: str) -> None:
    print(f"{name}: WRONG. {problem}".replace("\n", "\n  "))
    if hint:
        print(f"  hint: {hint}")
    print(f"  The notebook continues with {fallback}.")


def check_function(
    student_fn: Callable,
    reference_fn: Callable,
    cases: Sequence[Any],
    name: str | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    hint: str | None = None,
) -> Callable:
    """Run `student_fn` and `reference_fn` on each case and compare outputs.

    Returns `student_fn` when every case matches, else `reference_fn` (so the
    notebook keeps working). Prints a one-line success or a diagnosis.
    """
    if not callable(student_fn) or not callable(reference_fn):
        raise TypeError("check_function needs two functions: check_function(student_fn, reference_fn, cases)")
    if len(cases) == 0:
        raise ValueError("check_function needs at least one case: a tuple of arguments for each call")
    name = name or getattr(student_fn, "__name__", "your function")
    fallback = f"the reference implementation {_ref_name(reference_fn)}"
    for i, case in enumerate(cases, start=1):
        want = call(reference_fn, case)
        label = f"case {i} of {len(cases)} {describe(case)}"
        try:
            got = call(student_fn, case)
        except NotImplementedError:
            print(f"{name}: not implemented yet. The notebook continues with {fallback}.")
            return reference_fn
        except Exception as exc:  # the student's bug, explained rather than raised
            where = _where_raised(exc, student_fn)
            _report(name, f"On {label} it raised {type(exc).__name__}: {exc}{where}", hint, fallback)
            return reference_fn
        if got is None and want is not None:
            _report(name, f"On {label} it returned None: is a `return` missing?", hint, fallback)
            return reference_fn
        problem = compare(got, want, rtol=rtol, atol=atol)
        if problem:
            _report(name, f"On {label}:\n{problem}", hint, fallback)
            return reference_fn
    print(f"{name}: correct on all {len(cases)} cases.")
    return student_fn


def check_value(
    student_value: Any,
    reference_value: Any,
    name: str,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    hint: str | None = None,
) -> Any:
    """Compare a value answer with the reference value.

    `student_value` may be the value itself or a function of no arguments
    that computes it; the function form lets an unfinished exercise
    (NotImplementedError) leave the rest of the notebook running. Returns the
    student's value when it matches, else the reference value.
    """
    fallback = "the reference value"
    if callable(student_value) and not isinstance(student_value, (torch.Tensor, np.ndarray)):
        fn = student_value
        try:
            student_value = fn()
        except NotImplementedError:
            print(f"{name}: not done yet. The notebook continues with {fallback}.")
            return reference_value
        except Exception as exc:
            _report(name, f"It raised {type(exc).__name__}: {exc}{_where_raised(exc, fn)}", hint, fallback)
            return reference_value
    if student_value is None and reference_value is not None:
        _report(name, "The answer is None: is a `return` missing, or is the cell not run?", hint, fallback)
        return reference_value
    problem = compare(student_value, reference_value, rtol=rtol, atol=atol, where="answer")
    if problem:
        _report(name, problem, hint, fallback)
        return reference_value
    print(f"{name}: correct.")
    return student_value


def _next_hint(grade_id: str, level: int | None = None) -> tuple[str, str]:
    """("hint", nudge) the first time, ("recipe", recipe) from then on; `level` 1 or 2 asks for one."""
    exercise = get_exercise(grade_id)
    level = level or min(_hints_shown.get(grade_id, 0) + 1, 2)
    if level not in (1, 2):
        raise ValueError(f"hint level must be 1 (a nudge) or 2 (the recipe), got {level}")
    _hints_shown[grade_id] = max(_hints_shown.get(grade_id, 0), level)
    return ("hint", "recipe")[level - 1], exercise.hints[level - 1]


def hint(grade_id: str, level: int | None = None) -> None:
    """Print a hint for an exercise: a nudge the first time, the recipe the second (or `level=2`)."""
    label, text = _next_hint(grade_id, level)
    print(f"{get_exercise(grade_id).name} {label}: {text}")
    if label == "hint":
        print(f"  Still stuck? hint({grade_id!r}) again shows the recipe.")


def check_exercise(student: Any, grade_id: str) -> Any:
    """Check a registered exercise on the notebook's cases; return the student's answer or the reference.

    `student` is the student's function (or, for a value exercise, their
    function of no arguments or the value itself). On a wrong answer the next
    hint is printed: the nudge, then the recipe.
    """
    exercise = get_exercise(grade_id)
    name = exercise.name
    if exercise.value:
        fallback, fallback_text = exercise.reference(), "the reference value"
    else:
        fallback, fallback_text = exercise.reference, "the reference implementation"
        if not getattr(exercise.reference, "__module__", "").startswith("clipedu.grade."):
            fallback_text += f" {_ref_name(exercise.reference)}"  # the package's function: worth naming
    if not exercise.value and not callable(student):
        raise TypeError(f"check_exercise needs the function {name}, got {type(student).__name__}")
    cases = exercise.cases(hidden=False)
    used = forbidden_used(exercise, getattr(student, "__code__", None))
    if used:
        verdict = forbidden_verdict(exercise, used)
        outcomes = []
    else:
        if exercise.value and (not callable(student) or isinstance(student, (torch.Tensor, np.ndarray))):
            outcomes = [Outcome(value=student)]
        else:
            outcomes = [call_case(student, case) for _, case in cases]
        wants = [fallback] if exercise.value else [call(exercise.reference, case) for _, case in cases]
        verdict = judge(exercise, cases, outcomes, wants)
    if verdict.status == "correct":
        print(verdict.message)
        return outcomes[0].value if exercise.value else student
    if verdict.status == "not_implemented":
        print(f"{verdict.message} The notebook continues with {fallback_text}.")
        return fallback
    print(verdict.message)
    label, text = _next_hint(grade_id)
    print(f"  {label}: {text}")
    print(f"  The notebook continues with {fallback_text}.")
    return fallback
