"""Generate the student notebooks in notebooks/ from the solved ones in solutions/.

    python -m clipedu.course            # (re)write notebooks/ from solutions/
    python -m clipedu.course --check    # exit 1 and list what is out of date

A solution notebook marks each exercise's answer with two comment lines::

    def softmax_t(logits, temperature):
        ### BEGIN SOLUTION
        return torch.softmax(logits / temperature, dim=-1)
        ### END SOLUTION

The student copy gets, at the same indentation::

        # YOUR CODE HERE
        raise NotImplementedError

A region must sit inside a function, so that the unfinished exercise raises
only when its check calls it (the check then carries on with the
reference). In a markdown cell a region becomes a "Your answer here" line.

The student copy also loses every output and execution count, its metadata
is reduced to the kernelspec (`python3`), and whole-line
`# NBVAL_CHECK_OUTPUT` markers are removed: a student notebook stores no
outputs, so there is nothing to compare with (docs/authoring.md explains).

Both copies carry nbgrader's cell metadata (`nbgrader_metadata`), which the
grader (`python -m clipedu.grade`) and nbgrader itself read:

- an exercise cell: `solution: true, grade: false, locked: false`, with the
  grade_id "NN-function" (notebook number, the function holding the region);
- its check cell (the next cell calling check_exercise/check_function/
  check_value): `grade: true, locked: true, points`, grade_id "NN-function-check";
- a written answer (a region in markdown): a manual-grade cell,
  `solution: true, grade: true, points: 1`, grade_id "NN-answer_K".

`generate` writes this metadata into the solution notebooks too (nothing
else of them changes).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat

from clipedu.errors import ClipeduError
from clipedu.grade.nbgrader import MARKER, DuplicateGradeId, nbgrader_metadata

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
STUDENT_CODE = ["# YOUR CODE HERE", "raise NotImplementedError"]
STUDENT_MARKDOWN = "_Your answer here._"


class SolutionError(ClipeduError, ValueError):
    """A solution notebook whose exercise markers are malformed."""


def _where(path: str, index: int, cell) -> str:
    first = cell.source.strip().splitlines()[0][:50] if cell.source.strip() else ""
    return f"{path}, cell {index + 1} ({cell.cell_type} cell starting {first!r})"


def strip_solutions(source: str, where: str, markdown: bool = False) -> str:
    """Replace every BEGIN/END SOLUTION region of one cell's source."""
    out: list[str] = []
    begin_line = None
    for lineno, line in enumerate(source.split("\n"), start=1):
        m = MARKER.match(line)
        if m:
            if line.strip() not in (BEGIN, END):
                raise SolutionError(f"{where}, line {lineno}: malformed marker {line.strip()!r}; "
                                    f"write exactly {BEGIN!r} or {END!r} on its own line")
            if m.group(2).upper() == "BEGIN":
                if begin_line is not None:
                    raise SolutionError(f"{where}, line {lineno}: {BEGIN!r} inside the region opened on line "
                                        f"{begin_line}; close it with {END!r} first")
                begin_line = lineno
                indent = m.group(1)
                out += [STUDENT_MARKDOWN] if markdown else [indent + s for s in STUDENT_CODE]
            else:
                if begin_line is None:
                    raise SolutionError(f"{where}, line {lineno}: {END!r} without a {BEGIN!r} before it")
                begin_line = None
        elif begin_line is None:
            out.append(line)
    if begin_line is not None:
        raise SolutionError(f"{where}, line {begin_line}: {BEGIN!r} has no matching {END!r}; "
                            f"add {END!r} after the solution")
    return "\n".join(out)


def strip_check_markers(source: str) -> str:
    """Drop whole-line `# NBVAL_CHECK_OUTPUT` comments, matched the way nbval matches them."""
    lines = source.split("\n")
    kept = [ln for ln in lines if not (ln.strip().startswith("#")
                                       and ln.strip().lstrip("#").strip() == "NBVAL_CHECK_OUTPUT")]
    return "\n".join(kept)


def _check_inside_function(source: str, where: str) -> None:
    """A `raise NotImplementedError` left at top level would stop the student's notebook."""
    code = "\n".join("pass" if re.match(r"\s*[%!]", ln) else ln for ln in source.split("\n"))  # IPython magics
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise SolutionError(f"{where}: the student version is not valid Python ({exc.msg}, line {exc.lineno}); "
                            "check the indentation of the solution markers") from None

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Raise) and not in_function:
                exc = child.exc
                if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                    raise SolutionError(f"{where}, line {child.lineno}: solution region outside a function; the "
                                        "student notebook would stop there. Put the exercise in a function "
                                        "(see docs/authoring.md)")
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inside)

    visit(tree, False)


def _nbgrader(nb: nbformat.NotebookNode, path: str) -> list[dict | None]:
    try:
        return nbgrader_metadata(nb.cells, path)
    except DuplicateGradeId as exc:
        raise SolutionError(str(exc)) from None


def annotate(nb: nbformat.NotebookNode, path: str = "<notebook>") -> bool:
    """Write nbgrader metadata into a (solution) notebook's cells in place; True when anything changed."""
    changed = False
    for cell, meta in zip(nb.cells, _nbgrader(nb, path)):
        if cell.get("metadata", {}).get("nbgrader") != meta:
            if meta is None:
                cell.metadata.pop("nbgrader")
            else:
                cell.metadata["nbgrader"] = meta
            changed = True
    return changed


def student_notebook(solution: nbformat.NotebookNode, path: str = "<notebook>") -> nbformat.NotebookNode:
    """The student version of a solution notebook (pure: the input is not modified)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    nbgrader = _nbgrader(solution, path)
    for index, cell in enumerate(solution.cells):
        where = _where(path, index, cell)
        cell_id = cell.get("id") or f"cell-{index}"
        tags = [t for t in cell.get("metadata", {}).get("tags", []) if t != "nbval-check-output"]
        if cell.cell_type == "code":
            source = strip_check_markers(strip_solutions(cell.source, where))
            if source != cell.source:
                _check_inside_function(source, where)
            new = nbformat.v4.new_code_cell(source)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(strip_solutions(cell.source, where, markdown=True))
            if "attachments" in cell:
                new.attachments = cell.attachments
        else:
            new = nbformat.v4.new_raw_cell(cell.source)
        new.id = cell_id
        if nbgrader[index]:
            new.metadata["nbgrader"] = nbgrader[index]
        if tags:
            new.metadata["tags"] = tags
        nb.cells.append(new)
    return nb


def render(solution_path: Path) -> str:
    """The exact text of the student notebook for one solution file."""
    try:
        nb = nbformat.read(str(solution_path), as_version=4)
    except ValueError as exc:  # nbformat's NotJSONError and friends
        raise SolutionError(f"{solution_path} is not a readable notebook: {exc}") from None
    text = nbformat.writes(student_notebook(nb, str(solution_path)))
    return text if text.endswith("\n") else text + "\n"


def _unexecuted_checks(solution_path: Path) -> list[int]:
    """Code cells marked NBVAL_CHECK_OUTPUT that were never run: nbval silently skips those."""
    nb = nbformat.read(str(solution_path), as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    return [i for i, c in enumerate(code_cells)
            if strip_check_markers(c.source) != c.source and c.get("execution_count") is None]


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # unreadable counts as stale


def find_problems(solutions: Path, notebooks: Path) -> list[str]:
    """Everything `--check` complains about, one line each (empty when up to date)."""
    problems = []
    sols = {p.name: p for p in sorted(solutions.glob("*.ipynb"))}
    nbs = {p.name: p for p in sorted(notebooks.glob("*.ipynb"))}
    for name, sol in sols.items():
        target = notebooks / name
        if name not in nbs:
            problems.append(f"missing: {target} (run `python -m clipedu.course`)")
        elif _load_json(target) != json.loads(render(sol)):
            problems.append(f"stale: {target} differs from what {sol} generates (run `python -m clipedu.course`)")
        if annotate(nbformat.read(str(sol), as_version=4), str(sol)):
            problems.append(f"unannotated: {sol} lacks the nbgrader metadata of its exercise and check cells "
                            "(run `python -m clipedu.course`, which writes it)")
        for i in _unexecuted_checks(sol):
            problems.append(f"not executed: {sol} code cell {i} is marked NBVAL_CHECK_OUTPUT but has no stored "
                            "output; execute the solution notebook (docs/authoring.md)")
    for name in nbs:
        if name not in sols:
            problems.append(f"extra: {notebooks / name} has no solution {solutions / name}; add the solution "
                            "or delete the student notebook")
    return problems


def annotate_file(solution_path: Path) -> bool:
    """Write nbgrader metadata into one solution file (only when it changes); True when it did."""
    nb = nbformat.read(str(solution_path), as_version=4)
    if not annotate(nb, str(solution_path)):
        return False
    text = nbformat.writes(nb)
    solution_path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return True


def generate(solutions: Path, notebooks: Path) -> list[Path]:
    """Write notebooks/ from solutions/; return the files that changed."""
    notebooks.mkdir(parents=True, exist_ok=True)
    changed = []
    for sol in sorted(solutions.glob("*.ipynb")):
        annotate_file(sol)
        target = notebooks / sol.name
        text = render(sol)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(target)
    return changed
