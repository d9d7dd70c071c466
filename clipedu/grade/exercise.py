"""One exercise as the checks and the grader see it: reference, cases, tolerances, points, hints.

An exercise is named by its nbgrader `grade_id`, "NN-function_name" (the
notebook's number and the function the student writes), the id that
`python -m clipedu.course` writes into the notebook's metadata. Its cases
are built by functions, so that importing the registry builds no tensors:

- `visible()`: the cases the notebook's check cell runs (the student sees
  their shapes and, when wrong, the first differing value);
- `hidden()`: more cases only the grader runs (other shapes, dtypes, edge
  cases), so that hard-coding the visible answers gains nothing.

A *value* exercise is a function of no arguments (e.g. "the loss at chance
for N = 256"); its one case is the empty call, and `reference()` is the value.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Exercise", "forbidden_used", "grade_id_for", "names_used"]


def _no_cases() -> list:
    return []


@dataclass(frozen=True)
class Exercise:
    grade_id: str  # "07-symmetric_clip_loss"
    reference: Callable  # the package's function where one exists, else one in clipedu.grade.bank
    visible: Callable[[], list]  # the notebook's cases: a tuple is positional arguments, a dict keywords
    hints: tuple[str, str]  # (nudge, recipe): what to look at, then how to do it
    hidden: Callable[[], list] = _no_cases  # the grader's extra cases
    points: int = 1
    rtol: float = 1e-5
    atol: float = 1e-6
    value: bool = False  # a function of no arguments whose result is compared
    forbidden: tuple[str, ...] = ()  # names the solution must not use (the reference itself, say)
    time_limit: float = 10.0  # seconds for all cases of one student, in the grader
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def notebook(self) -> str:
        """The notebook's two-digit number."""
        return self.grade_id.split("-", 1)[0]

    @property
    def name(self) -> str:
        """The function the student writes."""
        return self.grade_id.split("-", 1)[1]

    def cases(self, hidden: bool = True) -> list[tuple[str, Any]]:
        """(label, case) pairs: "case i of n" for visible ones, then "hidden case j of m"."""
        vis = [()] if self.value else list(self.visible())
        out = [(f"case {i} of {len(vis)}", c) for i, c in enumerate(vis, start=1)]
        if hidden and not self.value:
            hid = list(self.hidden())
            out += [(f"hidden case {j} of {len(hid)}", c) for j, c in enumerate(hid, start=1)]
        return out


def grade_id_for(notebook_name: str, function_name: str) -> str:
    """The grade_id of an exercise: "07_contrastive_loss.ipynb", "symmetric_clip_loss" -> "07-symmetric_clip_loss"."""
    number = notebook_name.split("_", 1)[0]
    if not (len(number) == 2 and number.isdigit()):
        raise ValueError(f"notebook {notebook_name!r} does not start with a two-digit number (NN_topic.ipynb)")
    return f"{number}-{function_name}"


def names_used(code: types.CodeType) -> set[str]:
    """The global and attribute names a function's code uses (nested functions included)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= names_used(const)
    return names


def forbidden_used(exercise: Exercise, code: types.CodeType | None) -> list[str]:
    """The forbidden names a function uses, in the exercise's order."""
    if code is None or not exercise.forbidden:
        return []
    used = names_used(code)
    return [n for n in exercise.forbidden if n in used]

