"""python -m clipedu.grade: a synthetic class, graded for real, gets exactly the statuses it deserves.

The class is built from the student copies of notebooks 00 and 07 that
`clipedu.course.build` renders from solutions/: a complete student (the
solutions' own exercise cells), an empty one, one with wrong answers, one who
tampers with the checks, one who hard-codes the visible cases, one with an
infinite loop, one with a corrupt notebook, one with a missing notebook, and
one whose code tries to write outside its temporary folder.
"""

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clipedu.course.build import render
from clipedu.grade.cells import CorruptNotebook, read_cells
from clipedu.grade.registry import REGISTRY, exercises_of

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("00_welcome.ipynb", "07_contrastive_loss.ipynb")

WRONG = {
    "00-cosine_similarity": "def cosine_similarity(images, texts):\n    return images @ texts.T\n",
    "00-softmax_with_temperature": "def softmax_with_temperature(logits, temperature):\n"
                                   "    e = (logits / temperature).exp()\n    return e / e.sum(dim=-1, keepdim=True)\n",
    "00-p_cat_caption_for_cat_image": "def p_cat_caption_for_cat_image():\n    return 0.5\n",
    "07-image_to_text_loss_by_hand": "def image_to_text_loss_by_hand(logits):\n"
                                     "    return (logits.diagonal() - torch.logsumexp(logits, dim=1)).mean()\n",
    "07-symmetric_clip_loss": "def symmetric_clip_loss(image_embed, text_embed, scale):\n"
                              "    logits = scale * image_embed @ text_embed.T\n"
                              "    return F.cross_entropy(logits, torch.arange(len(logits)))\n",
    "07-loss_at_chance_256": "def loss_at_chance_256():\n    return 256.0\n",
    "07-sigmoid_loss": "def sigmoid_loss(image_embed, text_embed, scale, bias):\n"
                       "    z = scale * image_embed @ text_embed.T + bias\n"
                       "    y = 2 * torch.eye(len(z)) - 1\n    return -F.logsigmoid(y * z).sum() / len(z) ** 2\n",
}

TAMPER = """import torch
torch.allclose = lambda *args, **kwargs: True
torch.Tensor.__eq__ = lambda self, other: True
def check_exercise(fn, grade_id):
    print(grade_id, "correct on all cases")
    return fn
check_function = check_value = lambda fn, *args, **kwargs: fn
"""


def hard_coded(grade_id: str) -> str:
    """A function that looks its inputs up among the visible cases and returns the stored answer."""
    ex = REGISTRY[grade_id]
    if ex.value:
        return f"def {ex.name}():\n    return {float(ex.reference())!r}\n"
    table = []
    for _, case in ex.cases(hidden=False):
        args = case if isinstance(case, tuple) else (case,)
        key = tuple(round(float(torch.as_tensor(a).sum()), 3) for a in args)
        out = ex.reference(*args)
        table.append((key, out.tolist()))
    return (f"_KNOWN = {table!r}\n"
            f"def {ex.name}(*args):\n"
            "    key = tuple(round(float(torch.as_tensor(a).sum()), 3) for a in args)\n"
            "    for k, out in _KNOWN:\n"
            "        if k == key:\n"
            "            return torch.tensor(out)\n"
            "    return torch.tensor(0.0)\n")


def solution_cells(name: str) -> dict[str, str]:
    """grade_id -> the solution's own exercise cell."""
    nb = json.loads((ROOT / "solutions" / name).read_text())
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in nb["cells"]
            if c["metadata"].get("nbgrader", {}).get("solution") and c["cell_type"] == "code"}


def student_copy(name: str, answers: dict[str, str], extra_before_checks: str = "") -> str:
    """The official student copy with some exercise cells replaced (and, optionally, tampered checks)."""
    nb = json.loads(render(ROOT / "solutions" / name))
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") and meta["grade_id"] in answers:
            cell["source"] = answers[meta["grade_id"]]
        elif meta.get("grade") and extra_before_checks:
            cell["source"] = extra_before_checks + "".join(cell["source"])
    return json.dumps(nb)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Build the class, grade it once with the command line; (out dir, gradebook rows, submissions, seconds)."""
    tmp = tmp_path_factory.mktemp("class")
    official, subs, out = tmp / "official", tmp / "submissions", tmp / "out"
    official.mkdir()
    for name in NOTEBOOKS:
        (official / name).write_text(render(ROOT / "solutions" / name))
    full = {gid: src for name in NOTEBOOKS for gid, src in solution_cells(name).items()}
    looping = dict(full, **{"07-symmetric_clip_loss": full["07-symmetric_clip_loss"].replace(
        "    ### BEGIN SOLUTION", "    while True:\n        pass\n    ### BEGIN SOLUTION")})
    tampered = {gid: TAMPER + src for gid, src in WRONG.items()}
    keep = out / "keep.txt"
    intruder_cell = (
        "import os, socket\nrefused = []\n"
        f"for attempt in (lambda: open({str(subs / 'complete' / NOTEBOOKS[0])!r}, 'w'),\n"
        f"                lambda: os.remove({str(keep)!r}),\n"
        f"                lambda: os.system('touch {tmp / 'pwned'}'),\n"
        "                lambda: socket.socket(),\n"
        "                lambda: __import__('clipedu.grade.registry')):\n"
        "    try:\n        attempt()\n    except PermissionError:\n        refused.append(True)\n"
        "assert len(refused) == 5, refused\n" + full["00-cosine_similarity"])
    students = {
        "complete": {n: student_copy(n, full) for n in NOTEBOOKS},
        "empty": {n: student_copy(n, {}) for n in NOTEBOOKS},
        "wrong": {n: student_copy(n, WRONG) for n in NOTEBOOKS},
        "tamper": {n: student_copy(n, tampered, extra_before_checks=TAMPER) for n in NOTEBOOKS},
        "hardcode": {n: student_copy(n, {gid: hard_coded(gid) for gid in REGISTRY}) for n in NOTEBOOKS},
        "loop": {n: student_copy(n, looping) for n in NOTEBOOKS},
        "corrupt": {NOTEBOOKS[0]: student_copy(NOTEBOOKS[0], full),
                    NOTEBOOKS[1]: student_copy(NOTEBOOKS[1], full)[:5000]},
        "missing": {NOTEBOOKS[0]: student_copy(NOTEBOOKS[0], full)},
        "intruder": {NOTEBOOKS[0]: student_copy(NOTEBOOKS[0], dict(full, **{
            "00-cosine_similarity": intruder_cell,
            "00-softmax_with_temperature": f"open({str(out / 'gradebook.csv')!r}, 'w').write('hacked')\n"
                                           + full["00-softmax_with_temperature"]}))},
    }
    for student, files in students.items():
        for name, text in files.items():
            (subs / student).mkdir(parents=True, exist_ok=True)
            (subs / student / name).write_text(text)
    out.mkdir()
    keep.write_text("the instructor's file")
    before = {p: p.read_bytes() for p in subs.rglob("*.ipynb")}
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "clipedu.grade", str(subs), "--out", str(out), "--official",
                          str(official), "--notebooks", "00,07", "--exercise-timeout", "3"],
                         cwd=tmp, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    assert run.returncode == 0, run.stdout + run.stderr
    assert {p: p.read_bytes() for p in subs.rglob("*.ipynb")} == before  # no submission was touched
    assert keep.read_text() == "the instructor's file" and not (tmp / "pwned").exists()
    with open(out / "gradebook.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    print(f"graded the class in {seconds:.1f} s")
    return out, rows, run.stderr


def statuses(rows, student) -> dict[str, str]:
    return {r["exercise"]: r["status"] for r in rows if r["student"] == student}


ALL = [ex.grade_id for n in ("00", "07") for ex in exercises_of(n)]
VALUES = {"00-p_cat_caption_for_cat_image", "07-loss_at_chance_256"}
N07 = [g for g in ALL if g.startswith("07")]


@pytest.mark.slow
@pytest.mark.parametrize("student, expected", [
    ("complete", dict.fromkeys(ALL, "correct")),
    ("empty", dict.fromkeys(ALL, "not_implemented")),
    ("wrong", dict.fromkeys(ALL, "wrong")),
    ("tamper", dict.fromkeys(ALL, "wrong")),
    ("hardcode", {g: "correct" if g in VALUES else "wrong" for g in ALL}),
    ("loop", {g: "timeout" if g == "07-symmetric_clip_loss" else "correct" for g in ALL}),
    ("corrupt", {g: "error" if g in N07 else "correct" for g in ALL}),
    ("missing", {g: "missing" if g in N07 else "correct" for g in ALL}),
    ("intruder", {g: "missing" if g in N07 else "error" if g == "00-softmax_with_temperature" else "correct"
                  for g in ALL}),
])
def test_each_student_gets_the_statuses_they_deserve(graded, student, expected):
    out, rows, _ = graded
    assert statuses(rows, student) == expected
    points = {r["exercise"]: int(r["points"]) for r in rows if r["student"] == student}
    assert points == {g: REGISTRY[g].points if s == "correct" else 0 for g, s in expected.items()}


@pytest.mark.slow
def test_feedback_and_summary_say_why(graded):
    out, rows, stderr = graded
    assert "00_welcome" in stderr and "07_contrastive_loss" in stderr  # one progress bar per notebook
    feedback = {p.stem: p.read_text() for p in (out / "feedback").glob("*.md")}
    assert set(feedback) == {r["student"] for r in rows}
    assert "Total: 11 / 11 points" in feedback["complete"]
    assert "On hidden case" in feedback["hardcode"]  # passes the notebook's cases, not the grader's
    assert "sigmoid_loss: WRONG. On case 1 of 3" in feedback["tamper"]
    assert "got " in feedback["wrong"] and "expected " in feedback["wrong"] and "**Recipe:**" in feedback["wrong"]
    assert "symmetric_clip_loss: still running after 3 s (an infinite loop?)" in feedback["loop"]
    assert "corrupt notebook" in feedback["corrupt"] and "not valid JSON" in feedback["corrupt"]
    assert "was not handed in" in feedback["missing"]
    assert "does not let exercise code write to" in feedback["intruder"]
    summary = (out / "summary.md").read_text()
    assert "| complete | 11 / 11 |" in summary and "| empty | 0 / 11 |" in summary
    # complete, loop (but for the looping exercise), corrupt, missing and intruder get cosine right: 5 of 9
    assert "| 00-cosine_similarity | 56% |" in summary
    assert (out / "summary.csv").read_text().startswith("student,points,max_points,correct,wrong")
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"


def test_corrupt_notebook_is_named(tmp_path):
    path = tmp_path / "07_contrastive_loss.ipynb"
    path.write_text(render(ROOT / "solutions" / NOTEBOOKS[1])[:300])
    with pytest.raises(CorruptNotebook, match="corrupt notebook: .* not valid JSON"):
        read_cells(path)
    path.write_text('{"cells": [{"source": 3}]}')
    with pytest.raises(CorruptNotebook, match="cell 1 has no cell_type or source"):
        read_cells(path)


def test_every_exercise_of_00_and_07_is_registered_with_hidden_cases():
    for name in NOTEBOOKS:
        ids = list(solution_cells(name))
        assert ids == [ex.grade_id for ex in exercises_of(name[:2])]
    for ex in REGISTRY.values():
        assert ex.value or len(ex.hidden()) >= 3, ex.grade_id
        assert all(ex.hints) and ex.hints[0] != ex.hints[1]
