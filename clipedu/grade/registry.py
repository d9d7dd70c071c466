"""Every graded exercise of the course, by grade_id: what the checks and the grader look up.

    get_exercise("07-symmetric_clip_loss")   # the Exercise, or a clear error
    exercises_of("07")                       # the notebook's exercises, in order

Notebooks whose exercises are not registered yet keep their check cells'
`check_function` / `check_value`, and the grader skips them.
"""

from __future__ import annotations

from clipedu.errors import ClipeduError
from clipedu.grade.bank import nb00, nb07
from clipedu.grade.exercise import Exercise

__all__ = ["REGISTRY", "UnknownExercise", "exercises_of", "get_exercise"]

REGISTRY: dict[str, Exercise] = {ex.grade_id: ex for module in (nb00, nb07) for ex in module.EXERCISES}


class UnknownExercise(ClipeduError, KeyError):
    """A grade_id that no notebook's bank defines."""

    def __str__(self) -> str:
        return self.args[0]


def get_exercise(grade_id: str) -> Exercise:
    """The registered exercise with this grade_id."""
    if grade_id not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownExercise(f"no exercise {grade_id!r} in clipedu.grade's registry (known: {known}); "
                              "add it to clipedu/grade/bank/nbNN.py")
    return REGISTRY[grade_id]


def exercises_of(notebook: str) -> list[Exercise]:
    """The registered exercises of notebook "07" (or "07_contrastive_loss.ipynb"), in notebook order."""
    number = notebook[:2]
    return [ex for ex in REGISTRY.values() if ex.notebook == number]
