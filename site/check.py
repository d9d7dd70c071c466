"""Check the built course website: `python site/check.py [site/_build/html]` (or `make site-check`).

Walks every HTML page of the build and reports:

- an internal link (`href` or `src` of any tag) whose file is not in the build, or that leaves the build;
- a `page.html#anchor` or `#anchor` link whose anchor is not an `id` (or `name`) of its target page;
- an image (`<img src>`) that is missing or empty;
- an execution error among a notebook's stored outputs: myst-nb renders an output of type `error` with the
  CSS class `traceback`, and a traceback printed into a stream shows "Traceback (most recent call last)" in a
  `cell_output` block;
- a live-widget view (`application/vnd.jupyter.widget-view+json`) left in a page: without a kernel and the
  widget JavaScript it would render as an empty box.

With `--course ROOT` it also checks the course's layout: one page `solutions/NN_topic.html` per notebook of
ROOT/solutions, each linked from index.html and each offering its student notebook `notebooks/NN_topic.ipynb`.

External links (http:, https:, mailto:, data:, //host) are not followed: the check needs no network.
Only the standard library is used. Exit status 1 and one line per problem when anything is wrong.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

TRACEBACK_TEXT = "Traceback (most recent call last)"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
DOWNLOAD_TEXT = "Download the student notebook"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
EXTERNAL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|//)")


@dataclass
class Page:
    """What the checker needs from one HTML page."""
    path: Path
    links: list[tuple[str, str, str, int]] = field(default_factory=list)  # (tag, attribute, url, line)
    anchors: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)  # hrefs of links whose text is DOWNLOAD_TEXT


class _Parser(HTMLParser):
    def __init__(self, page: Page):
        super().__init__(convert_charrefs=True)
        self.page = page
        self.stack: list[tuple[str, bool]] = []  # open elements: (tag, opens a cell_output block)
        self.output_text: list[str] = []
        self.output_line = 0
        self.link_href: str | None = None
        self.link_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        line = self.getpos()[0]
        for name in ("id", "name"):
            if attrs.get(name) and (name == "id" or tag == "a"):
                self.page.anchors.add(attrs[name])
        for name in ("href", "src"):
            if attrs.get(name) is not None:
                self.page.links.append((tag, name, attrs[name], line))
        classes = (attrs.get("class") or "").split()
        if "traceback" in classes:
            self.page.errors.append(f"line {line}: an error output (class 'traceback')")
        if tag == "script" and attrs.get("type") == WIDGET_VIEW:
            self.page.errors.append(f"line {line}: a live-widget view ({WIDGET_VIEW}) renders as an empty box")
        if tag == "a":
            self.link_href, self.link_text = attrs.get("href"), []
        if tag in VOID:
            return
        opens_output = "cell_output" in classes and not self._in_output()
        if opens_output:
            self.output_text, self.output_line = [], line
        self.stack.append((tag, opens_output))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack and self.stack[-1][0] == tag:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "a" and self.link_href is not None:
            if " ".join("".join(self.link_text).split()) == DOWNLOAD_TEXT:
                self.page.downloads.append(self.link_href)
            self.link_href = None
        if tag in VOID or not any(t == tag for t, _ in self.stack):
            return  # stray end tag
        while self.stack:
            open_tag, opened_output = self.stack.pop()
            if opened_output:
                self._close_output()
            if open_tag == tag:
                break

    def handle_data(self, data):
        if self._in_output():
            self.output_text.append(data)
        if self.link_href is not None:
            self.link_text.append(data)

    def close(self):
        super().close()
        if self._in_output():
            self._close_output()

    def _in_output(self) -> bool:
        return any(opened for _, opened in self.stack)

    def _close_output(self):
        text = " ".join("".join(self.output_text).split())  # highlighting splits the text into many spans
        if TRACEBACK_TEXT in text:
            self.page.errors.append(f"line {self.output_line}: an output shows a Python traceback")
        if WIDGET_VIEW in text:
            self.page.errors.append(f"line {self.output_line}: an output shows a raw live-widget view")
        self.output_text = []


def parse_page(path: Path) -> Page:
    page = Page(path)
    parser = _Parser(page)
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return page


@dataclass
class Report:
    root: Path
    pages: dict[Path, Page]
    problems: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        links = sum(len(p.links) for p in self.pages.values())
        return (f"site-check: {len(self.pages)} pages, {links} links and images checked in {self.seconds:.1f} s, "
                f"{len(self.problems)} problem(s)")


def _target(root: Path, page: Path, url: str) -> tuple[Path | None, str]:
    """The file an internal url points to (None for a same-page link) and its #fragment."""
    parts = urlsplit(url)
    fragment = unquote(parts.fragment)
    if not parts.path:
        return None, fragment
    path = unquote(parts.path)
    base = root if path.startswith("/") else page.parent
    target = (base / path.lstrip("/")).resolve()
    if path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target, fragment


def check_site(root: Path) -> Report:
    """Check every page under root; the problems found, one readable line each."""
    start = time.perf_counter()
    root = Path(root).resolve()
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"{root} has no index.html: build the site first (`make site`)")
    pages = {path.resolve(): parse_page(path) for path in sorted(root.rglob("*.html"))
             if not path.relative_to(root).parts[0].startswith("_")}  # _static/ holds theme templates, not pages
    problems = []
    for path, page in pages.items():
        where = path.relative_to(root).as_posix()
        problems += [f"{where}: {error}" for error in page.errors]
        for tag, attr, url, line in page.links:
            url = url.strip()
            if not url or url == "#" or EXTERNAL.match(url):
                continue
            target, fragment = _target(root, path, url)
            if target is None:  # same page
                if fragment and fragment not in page.anchors:
                    problems.append(f"{where}:{line}: <{tag} {attr}=\"{url}\">: no id {fragment!r} on this page")
                continue
            if root not in target.parents:
                problems.append(f"{where}:{line}: <{tag} {attr}=\"{url}\"> points outside the site")
            elif not target.is_file():
                kind = "image" if tag == "img" else "link"
                problems.append(f"{where}:{line}: broken {kind} <{tag} {attr}=\"{url}\">: "
                                f"{target.relative_to(root).as_posix()} is not in the build")
            elif tag == "img" and target.stat().st_size == 0:
                problems.append(f"{where}:{line}: image {url!r} is an empty file")
            elif fragment and target in pages and fragment not in pages[target].anchors:
                problems.append(f"{where}:{line}: <{tag} {attr}=\"{url}\">: "
                                f"{target.relative_to(root).as_posix()} has no id {fragment!r}")
    return Report(root, pages, problems, time.perf_counter() - start)


def check_course(report: Report, course: Path) -> list[str]:
    """The course's own layout: a page per solution notebook, linked from the index, with its download."""
    root, problems = report.root, []
    names = sorted(p.stem for p in (Path(course) / "solutions").glob("*.ipynb"))
    if not names:
        return [f"{course}/solutions has no notebooks"]
    index = report.pages.get(root / "index.html")
    linked = {url.split("#")[0] for _, attr, url, _ in index.links if attr == "href"} if index else set()
    for name in names:
        page = report.pages.get(root / "solutions" / f"{name}.html")
        if page is None:
            problems.append(f"solutions/{name}.html: no page for solutions/{name}.ipynb")
            continue
        if f"solutions/{name}.html" not in linked:
            problems.append(f"index.html: no link to solutions/{name}.html")
        want = f"../notebooks/{name}.ipynb"
        if want not in page.downloads:
            problems.append(f"solutions/{name}.html: no '{DOWNLOAD_TEXT}' link to {want}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", type=Path, default=Path(__file__).resolve().parent / "_build" / "html")
    parser.add_argument("--course", type=Path, help="repository root: also check one page per solution notebook")
    args = parser.parse_args(argv)
    try:
        report = check_site(args.site)
    except FileNotFoundError as err:
        print(f"site-check: {err}", file=sys.stderr)
        return 1
    if args.course:
        report.problems += check_course(report, args.course)
    for problem in report.problems:
        print(f"  {problem}")
    notebooks = len(list((report.root / "solutions").glob("*.html")))
    print(f"{report.summary()}; {notebooks} notebook pages")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
