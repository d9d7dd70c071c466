"""clipedu.course: notebooks/ is generated from solutions/."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from clipedu.course.__main__ import main
from clipedu.course.build import (
    SolutionError,
    annotate,
    find_problems,
    generate,
    student_notebook,
)
from clipedu.grade.nbgrader import nbgrader_metadata

ROOT = Path(__file__).resolve().parents[1]

EXERCISE = """\
import torch

def softmax_t(logits, temperature):
    \"\"\"Softmax of logits / temperature.\"\"\"
    ### BEGIN SOLUTION
    z = logits / temperature
    return torch.softmax(z, dim=-1)
    ### END SOLUTION

class Pair:
    def first(self, xs):
        if xs:
            ### BEGIN SOLUTION
            return xs[0]
            ### END SOLUTION
        return None"""

STUDENT = """\
import torch

def softmax_t(logits, temperature):
    \"\"\"Softmax of logits / temperature.\"\"\"
    # YOUR CODE HERE
    raise NotImplementedError

class Pair:
    def first(self, xs):
        if xs:
            # YOUR CODE HERE
            raise NotImplementedError
        return None"""


def solution_notebook(*sources: str) -> nbformat.NotebookNode:
    """An executed-looking notebook: every code cell has an output and a count."""
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                "language_info": {"name": "python", "version": "3.11.7"}, "widgets": {}})
    for i, src in enumerate(sources, start=1):
        if src.startswith("MD:"):
            nb.cells.append(new_markdown_cell(src[3:]))
        else:
            cell = new_code_cell(src, execution_count=i, outputs=[new_output("stream", name="stdout", text="hi\n")])
            cell.metadata = {"scrolled": True, "execution": {"iopub.status.busy": "2024"}}
            nb.cells.append(cell)
    return nb


def write(path: Path, nb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def test_regions_replaced_keeping_indentation():
    nb = student_notebook(solution_notebook(EXERCISE))
    assert nb.cells[0].source == STUDENT


def test_outputs_counts_and_metadata_cleared():
    sol = solution_notebook("print('hi')", "MD:# Title")
    nb = student_notebook(sol)
    code = nb.cells[0]
    assert code.outputs == [] and code.execution_count is None and code.metadata == {}
    assert nb.metadata == {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                          "name": "python3"}, "language_info": {"name": "python"}}
    assert [c.id for c in nb.cells] == [c.id for c in sol.cells]  # stable ids, small diffs
    assert sol.cells[0].outputs  # the solution itself is untouched
    nbformat.validate(nb)


def test_check_output_markers_stripped_other_markers_kept():
    trailing = "x = 1  # NBVAL_CHECK_OUTPUT is only a marker on its own line"
    src = "# NBVAL_CHECK_OUTPUT\nprint(1)\n## NBVAL_CHECK_OUTPUT\n" + trailing
    skip = "# NBVAL_SKIP\nprint(2)"
    sol = solution_notebook(src, skip)
    sol.cells[1].metadata["tags"] = ["nbval-check-output", "keep-me"]
    nb = student_notebook(sol)
    assert nb.cells[0].source == "print(1)\n" + trailing
    assert nb.cells[1].source == skip
    assert nb.cells[1].metadata == {"tags": ["keep-me"]}


def test_markdown_region_becomes_answer_line():
    nb = student_notebook(solution_notebook("MD:Why ln N?\n\n### BEGIN SOLUTION\nBecause uniform.\n### END SOLUTION"))
    assert nb.cells[0].source == "Why ln N?\n\n_Your answer here._"


@pytest.mark.parametrize("source, fragment", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "line 2: '### BEGIN SOLUTION' has no matching"),
    ("def f():\n    return 1\n    ### END SOLUTION", "line 3: '### END SOLUTION' without"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n", "line 3: '### BEGIN SOLUTION' inside"),
    ("def f():\n    ## BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", "malformed marker"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "outside a function"),
])
def test_malformed_regions_raise_naming_notebook_and_cell(source, fragment):
    sol = solution_notebook("import math", source)
    with pytest.raises(SolutionError) as info:
        student_notebook(sol, "solutions/07_loss.ipynb")
    message = str(info.value)
    assert "solutions/07_loss.ipynb, cell 2 (code cell" in message
    assert fragment in message


def test_generate_is_idempotent_and_check_passes(tmp_path, capsys):
    sols, nbs = tmp_path / "solutions", tmp_path / "notebooks"
    write(sols / "00_a.ipynb", solution_notebook(EXERCISE, "# NBVAL_CHECK_OUTPUT\nprint('hi')"))
    write(sols / "01_b.ipynb", solution_notebook("MD:# B", "x = 1"))
    assert len(generate(sols, nbs)) == 2
    first = {p.name: p.read_bytes() for p in nbs.glob("*.ipynb")}
    assert generate(sols, nbs) == []  # nothing to rewrite
    assert {p.name: p.read_bytes() for p in nbs.glob("*.ipynb")} == first
    assert find_problems(sols, nbs) == []
    assert main(["--check", "--solutions", str(sols), "--notebooks", str(nbs)]) == 0
    # a student notebook fed back in comes out unchanged
    student = nbformat.read(str(nbs / "00_a.ipynb"), as_version=4)
    assert nbformat.writes(student_notebook(student)) == nbformat.writes(student)


def test_check_detects_stale_missing_and_extra(tmp_path, capsys):
    sols, nbs = tmp_path / "solutions", tmp_path / "notebooks"
    write(sols / "00_a.ipynb", solution_notebook(EXERCISE))
    write(sols / "01_b.ipynb", solution_notebook("x = 1"))
    generate(sols, nbs)
    write(sols / "01_b.ipynb", solution_notebook("x = 2"))  # edited after generating: stale
    write(sols / "02_c.ipynb", solution_notebook("y = 1"))  # never generated: missing
    write(nbs / "99_old.ipynb", solution_notebook("z = 1"))  # no solution: extra
    code = main(["--check", "--solutions", str(sols), "--notebooks", str(nbs)])
    out = capsys.readouterr().out
    assert code == 1
    assert "stale: " + str(nbs / "01_b.ipynb") in out
    assert "missing: " + str(nbs / "02_c.ipynb") in out
    assert "extra: " + str(nbs / "99_old.ipynb") in out
    assert "00_a" not in out


def test_check_flags_unexecuted_marked_cells(tmp_path):
    sols, nbs = tmp_path / "solutions", tmp_path / "notebooks"
    sol = solution_notebook("# NBVAL_CHECK_OUTPUT\nprint(1)")
    sol.cells[0].execution_count = None
    sol.cells[0].outputs = []
    write(sols / "00_a.ipynb", sol)
    generate(sols, nbs)
    problems = find_problems(sols, nbs)
    assert len(problems) == 1 and problems[0].startswith("not executed:")


def test_cli_reports_malformed_solution(tmp_path, capsys):
    sols = tmp_path / "solutions"
    write(sols / "05_x.ipynb", solution_notebook("def f():\n    ### BEGIN SOLUTION\n    pass"))
    assert main(["--solutions", str(sols), "--notebooks", str(tmp_path / "nb")]) == 2
    assert "05_x.ipynb, cell 1" in capsys.readouterr().err
    assert main(["--solutions", str(tmp_path / "nowhere")]) == 2


def test_generated_file_is_plain_json_with_no_outputs(tmp_path):
    sols, nbs = tmp_path / "solutions", tmp_path / "notebooks"
    write(sols / "00_a.ipynb", solution_notebook("print('hi')"))
    generate(sols, nbs)
    data = json.loads((nbs / "00_a.ipynb").read_text())
    assert data["cells"][0]["outputs"] == [] and data["cells"][0]["execution_count"] is None
    assert (nbs / "00_a.ipynb").read_text().endswith("\n")


def test_real_tree_is_up_to_date():
    """What CI runs (`make check-notebooks`), from the repository root."""
    run = subprocess.run([sys.executable, "-m", "clipedu.course", "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "up to date" in run.stdout


# ---- nbgrader metadata


def test_every_exercise_cell_of_every_notebook_gets_a_unique_grade_id():
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        metas = nbgrader_metadata(nb.cells, str(path))
        exercises = [m["grade_id"] for c, m in zip(nb.cells, metas) if c.cell_type == "code" and m and m["solution"]]
        regions = [c for c in nb.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]
        assert len(exercises) == len(regions) >= 2, path.name
        ids = [m["grade_id"] for m in metas if m]
        assert len(ids) == len(set(ids)), path.name
        assert all(g.startswith(path.name[:2] + "-") for g in ids)
        checks = [m for m in metas if m and m["grade"] and not m["solution"]]
        assert [m["grade_id"] for m in checks] == [g + "-check" for g in exercises], path.name


def test_student_copy_carries_nbgrader_metadata():
    sol = solution_notebook(EXERCISE, "# NBVAL_CHECK_OUTPUT\nsoftmax_t = check_function(softmax_t, ref, cases)",
                            "print(1)", "MD:Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION")
    nb = student_notebook(sol, "solutions/07_x.ipynb")
    assert nb.cells[0].metadata["nbgrader"] == {"grade": False, "grade_id": "07-softmax_t", "locked": False,
                                                "schema_version": 3, "solution": True}
    assert nb.cells[1].metadata["nbgrader"] == {"grade": True, "grade_id": "07-softmax_t-check", "locked": True,
                                                "points": 1, "schema_version": 3, "solution": False}
    assert nb.cells[2].metadata == {}
    assert nb.cells[3].metadata["nbgrader"] == {"grade": True, "grade_id": "07-answer_1", "locked": False,
                                                "points": 1, "schema_version": 3, "solution": True}
    assert annotate(sol, "solutions/07_x.ipynb") and not annotate(sol, "solutions/07_x.ipynb")
    assert sol.cells[0].metadata["nbgrader"] == nb.cells[0].metadata["nbgrader"]
    assert sol.cells[0].outputs  # annotating changes nothing but the metadata


def test_two_exercises_with_one_name_raise():
    sol = solution_notebook(EXERCISE, EXERCISE)
    with pytest.raises(SolutionError, match="grade_id '07-softmax_t' is also the id of cell 1"):
        student_notebook(sol, "solutions/07_x.ipynb")
