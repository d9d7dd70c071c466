"""Generate the student notebooks (notebooks/) from the solved ones (solutions/).

    python -m clipedu.course            # rewrite notebooks/ from solutions/
    python -m clipedu.course --check    # only report what is out of date (exit 1 if anything is)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipedu.course.build import SolutionError, find_problems, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clipedu.course", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date notebooks; exit 1 if any")
    parser.add_argument("--solutions", type=Path, default=Path("solutions"), help="default: ./solutions")
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"), help="default: ./notebooks")
    args = parser.parse_args(argv)
    if not args.solutions.is_dir():
        print(f"error: no folder {args.solutions}; run from the repository root or pass --solutions",
              file=sys.stderr)
        return 2
    try:
        if args.check:
            problems = find_problems(args.solutions, args.notebooks)
            for line in problems:
                print(line)
            if not problems:
                print(f"{args.notebooks}/ is up to date with {args.solutions}/")
            return 1 if problems else 0
        for path in generate(args.solutions, args.notebooks):
            print(f"wrote {path}")
        for line in find_problems(args.solutions, args.notebooks):
            print(f"warning: {line}")
        return 0
    except SolutionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
