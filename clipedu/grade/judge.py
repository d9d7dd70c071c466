"""Calling a student's function on a case, and the verdict on all cases with its explanation.

The notebook's check (`clipedu.course.checks.check_exercise`) and the grader
(`clipedu.grade.runner`) give the same verdicts in the same words: which case,
the first differing value, got against expected, the error size, the
offending line. The grader calls the student's function in a contained child
process and judges here, in the trusted parent, what came back.
"""

from __future__ import annotations

import copy
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from clipedu.grade.compare import compare, short_repr
from clipedu.grade.exercise import Exercise

__all__ = ["Outcome", "Verdict", "call", "call_case", "describe", "forbidden_verdict", "judge"]


@dataclass
class Outcome:
    """What one call of the student's function gave: a value, NotImplementedError, or another exception."""
    value: Any = None
    raised: str | None = None  # "TypeError: shapes cannot be multiplied", None when it returned
    line: str = ""  # the student's own line that raised, when found
    not_implemented: bool = False


@dataclass
class Verdict:
    status: str  # "correct", "wrong" or "not_implemented"
    message: str  # what the student reads, without the hint


def describe(case: Any) -> str:
    """Short description of a case's inputs: shapes and dtypes for tensors, values otherwise."""
    def one(x: Any) -> str:
        if isinstance(x, (torch.Tensor, np.ndarray)):
            dtype = str(x.dtype).replace("torch.", "")
            return f"{'Tensor' if isinstance(x, torch.Tensor) else 'array'}{list(x.shape)} {dtype}"
        return short_repr(x)
    if isinstance(case, tuple):
        return "(" + ", ".join(one(x) for x in case) + ")"
    if isinstance(case, dict):
        return "(" + ", ".join(f"{k}={one(v)}" for k, v in case.items()) + ")"
    return "(" + one(case) + ")"


def call(fn: Callable, case: Any) -> Any:
    """A tuple case is positional arguments, a dict keyword arguments, anything else one argument."""
    case = copy.deepcopy(case)  # the student's code may modify its inputs in place
    if isinstance(case, tuple):
        return fn(*case)
    if isinstance(case, dict):
        return fn(**case)
    return fn(case)


def _where_raised(exc: BaseException, fn: Callable) -> str:
    """The line of the student's own code that raised, if we can find it."""
    code = getattr(fn, "__code__", None)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if code and f.filename == code.co_filename]
    return frames[-1].line if frames and frames[-1].line else ""


def call_case(fn: Callable, case: Any) -> Outcome:
    """Call the student's function on one case; never raises for the student's errors."""
    try:
        return Outcome(value=call(fn, case))
    except NotImplementedError:
        return Outcome(not_implemented=True)
    except Exception as exc:  # the student's bug, explained rather than raised
        return Outcome(raised=f"{type(exc).__name__}: {exc}", line=_where_raised(exc, fn))


def _problem(got: Outcome, want: Any, exercise: Exercise) -> str | None:
    if got.raised is not None:
        return f"It raised {got.raised}" + (f"\nat: {got.line}" if got.line else "")
    if got.value is None and want is not None:
        return "It returned None: is a `return` missing?"
    return compare(got.value, want, rtol=exercise.rtol, atol=exercise.atol,
                   where="answer" if exercise.value else "output")


def judge(exercise: Exercise, cases: Sequence[tuple[str, Any]], outcomes: Sequence[Outcome],
          wants: Sequence[Any], name: str | None = None) -> Verdict:
    """The verdict on labelled cases: the first case not implemented or wrong decides."""
    name = name or exercise.name
    for (label, case), got, want in zip(cases, outcomes, wants, strict=True):
        if got.not_implemented:
            return Verdict("not_implemented", f"{name}: not {'done' if exercise.value else 'implemented'} yet.")
        problem = _problem(got, want, exercise)
        if problem:
            where = "" if exercise.value else f"On {label} {describe(case)}:\n"
            text = f"{name}: WRONG. {where}{problem}"
            return Verdict("wrong", text.replace("\n", "\n  "))
    if exercise.value:
        return Verdict("correct", f"{name}: correct.")
    visible = sum(not label.startswith("hidden") for label, _ in cases)
    hidden = len(cases) - visible
    more = f" and {hidden} hidden cases" if hidden else ""
    return Verdict("correct", f"{name}: correct on all {visible} cases{more}.")


def forbidden_verdict(exercise: Exercise, used: list[str], name: str | None = None) -> Verdict:
    """The verdict for a solution that calls what the exercise asks it not to use."""
    names = ", ".join(f"`{n}`" for n in used)
    return Verdict("wrong", f"{name or exercise.name}: WRONG. It uses {names}, which this exercise asks you "
                            "to write yourself.")

