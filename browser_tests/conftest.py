"""Fixtures of the browser checks (`make browser`): Debian's Chromium driven by Playwright, and a report.

These tests are not part of `pytest tests` (the unit stage): they need Chromium
and start servers. `make browser` runs them; `make test` runs them after the
notebooks and the site, and skips them, in one line, where Chromium is missing.

Chromium is Debian's package (`apt-get install chromium`), never Playwright's
own download (`playwright install` needs the internet): Playwright drives it
through `executable_path`. Set CHROMIUM to use another binary.
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# screenshots and logs of the last run (git-ignored); BROWSER_OUT moves it
OUT = Path(os.environ.get("BROWSER_OUT", ROOT / "browser_out")).resolve()
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Chromium in a container, offline: root needs --no-sandbox; the rest stops the background connections
# (updates, sync, field trials) that a closed network refuses, and keeps the first run quiet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


class Report:
    """Prints one line per check (and keeps them in OUT/checks.txt); `check` asserts as it prints."""

    def __init__(self, path: Path):
        self.path = path
        self.t0 = time.monotonic()

    def line(self, text: str) -> None:
        text = f"[browser {time.monotonic() - self.t0:6.1f}s] {text}"
        print(text, flush=True)
        with self.path.open("a") as f:
            f.write(text + "\n")

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        self.line(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}")
        assert ok, f"{what}: {detail}"


@pytest.fixture(scope="session")
def out_dir() -> Path:
    """A fresh OUT folder for this run's screenshots, named in the output."""
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    print(f"\n[browser] screenshots and logs go to {OUT}", flush=True)
    return OUT


@pytest.fixture(scope="session")
def report(out_dir) -> Report:
    return Report(out_dir / "checks.txt")


@pytest.fixture(scope="session")
def browser_context(out_dir):
    """A headless Chromium with its own fresh profile, closed at the end whatever happens."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium) "
                    "or set CHROMIUM to a Chromium binary; `playwright install` cannot work offline")
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="clipedu-chromium-")
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)

