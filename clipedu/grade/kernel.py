"""The grading process for one student and one notebook (the child; `runner.py` is the parent).

It runs in a fresh process whose working directory and HOME are its own
temporary folder (the job folder), and goes down the official notebook's code
cells in order. At each graded exercise it forks: the fork is contained
(`sandbox.contain`), runs the *student's* exercise cell in a copy of the
notebook's state, calls the student's function on every case, and saves what
came back to `results/<grade_id>.pt`; a watchdog kills it after the
exercise's time limit. Then the process runs the *official* cells (the
exercise's stub, whose check falls back to the reference) and goes on. So
the earlier cells run once per notebook, a student's infinite loop costs
one exercise, and nothing the student's code does reaches the next exercise.

Nothing is compared here: the parent computes the reference outputs itself.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

__all__ = ["run_job"]


def _sanitize(x):
    """What torch.load(weights_only=True) can read back: plain containers, numbers, str, tensors."""
    import numpy as np
    import torch
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().clone().as_subclass(torch.Tensor)
    if isinstance(x, (np.ndarray, np.generic)):
        return {"__numpy__": torch.from_numpy(np.array(x, copy=True)) if np.asarray(x).dtype.kind in "biufc"
                else repr(x), "scalar": isinstance(x, np.generic)}
    if isinstance(x, (list, tuple)):
        items = [_sanitize(v) for v in x]
        return items if isinstance(x, list) else tuple(items)
    if isinstance(x, dict):
        return {"__dict__": [(_sanitize(k), _sanitize(v)) for k, v in x.items()]}
    return {"__object__": type(x).__name__, "repr": repr(x)[:200]}


def _exercise_child(job: dict, grade_id: str, namespace: dict, cases: list, root: Path) -> None:
    """In the fork: contain, run the student's cell and function, save the outcomes. Never returns."""
    import torch

    from clipedu.grade.judge import call_case
    from clipedu.grade.sandbox import contain
    save, out = torch.save, root / "results" / f"{grade_id}.pt"
    student = job["students"][grade_id]
    torch.set_num_threads(1)
    sys.dont_write_bytecode = True
    contain(str(root))
    try:
        exec(compile(student["source"], f"<exercise cell {grade_id}>", "exec"), namespace)
        fn = namespace.get(student["name"])
        if not callable(fn):
            raise NameError(f"the exercise cell does not define the function {student['name']}")
    except BaseException as exc:  # noqa: BLE001 - the student's cell, whatever it raised
        lines = [f.line for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<exercise")]
        save({"cell_error": f"{type(exc).__name__}: {exc}", "line": lines[-1] if lines else ""}, out)
        os._exit(0)
    outcomes = []
    for case in cases:
        got = call_case(fn, case)
        outcomes.append({"value": _sanitize(got.value), "raised": got.raised, "line": got.line,
                         "not_implemented": got.not_implemented})
    save({"outcomes": outcomes}, out)
    os._exit(0)


def _watch(pid: int, limit: float) -> str | None:
    """Wait for the fork; None when it exited normally, else what went wrong."""
    deadline = time.monotonic() + limit
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status):
                return f"error: the process running your code died ({signal.Signals(os.WTERMSIG(status)).name})"
            code = os.WEXITSTATUS(status)
            return None if code == 0 else f"error: the process running your code exited with code {code}"
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return f"timeout: still running after {limit:g} s (an infinite loop?)"
        time.sleep(0.005)


def _run_official(source: str, namespace: dict, log: io.TextIOBase) -> None:
    try:
        exec(compile(source, "<official cell>", "exec"), namespace)
    except Exception:  # an official cell failing is logged; later exercises are still graded
        log.write(traceback.format_exc())


def run_job(job_dir: str) -> None:
    """Entry point of the grading process (started by runner.grade_notebook)."""
    root = Path(job_dir).resolve()
    os.chdir(root)
    os.environ.update(HOME=str(root), TMPDIR=str(root), MPLBACKEND="Agg")
    log = open(root / "kernel.log", "w", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    import torch
    torch.set_num_threads(1)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.show = lambda *args, **kwargs: plt.close("all")
    job = json.loads((root / "job.json").read_text())
    cases = torch.load(root / "cases.pt", weights_only=True)
    (root / "results").mkdir(exist_ok=True)
    namespace = {"__name__": "__main__"}
    for cell in job["cells"]:
        grade_id = cell.get("exercise")
        if grade_id in job["students"]:
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                try:
                    _exercise_child(job, grade_id, namespace, cases[grade_id], root)
                finally:
                    os._exit(70)
            problem = _watch(pid, job["students"][grade_id]["time_limit"])
            if problem:
                status, message = problem.split(": ", 1)
                (root / "results" / f"{grade_id}.json").write_text(json.dumps({"status": status, "message": message}))
        _run_official(cell["source"], namespace, log)
    (root / "results" / "done").write_text("ok")
