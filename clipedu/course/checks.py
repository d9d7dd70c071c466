"""Exercise checks: compare a student's answer with the reference and explain.

Every exercise in the course is followed by a check cell::

    softmax_t = check_function(softmax_t, reference_softmax_t,
                               cases=[(logits, 0.5), (logits, 2.0)],
                               name="softmax_t", hint="divide before exp")

The check never raises because of the student's code. It prints one of:

- success: one line, and the student's function is returned;
- not done yet (NotImplementedError): the notebook carries on with the
  reference, which is returned and named;
- wrong: which case, which value differs and by how much, the hint, and the
  reference is returned so the rest of the notebook still works.

Mistakes of the notebook author (an empty case list, a reference that
raises) do raise: they must be fixed before the notebook is committed.
"""

from __future__ import annotations

import copy
import traceback
from typing import Any, Callable, Sequence

import numpy as np
import torch

from clipedu.course.compare import compare, short_repr

__all__ = ["check_function", "check_value"]


def _describe(case: Any) -> str:
    """Short description of a case's inputs: shapes for tensors."""
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


def _call(fn: Callable, case: Any) -> Any:
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
        want = _call(reference_fn, case)
        label = f"case {i} of {len(cases)} {_describe(case)}"
        try:
            got = _call(student_fn, case)
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
