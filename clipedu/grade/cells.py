"""Reading notebooks for grading: cells by nbgrader grade_id, runnable code, written answers.

A student's notebook is read as plain JSON, never executed here, and
anything malformed (truncated JSON, no cell list, a cell without source) is a
`CorruptNotebook` naming the problem. An exercise's cell is found by its
`grade_id` (metadata that `python -m clipedu.course` writes), not by its
position; a cell whose metadata the student's editor dropped is found by the
function it defines.
"""

from __future__ import annotations

import ast
import json
import re
import types
from dataclasses import dataclass
from pathlib import Path

from clipedu.errors import ClipeduError

__all__ = ["Cell", "CorruptNotebook", "exercise_code", "find_exercise_cell", "read_cells", "runnable",
           "written_answers"]


class CorruptNotebook(ClipeduError, ValueError):
    """A notebook file that is not a readable .ipynb."""


@dataclass(frozen=True)
class Cell:
    cell_type: str  # "code", "markdown" or "raw"
    source: str
    nbgrader: dict  # the cell's metadata["nbgrader"], {} when absent

    @property
    def grade_id(self) -> str | None:
        return self.nbgrader.get("grade_id")


def read_cells(path: Path) -> list[Cell]:
    """The cells of a notebook file, or CorruptNotebook saying what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CorruptNotebook(f"corrupt notebook: {path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise CorruptNotebook(f"corrupt notebook: {path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                              "was it truncated? Re-save it from Jupyter") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise CorruptNotebook(f"corrupt notebook: {path} has no list of cells")
    cells = []
    for i, raw in enumerate(data["cells"]):
        source = raw.get("source") if isinstance(raw, dict) else None
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str) or raw.get("cell_type") not in ("code", "markdown", "raw"):
            raise CorruptNotebook(f"corrupt notebook: {path}, cell {i + 1} has no cell_type or source")
        meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
        nbgrader = meta.get("nbgrader") if isinstance(meta.get("nbgrader"), dict) else {}
        cells.append(Cell(raw["cell_type"], source, nbgrader))
    return cells


def _defines(source: str, name: str) -> bool:
    return re.search(rf"^def\s+{re.escape(name)}\s*\(", source, re.MULTILINE) is not None


def find_exercise_cell(cells: list[Cell], grade_id: str, function_name: str) -> Cell | None:
    """The code cell with this grade_id; failing that, the last code cell that defines the function."""
    for cell in cells:
        if cell.cell_type == "code" and cell.grade_id == grade_id:
            return cell
    defining = [c for c in cells if c.cell_type == "code" and _defines(c.source, function_name)]
    return defining[-1] if defining else None


def runnable(source: str) -> str:
    """A cell's source with IPython magics and shell lines (`%time`, `!pip`) replaced by `pass`."""
    return "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in source.split("\n"))


def exercise_code(source: str, function_name: str, filename: str) -> tuple[types.CodeType, types.CodeType | None]:
    """Compile a student's exercise cell (nothing runs): the cell's code and the function's own code.

    Raises SyntaxError for a cell that does not compile.
    """
    module = compile(runnable(source), filename, "exec", flags=ast.PyCF_ONLY_AST)
    code = compile(module, filename, "exec")
    found = [c for c in code.co_consts if isinstance(c, types.CodeType) and c.co_name == function_name]
    return code, (found[-1] if found else None)


def written_answers(cells: list[Cell]) -> list[tuple[str, str]]:
    """(grade_id, text) of every written-answer cell (an nbgrader solution cell in markdown)."""
    return [(c.grade_id or f"answer {i + 1}", c.source.strip()) for i, c in enumerate(cells)
            if c.cell_type == "markdown" and c.nbgrader.get("solution")]
