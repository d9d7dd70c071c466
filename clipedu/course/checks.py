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
import math
import traceback
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = ["check_function", "check_value", "compare"]


# ----------------------------------------------------------------------------
# comparing two answers


def _fmt(x: Any) -> str:
    """A short, deterministic text for a number or a small object."""
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.6g}"
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return "torch.Tensor"
    if isinstance(x, np.ndarray):
        return "numpy.ndarray"
    return type(x).__name__


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _compare_arrays(got: np.ndarray, want: np.ndarray, where: str, rtol: float, atol: float) -> str | None:
    """Element-wise comparison of two arrays of the same shape."""
    if want.dtype.kind in "fc" or got.dtype.kind in "fc":
        close = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:
        close = got == want
    if close.all():
        return None
    bad = np.argwhere(~close)
    first = tuple(int(i) for i in bad[0])
    index = where + ("[" + ", ".join(map(str, first)) + "]" if first else "")
    g, w = got[first], want[first]
    lines = [f"{index}: got {_fmt(g.item())}, expected {_fmt(w.item())}"]
    if want.size > 1:
        lines.append(f"{len(bad)} of {want.size} values differ")
    with np.errstate(all="ignore"):
        err = np.abs(got.astype(np.float64) - want.astype(np.float64))
        err = err[~close]
        ref = np.abs(want.astype(np.float64))[~close]
        finite = np.isfinite(err)
        if finite.any():
            rel = err[finite & (ref > 0)] / ref[finite & (ref > 0)]
            msg = f"max abs error {_fmt(err[finite].max())}"
            if rel.size:
                msg += f", max rel error {_fmt(rel.max())}"
            lines.append(msg + f" (tolerance: atol={atol:g}, rtol={rtol:g})")
        else:
            lines.append("the differing values are nan or inf: look for a division by zero or an overflow in exp")
    return "\n".join(lines)


def _compare_tensors(got: Any, want: Any, where: str, rtol: float, atol: float) -> str | None:
    kind = _type_name(want)
    if _type_name(got) != kind:
        extra = " (use torch.from_numpy or .numpy())" if isinstance(got, (torch.Tensor, np.ndarray)) else ""
        return f"{where}: expected a {kind}, got {_type_name(got)}{extra}"
    if tuple(got.shape) != tuple(want.shape):
        msg = f"{where}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        if tuple(got.shape) == tuple(want.shape)[::-1] and len(want.shape) > 1:
            msg += " (transposed?)"
        elif math.prod(got.shape) == math.prod(want.shape):
            msg += " (same number of values: check keepdim, a reshape, or a missing squeeze/unsqueeze)"
        return msg
    if got.dtype != want.dtype:
        return f"{where}: dtype {got.dtype}, expected {want.dtype}"
    if isinstance(want, torch.Tensor):
        if want.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16
            got, want = got.float(), want.float()
        got, want = got.detach().cpu().numpy(), want.detach().cpu().numpy()
    return _compare_arrays(np.asarray(got), np.asarray(want), where, rtol, atol)


def compare(got: Any, want: Any, rtol: float = 1e-5, atol: float = 1e-6, where: str = "output") -> str | None:
    """Return None when `got` matches `want`, else a short explanation.

    Handles tensors, numpy arrays, numbers, strings, None and (nested)
    lists, tuples and dicts of these. A list and a tuple count as the same.
    """
    if isinstance(want, (torch.Tensor, np.ndarray)):
        if _is_number(got) and want.ndim == 0:
            return f"{where}: expected a 0-d {_type_name(want)}, got a plain {_type_name(got)}"
        return _compare_tensors(got, want, where, rtol, atol)
    if isinstance(want, (bool, np.bool_)):
        if got is None or not isinstance(got, (bool, np.bool_)):
            return f"{where}: expected a bool, got {_type_name(got)}"
        return None if bool(got) == bool(want) else f"{where}: got {got}, expected {want}"
    if _is_number(want):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            return f"{where}: expected a Python number, got a torch.Tensor: call .item() on it"
        if not _is_number(got):
            return f"{where}: expected a number, got {_type_name(got)}"
        if isinstance(want, (int, np.integer)) and not isinstance(got, (int, np.integer)):
            return f"{where}: expected an int, got {_type_name(got)} {_fmt(got)}"
        if isinstance(want, (int, np.integer)):
            return None if int(got) == int(want) else f"{where}: got {int(got)}, expected {int(want)}"
        g, w = float(got), float(want)
        if math.isclose(g, w, rel_tol=rtol, abs_tol=atol) or (math.isnan(g) and math.isnan(w)):
            return None
        diff = abs(g - w)
        rel = f", rel error {_fmt(diff / abs(w))}" if w != 0 else ""
        return f"{where}: got {_fmt(g)}, expected {_fmt(w)} (abs error {_fmt(diff)}{rel})"
    if isinstance(want, str):
        if not isinstance(got, str):
            return f"{where}: expected a str, got {_type_name(got)}"
        if got == want:
            return None
        i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        return f"{where}: strings differ at character {i}: got {_fmt(got)}, expected {_fmt(want)}"
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)):
            return f"{where}: expected a {type(want).__name__}, got {_type_name(got)}"
        if len(got) != len(want):
            return f"{where}: length {len(got)}, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            problem = compare(g, w, rtol, atol, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{where}: expected a dict, got {_type_name(got)}"
        missing = [k for k in want if k not in got]
        extra = [k for k in got if k not in want]
        if missing or extra:
            return f"{where}: missing keys {missing}, unexpected keys {extra}"
        for k in want:
            problem = compare(got[k], want[k], rtol, atol, f"{where}[{k!r}]")
            if problem:
                return problem
        return None
    if want is None:
        return None if got is None else f"{where}: expected None, got {_type_name(got)}"
    return None if got == want else f"{where}: got {_fmt(got)}, expected {_fmt(want)}"


# ----------------------------------------------------------------------------
# running the student's code


def _describe(case: Any) -> str:
    """Short description of a case's inputs: shapes for tensors."""
    def one(x: Any) -> str:
        if isinstance(x, (torch.Tensor, np.ndarray)):
            dtype = str(x.dtype).replace("torch.", "")
            return f"{'Tensor' if isinstance(x, torch.Tensor) else 'array'}{list(x.shape)} {dtype}"
        return _fmt(x)
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
