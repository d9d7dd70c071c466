"""What the grader writes: the gradebook, one feedback file per student, and the class summary.

    DIR/gradebook.csv           student,notebook,exercise,status,points
    DIR/feedback/<student>.md   each exercise's message and hints, then the written answers
    DIR/summary.csv, .md, .png  points per student; per exercise, the share of students who got it right
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from clipedu.grade.runner import STATUSES, Result

__all__ = ["write_feedback", "write_gradebook", "write_summary"]


def write_gradebook(results: list[Result], out: Path) -> Path:
    path = Path(out) / "gradebook.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "notebook", "exercise", "status", "points"])
        for r in results:
            writer.writerow([r.student, r.notebook, r.exercise, r.status, r.points])
    return path


def _fence(text: str) -> str:
    return "```text\n" + text.replace("```", "'''") + "\n```"


def write_feedback(results: list[Result], answers: dict[str, list[tuple[str, str, str]]], out: Path) -> list[Path]:
    """One markdown file per student; `answers[student]` holds (notebook, grade_id, text) written answers."""
    folder = Path(out) / "feedback"
    folder.mkdir(parents=True, exist_ok=True)
    by_student: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_student[r.student].append(r)
    paths = []
    for student, rows in by_student.items():
        earned, total = sum(r.points for r in rows), sum(r.max_points for r in rows)
        lines = [f"# Feedback for {student}", "", f"Total: {earned} / {total} points", ""]
        notebook = None
        for r in rows:
            if r.notebook != notebook:
                notebook = r.notebook
                lines += [f"## {notebook}", ""]
            lines += [f"### {r.exercise}: {r.status} ({r.points}/{r.max_points})", "", _fence(r.message), ""]
            for label, text in zip(("Hint", "Recipe"), r.hints):
                lines += [f"- **{label}:** {text}"]
            lines += [""] if r.hints else []
        written = answers.get(student, [])
        if written:
            lines += ["## Written answers (for the instructor; no automatic points)", ""]
            for nb, gid, text in written:
                quoted = "\n".join("> " + ln for ln in (text or "(empty)").splitlines())
                lines += [f"### {nb} · {gid}", "", quoted, ""]
        path = folder / f"{student}.md"
        path.write_text("\n".join(lines), encoding="utf-8")
        paths.append(path)
    return paths


def _table(rows: list[list[str]]) -> list[str]:
    head, *body = rows
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in body]


def write_summary(results: list[Result], out: Path) -> list[Path]:
    """summary.csv (points per student), summary.md (that, status counts, share right), summary.png."""
    out = Path(out)
    students = sorted({r.student for r in results})
    exercises = list(dict.fromkeys(r.exercise for r in results))
    points = {s: sum(r.points for r in results if r.student == s) for s in students}
    total = {s: sum(r.max_points for r in results if r.student == s) for s in students}
    share = {e: sum(r.status == "correct" for r in results if r.exercise == e) / max(1, len(students))
             for e in exercises}
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "points", "max_points", *STATUSES])
        for s in students:
            counts = [sum(r.status == k for r in results if r.student == s) for k in STATUSES]
            writer.writerow([s, points[s], total[s], *counts])
    md = ["# Class summary", "", "## Points per student", ""]
    md += _table([["student", "points", *STATUSES]] + [
        [s, f"{points[s]} / {total[s]}", *[str(sum(r.status == k for r in results if r.student == s))
                                            for k in STATUSES]] for s in students])
    md += ["", "## Share of students who got each exercise right", ""]
    md += _table([["exercise", "right"]] + [[e, f"{share[e]:.0%}"] for e in exercises])
    (out / "summary.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    _figure(students, points, total, exercises, share, out / "summary.png")
    return [out / "summary.csv", out / "summary.md", out / "summary.png"]


def _figure(students, points, total, exercises, share, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, max(3, 0.35 * max(len(students), len(exercises)) + 1)),
                                      layout="constrained")
    left.barh(students, [points[s] for s in students], color="tab:blue")
    left.set_xlim(0, max(total.values(), default=1))
    left.set_xlabel("points")
    left.set_title("points per student")
    left.invert_yaxis()
    right.barh(exercises, [100 * share[e] for e in exercises], color="tab:green")
    right.set_xlim(0, 100)
    right.set_xlabel("% of students right")
    right.set_title("per exercise")
    right.invert_yaxis()
    fig.savefig(path, dpi=100)
    plt.close(fig)
