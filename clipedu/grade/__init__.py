"""Grading a class's notebooks, and the exercises' references and cases (kept out of the notebooks).

    python -m clipedu.grade SUBMISSIONS --out DIR [--notebooks 00,07] [--timeout SECONDS]

It imports core, data and train, never clipedu.course (which reads the
registry for its check cells); nothing else imports it.

    exercise.py   Exercise: reference, visible and hidden cases, tolerances, points, hints
    bank/nbNN.py  the exercises of notebook NN
    registry.py   every exercise by grade_id ("07-symmetric_clip_loss")
    compare.py    compare(got, want): None, or the first difference in words
    judge.py      call the student's function on a case; the verdict and its message
    cells.py      read a notebook as data: cells by grade_id, written answers
    sandbox.py    the audit hook that contains a student's code
    kernel.py     the grading process: official cells, one contained fork per exercise
    runner.py     grade one student's notebook: the job, the process, the judging
    report.py     gradebook.csv, feedback/<student>.md, summary.csv/.md/.png
    __main__.py   the command line
"""
