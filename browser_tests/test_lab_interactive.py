"""Notebook 16 as a student meets it: JupyterLab in Chromium, Run All, then drag, type and edit.

nbval executes the notebooks in a kernel without a front end; this test loads
the front end. It opens the student copy `notebooks/16_interactive.ipynb` in
JupyterLab, runs all cells from the Run menu, waits for the kernel to go idle,
then checks what a student would see:

- every widget the notebook creates rendered (sliders, text boxes, output areas, a figure in each output);
- no cell shows an error;
- dragging the temperature slider redraws the heatmap: new image bytes, and the figure on screen is the one
  whose title gives the slider's temperature (the title is drawn inside the PNG, so the test renders the
  kernel's current figure again and compares the bytes with the image on the page);
- typing a query and pressing Enter redraws the search results for that query;
- editing the prompts redraws the bars, one per new prompt;
- no "official Jupyter news?" pop-up covers the notebook, and the notebook file on disk is unchanged.

Screenshots and the server's log go to browser_out/ (printed at the start).
"""

import base64
import hashlib
import json
import re
import time
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT
from lab_server import LabServer, run_in_kernel

NOTEBOOK = "notebooks/16_interactive.ipynb"
# Run All with the course model cached (after notebook 08, or `make notebooks`) takes about a minute on two
# cores; without the cache the notebook first trains it (a few minutes). This bounds both.
RUN_ALL_TIMEOUT = 900
REDRAW_TIMEOUT = 90

# what each course control puts on the page (clipedu.course.widgets); a Playground also has one Output area
CONTROLS = {
    "widgets.temperature_slider(": {"slider": 1},
    "widgets.search_box(": {"slider": 1, "text": 1},
    "widgets.prompt_editor(": {"slider": 1, "textarea": 1},
    "widgets.Playground(": {},  # its controls are written in the cell: counted from `ipywidgets.X(` below
}
CSS = {"slider": ".widget-slider", "text": ".widget-text", "textarea": ".widget-textarea",
       "output": ".widget-output"}

# Run in the notebook's kernel through a second client: each playground's values, the text drawn in its
# current figure (its title, texts, tick labels), and the PNG its Output area holds, which the front end
# synchronises back to the kernel: the image that figure became.
KERNEL_STATE = """
import gc as _gc, json as _json
from clipedu.course.widgets import Playground as _Playground
_state = {}
for _p in _gc.get_objects():
    if isinstance(_p, _Playground):
        _fig, _texts, _png = _p.figure, [], None
        if _fig is not None:
            for _ax in _fig.axes:
                _texts += [_ax.get_title()] + [t.get_text() for t in _ax.texts]
                _texts += [t.get_text() for t in _ax.get_yticklabels()]
        _shown = [o.get("data", {}).get("image/png") for o in _p.output.outputs]
        _png = _shown[-1] if _shown else None
        _state["+".join(_p.controls)] = {"values": {k: str(v) for k, v in _p.values().items()},
                                         "texts": _texts, "png": _png}
print(_json.dumps(_state))
"""


def expected_widgets(notebook: nbformat.NotebookNode) -> dict[str, int]:
    """How many sliders, text boxes, text areas and output areas the notebook's code creates."""
    want = dict.fromkeys(CSS, 0)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for call, controls in CONTROLS.items():
            n = cell.source.count(call)
            want["output"] += n
            for kind, k in controls.items():
                want[kind] += n * k
        want["slider"] += len(re.findall(r"ipywidgets\.\w*Slider\(", cell.source))
        want["text"] += cell.source.count("ipywidgets.Text(")
        want["textarea"] += cell.source.count("ipywidgets.Textarea(")
    return want


def png_bytes(src: str) -> bytes:
    """The bytes of a PNG given as a data URL (an <img> src) or as bare base64 (from the kernel)."""
    if src.startswith("data:"):
        assert src.startswith("data:image/png;base64,"), f"not a PNG data URL: {src[:60]}"
        src = src.split(",", 1)[1]
    data = base64.b64decode(src)
    assert data.startswith(b"\x89PNG"), "not a PNG"
    return data


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


@pytest.fixture(scope="module")
def lab(out_dir):
    # JupyterLab writes a checkpoint of a notebook it opens: remove what this test leaves there
    checkpoints = (ROOT / NOTEBOOK).parent / ".ipynb_checkpoints"
    ours = checkpoints / (Path(NOTEBOOK).stem + "-checkpoint.ipynb")
    had = checkpoints.is_dir(), ours.is_file()
    try:
        with LabServer(ROOT, log=out_dir / "jupyterlab.log") as server:
            yield server
    finally:
        if not had[1]:
            ours.unlink(missing_ok=True)
        if not had[0] and checkpoints.is_dir() and not any(checkpoints.iterdir()):
            checkpoints.rmdir()


@pytest.fixture(scope="module")
def page(browser_context, lab):
    page = browser_context.new_page()
    page.set_default_timeout(60_000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.js_errors = errors
    try:
        yield page
    finally:
        page.close()


def test_notebook_16_runs_and_its_widgets_respond(lab, page, report, out_dir):
    path = ROOT / NOTEBOOK
    if not path.is_file():
        pytest.fail(f"{NOTEBOOK} is missing: generate the student notebooks with `python -m clipedu.course`")
    on_disk = hashlib.sha256(path.read_bytes()).hexdigest()
    notebook = nbformat.read(path, as_version=4)
    n_code = sum(c.cell_type == "code" for c in notebook.cells)
    report.line(f"JupyterLab on 127.0.0.1:{lab.port}, root {ROOT}; opening {NOTEBOOK} ({n_code} code cells)")

    # ---- open the notebook and wait for its kernel
    t0 = time.monotonic()
    page.goto(lab.url(f"lab/tree/{NOTEBOOK}?reset"))
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(state="visible", timeout=120_000)
    kernel = wait_for(lambda: (k := lab.session_kernel(NOTEBOOK)) and k["execution_state"] == "idle" and k,
                      120, "the notebook's kernel to start")
    cells = page.locator(".jp-NotebookPanel .jp-CodeCell")
    report.check(cells.count() == n_code, "the notebook opened with its kernel",
                 f"{cells.count()} code cells on the page, kernel {kernel['name']} idle after "
                 f"{time.monotonic() - t0:.0f} s")
    page.screenshot(path=out_dir / "01_notebook_opened.png")

    # ---- Run > Run All Cells, then wait until every cell ran and the kernel is idle
    t0 = time.monotonic()
    page.locator(".jp-NotebookPanel .jp-Cell").first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    def all_ran():
        prompts = page.eval_on_selector_all(".jp-NotebookPanel .jp-CodeCell .jp-InputPrompt",
                                            "els => els.map(e => e.textContent.trim())")
        done = len(prompts) == n_code and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts)
        return done and lab.api(f"kernels/{kernel['id']}")["execution_state"] == "idle"

    wait_for(all_ran, RUN_ALL_TIMEOUT, "Run All to finish", interval=2)
    report.check(True, "Run All Cells (from the Run menu) finished", f"all {n_code} cells have an execution "
                 f"count and the kernel is idle, after {time.monotonic() - t0:.0f} s")
    page.screenshot(path=out_dir / "02_run_all_done.png")

    # ---- every widget rendered, no error anywhere
    want = expected_widgets(notebook)
    got = {kind: page.locator(f".jp-NotebookPanel {css}").count() for kind, css in CSS.items()}
    report.check(got == want, "every widget rendered", f"on the page {got}, the notebook creates {want}")
    views = page.locator(".jp-NotebookPanel .jp-OutputArea-output > .widget-vbox")  # a Playground's root
    figures = page.locator(".jp-NotebookPanel .widget-output img")
    report.check(views.count() == want["output"] and figures.count() == want["output"],
                 "each control shows its figure",
                 f"{views.count()} widget views, {figures.count()} figures in their output areas")
    texts = page.eval_on_selector_all(".jp-NotebookPanel .jp-OutputArea-output",
                                      "els => els.map(e => [e.dataset.mimeType || '', e.innerText])")
    (out_dir / "outputs.json").write_text(json.dumps(texts, indent=1))
    errors = [t for mime, t in texts if "Traceback" in t
              or (mime == "application/vnd.jupyter.stderr" and re.search(r"\b\w*(Error|Exception)\b", t))]
    report.check(not errors, "no cell shows an error", f"{len(texts)} outputs read" if not errors
                 else errors[0][:500])
    fallbacks = [t for _, t in texts if "Error displaying widget" in t or "Loading widget" in t]
    report.check(not fallbacks, "no widget fell back to text", fallbacks[0][:200] if fallbacks else "")

    client = lab.kernel_client(kernel["id"])
    try:
        def kernel_state() -> dict:
            printed = run_in_kernel(client, KERNEL_STATE)
            lines = [line for line in printed.splitlines() if line.startswith("{")]
            assert lines, f"the kernel printed no state: {printed[-1000:]!r}"
            return json.loads(lines[-1])

        def settle(playground, shown_before: str, what: str) -> tuple[str, dict]:
            """Wait for a new figure on the page, then for the kernel to be idle and the image to stay put."""
            img = playground.locator(".widget-output img")
            wait_for(lambda: img.count() == 1 and img.get_attribute("src") != shown_before,
                     REDRAW_TIMEOUT, f"{what}: a new figure")
            last = None
            for _ in range(int(REDRAW_TIMEOUT)):
                time.sleep(1.0)
                src = img.get_attribute("src") if img.count() == 1 else None
                if src and src == last and lab.api(f"kernels/{kernel['id']}")["execution_state"] == "idle":
                    return src, kernel_state()
                last = src
            raise TimeoutError(f"{what}: the figure kept changing for {REDRAW_TIMEOUT} s")

        def playground_with(label: str, control: str, shot: str):
            """The one playground whose control is labelled `label`, scrolled into view and photographed;
            with the source of its figure before any interaction."""
            box = page.locator(".jp-NotebookPanel .widget-vbox").filter(
                has=page.locator(".widget-label", has_text=re.compile(f"^{label}$")))
            assert box.count() == 1, f"{box.count()} playgrounds with a {control} labelled {label}"
            box.scroll_into_view_if_needed()
            before = box.locator(".widget-output img").get_attribute("src")
            box.screenshot(path=out_dir / shot)
            return box, before

        # ---- the temperature slider
        box, before_src = playground_with("T", "slider", "03_temperature_before.png")
        readout = box.locator(".widget-readout")
        before_t = readout.inner_text().strip()
        handle = box.locator(".noUi-handle")
        hb = handle.bounding_box()
        x, y = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        for step in range(1, 7):  # drag 60 px to the right: a warmer temperature, well inside the range
            page.mouse.move(x + 10 * step, y)
        page.mouse.up()
        after_src, state = settle(box, before_src, "the temperature slider")
        after_t = readout.inner_text().strip()
        box.screenshot(path=out_dir / "04_temperature_after.png")
        s = state["temperature"]
        report.check(after_t != before_t and float(after_t) > float(before_t), "dragging the slider moves T",
                     f"readout {before_t} -> {after_t}, the kernel's value {float(s['values']['temperature']):.3g}")
        report.check(png_bytes(after_src) != png_bytes(before_src), "the temperature figure changed",
                     f"PNG {len(png_bytes(before_src))} -> {len(png_bytes(after_src))} bytes, different bytes")
        title = next((t for t in s["texts"] if t.startswith("softmax over each row")), "")
        report.check(f"T = {after_t} " in title and f"{float(s['values']['temperature']):.3g}" == after_t
                     and png_bytes(s["png"]) == png_bytes(after_src),
                     "the title's temperature follows the slider",
                     f"the image on the page is the kernel's figure titled {title.splitlines()[0]!r}")

        # ---- the search box: type a query, press Enter
        box, before_src = playground_with("query", "text box", "05_search_before.png")
        query = "a blue circle"
        field = box.locator(".widget-text input")
        field.click()
        field.fill(query)
        field.press("Enter")
        after_src, state = settle(box, before_src, "the search box")
        box.screenshot(path=out_dir / "06_search_after.png")
        s = state["query+k"]
        report.check(s["values"]["query"] == query and query in s["texts"]
                     and png_bytes(s["png"]) == png_bytes(after_src) != png_bytes(before_src),
                     "Enter in the search box redraws the results",
                     f"query {query!r}: new results image, drawn for that query")

        # ---- the prompt editor: new prompts, then click outside the box
        box, before_src = playground_with("prompts", "text area", "07_prompts_before.png")
        prompts = ["a pink circle", "a green square", "a photo of a cat"]
        area = box.locator(".widget-textarea textarea")
        area.click()
        area.fill("\n".join(prompts))
        box.locator(".widget-output img").click()  # focus leaves the box: the prompts are scored
        after_src, state = settle(box, before_src, "the prompt editor")
        box.screenshot(path=out_dir / "08_prompts_after.png")
        s = state["index+prompts"]
        report.check(all(p in s["texts"] for p in prompts) and png_bytes(s["png"]) == png_bytes(after_src)
                     != png_bytes(before_src),
                     "the prompt editor redraws after its text changes",
                     f"one bar per new prompt {prompts}, new image")
    finally:
        client.stop_channels()

    # ---- no news pop-up, nothing written to the notebook, and what JavaScript said
    toasts = page.eval_on_selector_all(".Toastify__toast, .jp-Notification-Toast",
                                       "els => els.map(e => e.innerText)")
    report.check(not any("news" in t.lower() for t in toasts), "no \"Jupyter news?\" pop-up",
                 f"{len(toasts)} notifications on screen" + (f": {toasts}" if toasts else ""))
    report.check(hashlib.sha256(path.read_bytes()).hexdigest() == on_disk, "the notebook file is unchanged",
                 f"{NOTEBOOK} has the same bytes as before the test (autosave off)")
    page.screenshot(path=out_dir / "09_end.png")
    if page.js_errors:
        report.line(f"note: {len(page.js_errors)} JavaScript errors on the page, first: {page.js_errors[0][:200]}")
