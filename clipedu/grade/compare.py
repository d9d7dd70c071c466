"""Comparing a student's answer with the reference: None when they match, else why not.

`compare` walks tensors, arrays, numbers, strings and nested containers, and
names the first difference the way a student can act on: the index and the two
values, a transposed or squeezed shape, a dtype, a missing `.item()`.
`clipedu.grade.judge` turns what this module finds into a check message, in the
notebook (`clipedu.course.checks`) and in the grader alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["compare", "short_repr"]


def short_repr(x: Any) -> str:
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
    lines = [f"{index}: got {short_repr(g.item())}, expected {short_repr(w.item())}"]
    if want.size > 1:
        lines.append(f"{len(bad)} of {want.size} values differ")
    with np.errstate(all="ignore"):
        err = np.abs(got.astype(np.float64) - want.astype(np.float64))
        err = err[~close]
        ref = np.abs(want.astype(np.float64))[~close]
        finite = np.isfinite(err)
        if finite.any():
            rel = err[finite & (ref > 0)] / ref[finite & (ref > 0)]
            msg = f"max abs error {short_repr(err[finite].max())}"
            if rel.size:
                msg += f", max rel error {short_repr(rel.max())}"
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
            return f"{where}: expected an int, got {_type_name(got)} {short_repr(got)}"
        if isinstance(want, (int, np.integer)):
            return None if int(got) == int(want) else f"{where}: got {int(got)}, expected {int(want)}"
        g, w = float(got), float(want)
        if math.isclose(g, w, rel_tol=rtol, abs_tol=atol) or (math.isnan(g) and math.isnan(w)):
            return None
        diff = abs(g - w)
        rel = f", rel error {short_repr(diff / abs(w))}" if w != 0 else ""
        return f"{where}: got {short_repr(g)}, expected {short_repr(w)} (abs error {short_repr(diff)}{rel})"
    if isinstance(want, str):
        if not isinstance(got, str):
            return f"{where}: expected a str, got {_type_name(got)}"
        if got == want:
            return None
        i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        return f"{where}: strings differ at character {i}: got {short_repr(got)}, expected {short_repr(want)}"
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
    return None if got == want else f"{where}: got {short_repr(got)}, expected {short_repr(want)}"
