"""Grading one student's notebook (the trusted parent; `kernel.py` is the contained child).

    results = grade_notebook("alice", Path("submissions/alice/07_contrastive_loss.ipynb"),
                             Path("notebooks/07_contrastive_loss.ipynb"), timeout=120)

The parent reads the student's notebook as data, takes each exercise's cell
by grade_id, writes a job (the official notebook's code cells, the student's
exercise cells, every case) into a fresh temporary folder, and starts the
grading process there. It then reads back only what the student's functions
returned (`torch.load(weights_only=True)`), computes the reference outputs
itself, and judges. The student's check cells and earlier cells are never
run: redefining `check_function`, patching torch or hard-coding the visible
cases changes nothing here, and the hidden cases decide.

Grading processes start from a multiprocessing fork server that has imported
torch once (a fresh process each, in about a second). As with any
multiprocessing code, a script that calls `grade_notebook` must run it under
`if __name__ == "__main__":`.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clipedu.grade.cells import CorruptNotebook, exercise_code, find_exercise_cell, read_cells, runnable
from clipedu.grade.exercise import Exercise, forbidden_used, names_used
from clipedu.grade.judge import Outcome, Verdict, call, forbidden_verdict, judge
from clipedu.grade.kernel import run_job
from clipedu.grade.registry import exercises_of

__all__ = ["Result", "grade_notebook"]

STATUSES = ("correct", "wrong", "not_implemented", "error", "timeout", "missing")
_CONTEXT = None


@dataclass
class Result:
    student: str
    notebook: str  # "07_contrastive_loss"
    exercise: str  # grade_id
    status: str  # one of STATUSES
    points: int  # earned
    max_points: int
    message: str
    hints: tuple[str, ...] = ()  # what the feedback adds: the nudge, and the recipe for wrong answers


def _context():
    """A fork server that has imported torch once: each grading process starts from it, fresh and fast."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["torch", "numpy", "matplotlib.pyplot", "clipedu.grade.kernel",
                                         "clipedu.grade.judge", "clipedu.model", "clipedu.loss"])
    return _CONTEXT


def _restore(x):
    """Undo kernel._sanitize: numpy arrays and dicts back, foreign objects as stand-ins named after their type."""
    if isinstance(x, dict):
        if "__numpy__" in x:
            arr = x["__numpy__"].numpy() if isinstance(x["__numpy__"], torch.Tensor) else np.array(x["__numpy__"])
            return arr[()] if x.get("scalar") else arr
        if "__dict__" in x:
            return {_restore(k): _restore(v) for k, v in x["__dict__"]}
        if "__object__" in x:
            return type(str(x["__object__"]), (), {"__repr__": lambda self, r=str(x.get("repr")): r})()
    if isinstance(x, (list, tuple)):
        items = [_restore(v) for v in x]
        return items if isinstance(x, list) else tuple(items)
    return x


def _hints(exercise: Exercise, status: str) -> tuple[str, ...]:
    if status == "correct":
        return ()
    return exercise.hints[:1] if status in ("not_implemented", "missing") else exercise.hints


def _result(student: str, notebook: str, exercise: Exercise, status: str, message: str) -> Result:
    points = exercise.points if status == "correct" else 0
    return Result(student, notebook, exercise.grade_id, status, points, exercise.points, message,
                  _hints(exercise, status))


def _precheck(exercise: Exercise, source: str) -> Verdict | str | None:
    """Before running: a cell that does not compile (str), a forbidden name (Verdict), else None."""
    try:
        cell_code, fn_code = exercise_code(source, exercise.name, f"<exercise cell {exercise.grade_id}>")
    except SyntaxError as exc:
        return f"{exercise.name}: your exercise cell does not compile: {exc.msg} (line {exc.lineno})"
    used_at_top = names_used(cell_code) - {exercise.name}
    used = forbidden_used(exercise, fn_code) or [n for n in exercise.forbidden if n in used_at_top]
    return forbidden_verdict(exercise, used) if used else None


def _collect(exercise: Exercise, cases: list, results: Path, kernel_timed_out: bool, timeout: float) -> tuple:
    """(status, message) of one exercise from what the grading process left in results/."""
    name, gid = exercise.name, exercise.grade_id
    status_file, data_file = results / f"{gid}.json", results / f"{gid}.pt"
    if status_file.exists():
        info = json.loads(status_file.read_text())
        return info["status"], f"{name}: {info['message']}"
    if not data_file.exists():
        if kernel_timed_out:
            return "timeout", f"{name}: not graded, the notebook went over its time limit of {timeout:g} s"
        return "error", f"{name}: not graded, the grading process stopped before this exercise"
    try:
        data = torch.load(data_file, weights_only=True)
        if "cell_error" in data:
            at = f"\n  at: {data['line']}" if data.get("line") else ""
            return "error", f"{name}: running your exercise cell raised {data['cell_error']}{at}"
        outcomes = [Outcome(_restore(o["value"]), o["raised"], o["line"], o["not_implemented"])
                    for o in data["outcomes"]]
    except Exception as exc:  # whatever the child left there, it is not a result
        return "error", f"{name}: the grader could not read what your code returned ({type(exc).__name__})"
    if len(outcomes) != len(cases):
        return "error", f"{name}: the grader got {len(outcomes)} results for {len(cases)} cases"
    wants = [exercise.reference() if exercise.value else call(exercise.reference, c) for _, c in cases]
    verdict = judge(exercise, cases, outcomes, wants)
    return verdict.status, verdict.message


def grade_notebook(student: str, submitted: Path, official: Path, timeout: float = 120.0,
                   exercise_timeout: float | None = None, exercises: list[Exercise] | None = None) -> list[Result]:
    """Grade one student's copy of one notebook; one Result per registered exercise of that notebook."""
    notebook = Path(official).stem
    exercises = exercises if exercises is not None else exercises_of(notebook)
    if not Path(submitted).exists():
        return [_result(student, notebook, ex, "missing", f"{ex.name}: the notebook {Path(submitted).name} "
                        "was not handed in") for ex in exercises]
    try:
        cells = read_cells(submitted)
    except CorruptNotebook as exc:
        return [_result(student, notebook, ex, "error", f"{ex.name}: {exc}") for ex in exercises]
    official_cells = read_cells(official)
    done: dict[str, Result] = {}
    jobs: dict[str, dict] = {}
    for ex in exercises:
        cell = find_exercise_cell(cells, ex.grade_id, ex.name)
        if cell is None:
            done[ex.grade_id] = _result(student, notebook, ex, "error", f"{ex.name}: no exercise cell with "
                                        f"grade_id {ex.grade_id!r} or defining {ex.name}() in the notebook")
            continue
        pre = _precheck(ex, cell.source)
        if isinstance(pre, str):
            done[ex.grade_id] = _result(student, notebook, ex, "error", pre)
        elif pre is not None:
            done[ex.grade_id] = _result(student, notebook, ex, pre.status, pre.message)
        else:
            limit = exercise_timeout if exercise_timeout is not None else ex.time_limit
            jobs[ex.grade_id] = {"source": runnable(cell.source), "name": ex.name, "time_limit": limit}
    if jobs:
        done.update(_run(student, notebook, official_cells, exercises, jobs, timeout))
    return [done[ex.grade_id] for ex in exercises]


def _run(student, notebook, official_cells, exercises, jobs, timeout) -> dict[str, Result]:
    by_id = {ex.grade_id: ex for ex in exercises if ex.grade_id in jobs}
    cases = {gid: ex.cases() for gid, ex in by_id.items()}
    root = Path(tempfile.mkdtemp(prefix="clipedu-grade-"))
    try:
        code = [{"source": runnable(c.source), "exercise": c.grade_id if c.nbgrader.get("solution") else None}
                for c in official_cells if c.cell_type == "code"]
        missing = set(jobs) - {c["exercise"] for c in code}
        if missing:
            raise ValueError(f"the official notebook {notebook} has no exercise cell with grade_id "
                             f"{sorted(missing)}; regenerate notebooks/ with `python -m clipedu.course`")
        (root / "job.json").write_text(json.dumps({"cells": code, "students": jobs}))
        torch.save({gid: [c for _, c in cs] for gid, cs in cases.items()}, root / "cases.pt")
        process = _context().Process(target=run_job, args=(str(root),), daemon=True)
        process.start()
        process.join(timeout + sum(j["time_limit"] for j in jobs.values()))
        timed_out = process.is_alive()
        if timed_out:
            process.kill()
            process.join()
        return {gid: _result(student, notebook, ex,
                             *_collect(ex, cases[gid], root / "results", timed_out, timeout))
                for gid, ex in by_id.items()}
    finally:
        shutil.rmtree(root, ignore_errors=True)
