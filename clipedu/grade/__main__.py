"""Grade a class: python -m clipedu.grade SUBMISSIONS --out DIR [--notebooks 00,07] [--timeout SECONDS]

SUBMISSIONS holds one folder per student, each with that student's copies of
notebooks/*.ipynb. The official notebooks (default ./notebooks) supply the
cells that run before each exercise and the grade_ids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from clipedu.grade.cells import CorruptNotebook, read_cells, written_answers
from clipedu.grade.registry import exercises_of
from clipedu.grade.report import write_feedback, write_gradebook, write_summary
from clipedu.grade.runner import Result, grade_notebook


def submitted_copy(folder: Path, official: Path) -> Path:
    """The student's copy of an official notebook: same name, else any NN_*.ipynb of theirs."""
    exact = folder / official.name
    if exact.exists():
        return exact
    others = sorted(folder.glob(official.name[:3] + "*.ipynb"))
    return others[0] if others else exact


def grade_class(submissions: Path, out: Path, official: Path, numbers: list[str] | None = None,
                timeout: float = 120.0, exercise_timeout: float | None = None) -> list[Result]:
    """Grade every student folder of `submissions` and write the gradebook, feedback and summary into `out`."""
    students = sorted(p for p in Path(submissions).iterdir() if p.is_dir() and not p.name.startswith("."))
    notebooks = sorted(p for p in Path(official).glob("[0-9][0-9]_*.ipynb") if exercises_of(p.name[:2])
                       and (numbers is None or p.name[:2] in numbers))
    if numbers:
        unknown = sorted(set(numbers) - {p.name[:2] for p in notebooks})
        if unknown:
            raise SystemExit(f"error: no graded notebook {', '.join(unknown)} in {official} (graded: "
                             f"{', '.join(sorted({p.name[:2] for p in Path(official).glob('*.ipynb') if exercises_of(p.name[:2])}))})")
    results: list[Result] = []
    answers: dict[str, list[tuple[str, str, str]]] = {}
    for nb in notebooks:
        for student in tqdm(students, desc=nb.stem, unit="student", file=sys.stderr):
            copy = submitted_copy(student, nb)
            results += grade_notebook(student.name, copy, nb, timeout=timeout, exercise_timeout=exercise_timeout)
            try:
                answers.setdefault(student.name, []).extend(
                    (nb.stem, gid, text) for gid, text in written_answers(read_cells(copy)))
            except (CorruptNotebook, FileNotFoundError):
                pass  # already reported as error / missing
    out.mkdir(parents=True, exist_ok=True)
    write_gradebook(results, out)
    write_feedback(results, answers, out)
    write_summary(results, out)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipedu.grade", description=__doc__.split("\n")[0])
    parser.add_argument("submissions", type=Path, help="one folder per student with their .ipynb files")
    parser.add_argument("--out", type=Path, required=True, help="where gradebook.csv, feedback/ and summary go")
    parser.add_argument("--notebooks", default=None, help="comma-separated numbers, e.g. 00,07 (default: all graded)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per student and notebook (120)")
    parser.add_argument("--exercise-timeout", type=float, default=None,
                        help="seconds per exercise (default: each exercise's own limit, 10)")
    parser.add_argument("--official", type=Path, default=Path("notebooks"), help="official notebooks (./notebooks)")
    args = parser.parse_args(argv)
    for path, what in ((args.submissions, "submissions"), (args.official, "official notebooks")):
        if not path.is_dir():
            print(f"error: no folder {path} ({what}); run from the repository root or pass the path", file=sys.stderr)
            return 2
    numbers = [n.strip().zfill(2) for n in args.notebooks.split(",")] if args.notebooks else None
    results = grade_class(args.submissions, args.out, args.official, numbers, args.timeout, args.exercise_timeout)
    earned = sum(r.points for r in results)
    print(f"graded {len({r.student for r in results})} students, {len(results)} exercises, {earned} points; "
          f"see {args.out / 'gradebook.csv'}, {args.out / 'feedback'}/ and {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
