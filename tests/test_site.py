"""The course website (site/build.py, `make site`) and its check (site/check.py, `make site-check`).

The full site is built and checked by `make site-check` (part of `make test`); these tests check the checker on
small fake sites, the index generated from README.md, the notebook copies, and one real Sphinx build of a tiny
course with a planted execution error.
"""
import base64
import copy
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(f"clipedu_site_{name}", ROOT / "site" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build = _load("build")
check = _load("check")

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def _page(body: str) -> str:
    return f"<!DOCTYPE html><html><head><title>t</title></head><body>{body}</body></html>"


def _fake_site(tmp_path: Path, pages: dict[str, str], files: dict[str, bytes] = {}) -> Path:
    for name, body in pages.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(_page(body))
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return tmp_path


# --- the checker on fake sites -------------------------------------------------------------------------------

def test_a_clean_site_passes(tmp_path):
    root = _fake_site(tmp_path, {
        "index.html": '<a href="solutions/a.html#part-2">a</a> <a href="#top">top</a><p id="top"></p>'
                      '<a href="https://example.org/x.html">out</a> <a href="#">menu</a>'
                      '<link rel="stylesheet" href="_static/s.css?v=1"><img src="_images/f.png">',
        "solutions/a.html": '<h2 id="part-2">2</h2><a href="../index.html">home</a>'
                            '<div class="cell_output docutils container"><div class="output stream">'
                            '<pre>loss 0.25</pre></div></div>',
    }, {"_static/s.css": b"p {}", "_images/f.png": PNG})
    report = check.check_site(root)
    assert report.problems == []
    assert len(report.pages) == 2
    assert "2 pages" in report.summary()


def test_broken_links_images_anchors_and_error_outputs_fail(tmp_path):
    root = _fake_site(tmp_path, {
        "index.html": '<a href="solutions/missing.html">gone</a> <a href="solutions/a.html#nowhere">a</a>'
                      '<a href="#not-here">x</a> <img src="_images/gone.png"> <img src="_images/empty.png">'
                      '<a href="../../etc/passwd">escape</a>',
        "solutions/a.html": '<div class="cell_output docutils container">'
                            '<div class="output traceback highlight-ipythontb"><pre>ZeroDivisionError</pre></div>'
                            '</div>',
    }, {"_images/empty.png": b""})
    report = check.check_site(root)
    text = "\n".join(report.problems)
    assert not report.ok
    assert "solutions/missing.html is not in the build" in text
    assert "solutions/a.html has no id 'nowhere'" in text
    assert "no id 'not-here' on this page" in text
    assert "broken image <img src=\"_images/gone.png\">" in text
    assert "'_images/empty.png' is an empty file" in text
    assert "points outside the site" in text
    assert "solutions/a.html: line 1: an error output (class 'traceback')" in text
    assert len(report.problems) == 7, text


def test_a_traceback_printed_into_a_stream_is_found_across_highlighting_spans(tmp_path):
    stream = ('<div class="cell_output docutils container"><div class="output stream"><pre>'
              '<span class="ansi-red">Traceback</span> <span>(most recent</span>\n<span>call last)</span>:\n'
              '  File "x.py", line 1</pre></div></div>')
    root = _fake_site(tmp_path, {"index.html": stream})
    assert check.check_site(root).problems == ["index.html: line 1: an output shows a Python traceback"]
    # the same words in the prose of a page are not an execution error
    (root / "index.html").write_text(_page("<p>Traceback (most recent call last) is how Python starts one.</p>"))
    assert check.check_site(root).ok


def test_a_live_widget_view_left_in_a_page_fails(tmp_path):
    root = _fake_site(tmp_path, {"index.html": '<script type="application/vnd.jupyter.widget-view+json">'
                                               '{"model_id": "abc"}</script>'})
    assert "live-widget view" in check.check_site(root).problems[0]


def test_the_checker_needs_a_built_site(tmp_path):
    with pytest.raises(FileNotFoundError, match="make site"):
        check.check_site(tmp_path)
    assert check.main([str(tmp_path)]) == 1


# --- the index from README.md ---------------------------------------------------------------------------------

def test_the_index_is_the_readme_course_map_with_every_notebook_linked_in_order():
    readme = (ROOT / "README.md").read_text()
    notebooks = sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))
    docs = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    index, order = build.index_page(readme, notebooks, docs)
    assert order == notebooks  # the README's tables list the course in its order, 00 first
    for name in notebooks:
        assert f"](solutions/{name})" in index, f"{name} is not linked from the index"
        assert f"\nsolutions/{Path(name).stem}\n" in index, f"{name} is not in the table of contents"
    for name in docs:
        assert f"\ndocs/{Path(name).stem}\n" in index
    assert index.startswith(readme.splitlines()[0])  # the README's title heads the site
    assert "| 08 | [Training CLIP](solutions/08_training.ipynb) |" in index
    assert "## Quick start" not in index and "## Layout" not in index


README = """# A course

Intro.

## Quick start

make lab

## The course

| # | notebook | what | runtime |
|---|---|---|---|
| 00 | Welcome | hello | ~1 min |
| 01 | Next | more | ~1 min |

## Layout
"""


def test_the_course_map_must_match_the_notebooks():
    text, order = build.course_map(README, ["00_welcome.ipynb", "01_next.ipynb"])
    assert order == ["00_welcome.ipynb", "01_next.ipynb"]
    assert "| 00 | [Welcome](solutions/00_welcome.ipynb) | hello | ~1 min |" in text
    assert text.startswith("# A course\n\nIntro.\n\n## The course")
    with pytest.raises(build.SiteError, match="no row for 02_more.ipynb"):
        build.course_map(README, ["00_welcome.ipynb", "01_next.ipynb", "02_more.ipynb"])
    with pytest.raises(build.SiteError, match="row for notebook 01, but solutions/ has no 01_"):
        build.course_map(README, ["00_welcome.ipynb"])
    with pytest.raises(build.SiteError, match="no '## The course' section"):
        build.course_map(README.replace("## The course", "## Lessons"), ["00_welcome.ipynb"])
    with pytest.raises(build.SiteError, match="named NN_topic.ipynb"):
        build.course_map(README, ["welcome.ipynb"])


# --- the notebook copies -------------------------------------------------------------------------------------

def test_site_notebooks_link_the_student_copy_and_drop_live_widget_views():
    nb = json.loads((ROOT / "solutions" / "16_interactive.ipynb").read_text())
    original = copy.deepcopy(nb)
    site_nb = build.site_notebook(nb, "16_interactive.ipynb")
    assert nb == original, "the solution notebook itself must not change"
    assert site_nb["cells"][0] == nb["cells"][0]
    assert 'href="../notebooks/16_interactive.ipynb"' in "".join(site_nb["cells"][1]["source"])
    assert len(site_nb["cells"]) == len(nb["cells"]) + 1
    assert "widgets" not in site_nb["metadata"]

    def outputs(notebook, mime):
        return [o for c in notebook["cells"] for o in c.get("outputs", []) if mime in o.get("data", {})]

    views = outputs(nb, build.WIDGET_VIEW)
    assert views, "notebook 16 should show live widgets"
    assert outputs(site_nb, build.WIDGET_VIEW) == []
    assert len(outputs(site_nb, "text/html")) == len(views)
    assert outputs(site_nb, "image/png") == outputs(nb, "image/png")  # the plain-figure twins stay


# --- one real build ------------------------------------------------------------------------------------------

def _notebook(cells):
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def _code(source, outputs, n):
    return {"cell_type": "code", "id": f"c{n}", "execution_count": n, "metadata": {}, "source": source,
            "outputs": outputs}


def _tiny_course(root: Path, error: bool) -> None:
    (root / "solutions").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "docs").mkdir()
    (root / "README.md").write_text(README)
    (root / "docs" / "notes.md").write_text("# Notes\n\nSee the course.\n")
    figure = {"output_type": "display_data", "metadata": {},
              "data": {"image/png": base64.b64encode(PNG).decode(), "text/plain": ["<Figure>"]}}
    first = _notebook([
        {"cell_type": "markdown", "id": "m0", "metadata": {}, "source": "# 00 · Welcome\n\nA number $T$:\n\n$$x^2$$"},
        _code("plot()", [figure], 1),
    ])
    failing = {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
               "traceback": ["\u001b[0;31mZeroDivisionError\u001b[0m: division by zero"]}
    fine = {"output_type": "stream", "name": "stdout", "text": "0.5\n"}
    second = _notebook([
        {"cell_type": "markdown", "id": "m0", "metadata": {}, "source": "# 01 · Next\n\nMore."},
        _code("1 / 0" if error else "1 / 2", [failing if error else fine], 1),
    ])
    for name, nb in [("00_welcome.ipynb", first), ("01_next.ipynb", second)]:
        (root / "solutions" / name).write_text(json.dumps(nb))
        (root / "notebooks" / name).write_text(json.dumps(nb))


@pytest.mark.slow
def test_a_real_build_renders_figures_and_downloads_and_the_check_catches_a_planted_error(tmp_path):
    _tiny_course(tmp_path / "course", error=False)
    out = build.build(tmp_path / "course", tmp_path / "src", tmp_path / "site" / "html")
    assert (out / "solutions" / "00_welcome.html").is_file() and (out / "docs" / "notes.html").is_file()
    assert (out / "notebooks" / "01_next.ipynb").read_bytes() == (tmp_path / "course/notebooks/01_next.ipynb").read_bytes()
    page = (out / "solutions" / "00_welcome.html").read_text()
    assert "<img" in page and "_images/" in page and "math notranslate" in page
    report = check.check_site(out)
    assert report.problems == [] and len(report.pages) >= 5
    assert check.check_course(report, tmp_path / "course") == []

    # plant an execution error: the site still builds, and the check fails on that page
    shutil.rmtree(tmp_path / "course")
    _tiny_course(tmp_path / "course", error=True)
    build.build(tmp_path / "course", tmp_path / "src", tmp_path / "site" / "html")
    problems = check.check_site(out).problems
    assert problems and all(p.startswith("solutions/01_next.html") for p in problems), problems
    assert any("error output" in p for p in problems)

    # a missing student notebook stops the build with what to do
    (tmp_path / "course" / "notebooks" / "01_next.ipynb").unlink()
    with pytest.raises(build.SiteError, match="python -m clipedu.course"):
        build.build(tmp_path / "course", tmp_path / "src", tmp_path / "site" / "html")
