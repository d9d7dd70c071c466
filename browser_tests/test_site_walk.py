"""The built course website (`make site`, site/_build/html) in Chromium: every notebook page shows its figures.

`make site-check` reads the HTML files; this walk loads them in a browser, as a reader does: it serves the
site on a free local port, opens index.html, follows every link to a notebook page, and on each page waits
for every <img> to load and decode, then checks that none is broken (naturalWidth 0) and that the page shows
at least as many images as its notebook has figure outputs. Requests that leave the site (a CDN) are
refused here, since this machine is offline, and listed in the output.
"""

import functools
import http.server
import re
import threading
import urllib.parse
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT
from lab_server import free_port

SITE = ROOT / "site" / "_build" / "html"
SOLUTIONS = ROOT / "solutions"
PAGE = re.compile(r"/solutions/(\d\d_[a-z0-9_]+)\.html$")
FIGURE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")

# wait for every image (lazy ones too) to load, then say which did not
IMAGES = """async () => {
  const imgs = [...document.images];
  for (const img of imgs) { img.loading = "eager"; }
  window.scrollTo(0, document.body.scrollHeight);
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  return imgs.map(img => ({src: img.getAttribute("src"), complete: img.complete, width: img.naturalWidth}));
}"""


def figure_outputs(notebook: Path) -> int:
    """How many figures the notebook's stored outputs hold (one <img> each on its page)."""
    nb = nbformat.read(notebook, as_version=4)
    return sum(any(m in out.get("data", {}) for m in FIGURE_MIMES)
               for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "index.html").is_file():
        pytest.fail(f"{SITE.relative_to(ROOT)}/index.html is missing: build the site first (`make site`)")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_every_notebook_page_shows_its_figures(browser_context, site_url, report, out_dir):
    shots = out_dir / "site"
    shots.mkdir(exist_ok=True)
    page = browser_context.new_page()
    page.set_default_timeout(60_000)
    off_site, failed = set(), []

    def route(r):  # only the site itself: anything else (a CDN) is refused and noted
        if r.request.url.startswith(site_url):
            r.continue_()
        else:
            off_site.add(urllib.parse.urlsplit(r.request.url).netloc)
            r.abort()

    page.route("**/*", route)
    page.on("response", lambda resp: resp.status >= 400 and resp.url.startswith(site_url)
            and failed.append(f"{resp.status} {resp.url[len(site_url):]}"))
    try:
        page.goto(f"{site_url}/index.html", wait_until="load")
        page.screenshot(path=shots / "index.png")
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
        pages = {}
        for href in hrefs:
            url = urllib.parse.urlsplit(href)
            match = PAGE.search(url.path)
            if href.startswith(site_url) and match:
                pages.setdefault(match.group(1), f"{site_url}{url.path}")
        course = sorted(p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
        report.check(sorted(pages) == course, "the index links to every notebook page",
                     f"{len(pages)} notebook pages linked, {len(course)} notebooks in solutions/"
                     + (f"; missing {sorted(set(course) - set(pages))}" if set(course) - set(pages) else ""))

        problems, total = [], 0
        for name, url in sorted(pages.items()):
            response = page.goto(url, wait_until="load")
            if response is None or not response.ok:
                problems.append(f"{name}: HTTP {response.status if response else 'no response'}")
                continue
            images = page.evaluate(IMAGES)
            broken = [i["src"] for i in images if not (i["complete"] and i["width"] > 0)]
            want = figure_outputs(SOLUTIONS / f"{name}.ipynb")
            total += len(images)
            if broken:
                problems.append(f"{name}: {len(broken)} broken images, e.g. {broken[0]}")
            if len(images) < want:
                problems.append(f"{name}: {len(images)} images on the page, the notebook has {want} figures")
            page.screenshot(path=shots / f"{name}.png")
            report.line(f"     {name}.html: {len(images)} images loaded ({want} figure outputs in the notebook)")
        report.check(not problems, "every notebook page shows its figures",
                     f"{len(pages)} pages, {total} images, none broken" if not problems else "; ".join(problems))
        report.check(not failed, "no request within the site failed", "; ".join(failed[:5]))
        report.line("note: requests off the site, refused offline: " + (", ".join(sorted(off_site)) or "none")
                    + f"; screenshots in {shots}")
    finally:
        page.close()
