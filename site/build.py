"""Build the course website: `python site/build.py` (or `make site`).

The site shows the executed notebooks of `solutions/` with their stored outputs; nothing is re-executed
(myst-nb with `nb_execution_mode = "off"`). Sphinx reads only files under its source folder, so this script
first lays out a build-time source folder, `site/_src/` (ignored by git):

    _src/index.md                the README's course map, each row linking to its page (generated)
    _src/solutions/NN_*.ipynb    copies of solutions/, with a download link and without live-widget views
    _src/docs/*.md               copies of docs/ (the "Reference" part of the table of contents)
    _src/_extra/notebooks/*.ipynb  the student notebooks, copied as they are into the built site

and then runs Sphinx with `site/conf.py`. The built site, in `site/_build/html/`:

    index.html                   the course map
    solutions/NN_topic.html      one page per notebook, in the course order
    docs/NAME.html               the reference pages
    notebooks/NN_topic.ipynb     the student notebooks, offered as downloads from each page

Files in `_src/` are rewritten only when their content changes, so a second `make site` rebuilds only what
changed. Nothing here reaches the network: the theme and its assets come from installed packages.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

COURSE_HEADING = "## The course"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
DOWNLOAD_TEXT = "Download the student notebook"
WIDGET_NOTE = (
    '<p class="clipedu-widget-note"><em>An interactive control stands here in JupyterLab. It needs a running '
    "kernel, so this page cannot show it: the plain figure drawn next to it shows the same thing. "
    "Download the student notebook above to use it.</em></p>"
)


class SiteError(Exception):
    """The sources of the site are inconsistent; the message says what to fix."""


def _number(name: str) -> str:
    """'08_training.ipynb' -> '08'."""
    match = re.match(r"(\d\d)_", name)
    if not match:
        raise SiteError(f"{name}: course notebooks are named NN_topic.ipynb (two digits, then the topic)")
    return match.group(1)


def course_map(readme: str, notebooks: list[str]) -> tuple[str, list[str]]:
    """The index page's markdown, made from README.md, and the notebooks in the map's order.

    The index is the README's title and introduction (everything before its first `## ` heading) followed by
    its `## The course` section. In that section every table row whose first cell is a notebook number gets its
    second cell (the notebook's name) turned into a link to the notebook's page. Every notebook must appear in
    the map exactly once, and every row must name an existing notebook.
    """
    lines = readme.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == COURSE_HEADING)
    except StopIteration:
        raise SiteError(
            f"README.md has no '{COURSE_HEADING}' section: the site's index is generated from the course-map "
            "table in that section (rows '| NN | name | ... |'). Restore the heading."
        ) from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    first_section = next((i for i, line in enumerate(lines) if line.startswith("## ")), start)
    by_number: dict[str, str] = {}
    for name in notebooks:
        number = _number(name)
        if number in by_number:
            raise SiteError(f"two notebooks share the number {number}: {by_number[number]} and {name}")
        by_number[number] = name

    order: list[str] = []
    section = []
    for line in lines[start:end]:
        cells = line.strip().strip("|").split("|") if line.lstrip().startswith("|") else []
        if len(cells) >= 2 and re.fullmatch(r"\s*\d\d\s*", cells[0]):
            number = cells[0].strip()
            if number not in by_number:
                raise SiteError(
                    f"README.md's course map has a row for notebook {number}, but solutions/ has no "
                    f"{number}_*.ipynb: fix the row or add the notebook."
                )
            name = by_number[number]
            if name in order:
                raise SiteError(f"README.md's course map lists notebook {number} twice")
            order.append(name)
            title = cells[1].strip()
            cells[1] = f" [{title}](solutions/{name}) "
            line = "|" + "|".join(cells) + "|"
        section.append(line)
    missing = [name for name in notebooks if name not in order]
    if missing:
        raise SiteError(
            f"README.md's course map (the tables under '{COURSE_HEADING}') has no row for {', '.join(missing)}: "
            "add one ('| NN | name | what you build and see | runtime |'), the site's index is made from it."
        )
    intro = "\n".join(lines[:first_section]).strip() if first_section < start else ""
    text = (intro + "\n\n" + "\n".join(section)).strip() + "\n"
    return text, order


def index_page(readme: str, notebooks: list[str], docs: list[str]) -> tuple[str, list[str]]:
    """The whole index.md: the course map, a note on reading the site, and the (hidden) tables of contents."""
    body, order = course_map(readme, notebooks)
    about = (
        "## Reading this site\n\n"
        "Each page is a notebook of `solutions/`, solved and executed, shown with the outputs stored in it; "
        "nothing was re-run to build this site. To work through a notebook yourself, download its student "
        f"copy (the link **{DOWNLOAD_TEXT}** at the top of each page), install clipedu and open it in "
        "JupyterLab. The widgets of notebook 16 need a running kernel; here they show their plain figures.\n"
    )
    toc = ["```{toctree}", ":hidden:", ":caption: Notebooks", ""]
    toc += [f"solutions/{Path(name).stem}" for name in order]
    toc += ["```", "", "```{toctree}", ":hidden:", ":caption: Reference", ""]
    toc += [f"docs/{Path(name).stem}" for name in docs]
    toc += ["```", ""]
    return body + "\n" + about + "\n" + "\n".join(toc), order


def site_notebook(nb: dict, name: str) -> dict:
    """A copy of the solution notebook `nb` as the site shows it.

    - After the first cell (the title) comes a link to the student notebook, `../notebooks/<name>`.
    - Each live-widget view becomes a short note: its view cannot render without a kernel (and the widget
      JavaScript would come from a CDN); the notebooks draw a plain figure next to each widget.
    - The widget state is dropped from the metadata, so no page loads the widget JavaScript.
    """
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                output["output_type"] = "display_data"
                output.pop("execution_count", None)
                output["data"] = {"text/html": [WIDGET_NOTE], "text/plain": ["(interactive control)"]}
                output["metadata"] = {}
    nb.get("metadata", {}).pop("widgets", None)
    link = {
        "cell_type": "markdown",
        "metadata": {},
        "source": [
            f'<p class="clipedu-download"><a class="reference download" href="../notebooks/{name}" download>'
            f"{DOWNLOAD_TEXT}</a> (<code>{name}</code>: the exercises to fill in; open it in JupyterLab).</p>"
        ],
    }
    if nb.get("nbformat", 4) >= 4 and nb.get("nbformat_minor", 0) >= 5:
        link["id"] = "clipedu-download-link"
    nb["cells"].insert(1 if nb["cells"] else 0, link)
    return nb


def _write(path: Path, text: str | bytes) -> None:
    """Write only if the content differs (keeps Sphinx's incremental build working)."""
    data = text.encode() if isinstance(text, str) else text
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _prune(folder: Path, keep: set[Path]) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_file() and path not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def prepare(root: Path, src: Path) -> list[str]:
    """Lay out the Sphinx source folder `src` from the repository at `root`; the notebooks in course order."""
    solutions = sorted(p.name for p in (root / "solutions").glob("*.ipynb"))
    if not solutions:
        raise SiteError(f"no notebooks in {root / 'solutions'}: the site is built from the solved notebooks")
    docs = sorted(p.name for p in (root / "docs").glob("*.md"))
    index, order = index_page((root / "README.md").read_text(encoding="utf-8"), solutions, docs)
    keep = {src / "index.md"}
    _write(src / "index.md", index)
    for name in order:
        student = root / "notebooks" / name
        if not student.exists():
            raise SiteError(
                f"notebooks/{name} is missing: every page offers its student notebook as a download. "
                "Generate the student notebooks with `python -m clipedu.course`."
            )
        nb = json.loads((root / "solutions" / name).read_text(encoding="utf-8"))
        target = src / "solutions" / name
        _write(target, json.dumps(site_notebook(nb, name), indent=1, ensure_ascii=False) + "\n")
        extra = src / "_extra" / "notebooks" / name
        _write(extra, student.read_bytes())
        keep |= {target, extra}
    for name in docs:
        target = src / "docs" / name
        _write(target, (root / "docs" / name).read_bytes())
        keep.add(target)
    _prune(src, keep)
    return order


def build(root: Path = ROOT, src: Path = HERE / "_src", out: Path = HERE / "_build" / "html",
          fresh: bool = False, quiet: bool = True) -> Path:
    """Prepare `src` and run Sphinx into `out`; returns `out`. Warnings are errors (-W)."""
    if fresh:
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(out.parent / "doctrees", ignore_errors=True)
    order = prepare(root, src)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(HERE), "-d", str(out.parent / "doctrees"),
           "-W", "--keep-going", str(src), str(out)]
    if quiet:
        cmd.insert(3, "-q")
    start = time.perf_counter()
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise SiteError(f"Sphinx failed (exit {result.returncode}); its messages are above. Command: {' '.join(cmd)}")
    print(f"site: {len(order)} notebook pages built into {out} in {time.perf_counter() - start:.0f} s; "
          f"open {out / 'index.html'}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this checkout)")
    parser.add_argument("--src", type=Path, default=HERE / "_src", help="build-time Sphinx source folder")
    parser.add_argument("--out", type=Path, default=HERE / "_build" / "html", help="where the HTML goes")
    parser.add_argument("--fresh", action="store_true", help="delete the previous build first")
    parser.add_argument("--verbose", action="store_true", help="show Sphinx's progress")
    args = parser.parse_args(argv)
    try:
        build(args.root, args.src, args.out, fresh=args.fresh, quiet=not args.verbose)
    except SiteError as err:
        print(f"site: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
