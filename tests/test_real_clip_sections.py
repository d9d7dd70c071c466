"""The "Now with real CLIP" sections of the notebooks run, with weights and without.

No released weights can be had offline, so the weights here are a randomly
initialised open_clip ViT-B-32-quickgelu saved as a state dict: the numbers are
meaningless, the code path is the real one (loading, encoding, the disk cache,
every figure). Each notebook's cells tagged `real-clip` are executed in order in
a fresh kernel, in the notebook's folder, as the section's convention promises
they can be. Without weights the same cells must print one line and draw nothing.
"""

import re
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
TAG = "real-clip"
HEADER = "## Now with real CLIP"
# the order matters: 09 and 20 share their prompts, so 20 finds them in the embedding cache
NOTEBOOKS = ["09_zero_shot", "10_retrieval", "12_probes_and_fine_tuning", "14_limits", "15_real_weights",
             "16_interactive", "20_prompt_engineering"]
CELL_TIMEOUT = 600


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(str(SOLUTIONS / f"{name}.ipynb"), as_version=4)


def is_tagged(cell) -> bool:
    return TAG in cell.get("metadata", {}).get("tags", [])


def tagged_cells(name: str) -> list:
    cells = [c for c in read(name).cells if c.cell_type == "code" and is_tagged(c)]
    if not cells:
        pytest.fail(f"solutions/{name}.ipynb has no cells tagged {TAG!r}: its 'Now with real CLIP' section is missing")
    return cells


def patient_shell(client) -> None:
    """Poll the kernel's replies in one-second slices.

    With an ipywidgets Output in a cell (the search box of notebook 16), a single long poll of
    the shell channel can miss the execute reply until its whole timeout has passed
    (jupyter/nbclient#312): the cell then "takes" ten minutes. Short polls see it at once.
    """
    from queue import Empty

    channel = client.kc.shell_channel
    poll = channel.get_msg

    async def get_msg(timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
            try:
                return await poll(timeout=step)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = get_msg


def run_tagged(name: str) -> list:
    """Execute the tagged cells of a notebook, in order, in a fresh kernel; return the executed cells."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.source) for c in tagged_cells(name)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(SOLUTIONS)}})
    with client.setup_kernel():
        patient_shell(client)
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    return nb.cells


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def images_in(cells) -> int:
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.outputs)


def errors_in(cells) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for c in cells for o in c.outputs if o.output_type == "error"]


def loading_cell(cells) -> int:
    """Index of the section's first cell: the one that calls load_real_clip."""
    hits = [i for i, c in enumerate(cells) if "load_real_clip(" in c.source]
    assert hits, "no tagged cell calls load_real_clip"
    return hits[0]


# ------------------------------------------------------------------ the convention, read from the files


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_section_follows_the_convention(name):
    """DOWNLOAD = False in a tagged cell before the section, never True in one; the section's first cell loads
    the weights and every later one does nothing without them."""
    cells = read(name).cells
    headers = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith(HEADER)]
    assert len(headers) == 1, f"{name}: expected one markdown cell starting {HEADER!r}, found {len(headers)}"
    switches = [i for i, c in enumerate(cells) if c.cell_type == "code" and is_tagged(c)
                and re.search(r"^DOWNLOAD = False\b", c.source, re.M)]
    assert switches and switches[0] < headers[0], f"{name}: no tagged `DOWNLOAD = False` cell before the section"
    for c in cells:
        if c.cell_type == "code" and is_tagged(c):
            assert not re.search(r"\bDOWNLOAD\s*=\s*True\b", c.source), f"{name}: a tagged cell sets DOWNLOAD = True"
    section = [c for c in cells[headers[0]:] if c.cell_type == "code"]
    assert section and all(is_tagged(c) for c in section), f"{name}: every code cell of the section must be tagged"
    assert "load_real_clip(download=DOWNLOAD)" in section[0].source, f"{name}: the section's first cell must load"
    for c in section[1:]:
        assert c.source.startswith("if real is not None:"), \
            f"{name}: a later cell does not begin `if real is not None:`: {c.source[:60]!r}"


# ------------------------------------------------------------------ executing the sections


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """A randomly initialised open_clip ViT-B-32-quickgelu, saved as a state dict (605 MB, ~3 s), once."""
    import logging

    import open_clip
    import torch

    path = tmp_path_factory.mktemp("weights") / "open_clip_pytorch_model.bin"
    logging.disable(logging.WARNING)  # "no pretrained weights loaded": that is the point
    try:
        model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    finally:
        logging.disable(logging.NOTSET)
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory) -> Path:
    """One embedding cache for the whole session, so notebooks that share prompts share their embeddings."""
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    """No CLIPEDU_WEIGHTS, an empty HOME (so ~/.cache/clip is empty) and an empty Hugging Face cache."""
    import matplotlib

    config = matplotlib.get_configdir()  # keep matplotlib's font cache: an empty HOME would rebuild it
    for var in ("HOME", "HF_HOME", "HF_HUB_CACHE"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.setenv("MPLCONFIGDIR", config)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.delenv("CLIPEDU_WEIGHTS", raising=False)
    monkeypatch.setenv("CLIPEDU_EMBEDDING_CACHE", str(tmp_path / "embeddings"))
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_section_runs_with_weights(name, random_weights, embedding_cache, monkeypatch):
    monkeypatch.setenv("CLIPEDU_WEIGHTS", str(random_weights))
    monkeypatch.setenv("CLIPEDU_EMBEDDING_CACHE", str(embedding_cache))
    start = time.perf_counter()
    cells = run_tagged(name)
    seconds = time.perf_counter() - start
    print(f"{name}: {len(cells)} tagged cells in {seconds:.0f} s")  # shown with pytest -s: the cost per notebook
    assert not errors_in(cells), f"{name}: {errors_in(cells)}"
    first = text_of(cells[loading_cell(cells)])
    assert first.startswith(f"real CLIP from {random_weights}"), f"{name}: the first cell printed {first!r}"
    assert images_in(cells) >= 1, f"{name}: the section drew no figure"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_section_without_weights_prints_one_line(name, no_weights_anywhere):
    from clipedu.course.real import HOW_TO

    cells = run_tagged(name)
    assert not errors_in(cells), f"{name}: {errors_in(cells)}"
    printed = "".join(text_of(c) for c in cells)
    assert printed == HOW_TO + "\n", f"{name}: printed {printed!r}"
    shown = [o for c in cells for o in c.outputs if o.output_type in ("display_data", "execute_result")]
    assert not shown, f"{name}: drew or displayed {len(shown)} outputs without weights"
    assert not (no_weights_anywhere / "embeddings").exists(), f"{name}: encoded something without weights"
