"""nbgrader's cell metadata for a course notebook: which cell is an exercise, a check, a written answer.

`python -m clipedu.course` writes it into solutions/ and notebooks/; the
grader finds exercises by it; an instructor can use nbgrader with it. For
each cell, `nbgrader_metadata` gives:

- an exercise cell (a code cell with a solution region, or already marked as
  one): `solution: true, grade: false, locked: false`, grade_id "NN-function"
  (the notebook's number, the top-level function holding the first region);
- its check cell (the next code cell calling check_exercise, check_function or
  check_value): `grade: true, locked: true, points`, grade_id "NN-function-check";
- a written answer (a region in markdown): a manual-grade cell,
  `solution: true, grade: true, points: 1`, grade_id "NN-answer_K".
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from clipedu.errors import ClipeduError
from clipedu.grade.registry import REGISTRY

__all__ = ["DuplicateGradeId", "MARKER", "nbgrader_metadata"]

MARKER = re.compile(r"^(\s*)#+\s*(BEGIN|END)\s+SOLUTION\b.*$", re.IGNORECASE)
CHECK_CALL = re.compile(r"\bcheck_(exercise|function|value)\s*\(")
NBGRADER_SCHEMA = 3


class DuplicateGradeId(ClipeduError, ValueError):
    """Two exercise cells of one notebook would get the same grade_id."""


def _has_region(source: str) -> bool:
    return any(MARKER.match(line) for line in source.split("\n"))


def _region_function(source: str) -> str | None:
    """The top-level function or class that holds the cell's first solution region."""
    lines = source.split("\n")
    first = next(i for i, line in enumerate(lines, start=1) if MARKER.match(line))
    code = "\n".join("pass" if re.match(r"\s*[%!]", ln) else ln for ln in lines)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    return next((node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
                 and node.lineno <= first <= node.end_lineno), None)


def _prefix(path: str) -> str:
    name = Path(path).name
    return name[:2] if name[:2].isdigit() else Path(name).stem


def nbgrader_metadata(cells: list, path: str = "<notebook>") -> list[dict | None]:
    """nbgrader's metadata for each cell (None for ordinary cells); see the module's docstring.

    Works on a solution (regions mark exercises) and on a student copy (its
    existing nbgrader metadata does). Raises SolutionError for two exercises
    with the same grade_id.
    """
    out: list[dict | None] = []
    seen: dict[str, int] = {}
    current, answers = None, 0
    for index, cell in enumerate(cells):
        old = cell.get("metadata", {}).get("nbgrader", {})
        meta = None
        if cell.cell_type == "code" and (_has_region(cell.source) or old.get("solution")):
            name = _region_function(cell.source) if _has_region(cell.source) else None
            grade_id = f"{_prefix(path)}-{name}" if name else old.get("grade_id") or f"{_prefix(path)}-cell{index}"
            meta = {"grade": False, "grade_id": grade_id, "locked": False, "solution": True}
            current = grade_id
        elif cell.cell_type == "code" and current and CHECK_CALL.search(cell.source):
            points = REGISTRY[current].points if current in REGISTRY else 1
            meta = {"grade": True, "grade_id": f"{current}-check", "locked": True, "points": points,
                    "solution": False}
            current = None
        elif cell.cell_type == "markdown" and (_has_region(cell.source) or old.get("solution")):
            answers += 1
            meta = {"grade": True, "grade_id": f"{_prefix(path)}-answer_{answers}", "locked": False, "points": 1,
                    "solution": True}
        if meta:
            meta["schema_version"] = NBGRADER_SCHEMA
            if meta["grade_id"] in seen:
                raise DuplicateGradeId(f"{path}, cell {index + 1}: grade_id {meta['grade_id']!r} is also the id of "
                                    f"cell {seen[meta['grade_id']] + 1}; give each exercise its own function name")
            seen[meta["grade_id"]] = index
        out.append(meta)
    return out

