"""The project's set-up files agree with each other and with the brief."""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    """'open_clip_torch>=2.24' -> 'open-clip-torch' (PEP 503 normalised)."""
    name = re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {_name(r) for r in reqs}


def _environment_requirements() -> set[str]:
    names = set()
    in_pip = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.split("#", 1)[0].strip()
        if stripped == "- pip:":
            in_pip = True
            continue
        if in_pip and stripped.startswith("- ") and not stripped.startswith("- -e"):
            names.add(_name(stripped[2:]))
    return names


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    pyproject, conda = _pyproject_requirements(), _environment_requirements()
    assert pyproject, "no dependencies parsed from pyproject.toml"
    assert pyproject - conda == set(), f"missing from environment.yml: {sorted(pyproject - conda)}"
    assert conda - pyproject == set(), f"missing from pyproject.toml: {sorted(conda - pyproject)}"


def test_versions_agree_between_the_two_files():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for e in project["optional-dependencies"].values() for r in e]
    text = (ROOT / "environment.yml").read_text()
    for r in reqs:
        assert r in text, f"{r!r} is in pyproject.toml but environment.yml pins it differently"


def test_open_clip_is_a_test_dependency_only():
    """clipedu never imports open_clip: it is the independent reference of the tests."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "open-clip-torch" not in {_name(r) for r in project["dependencies"]}
    for path in (ROOT / "clipedu").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            assert not any(m.split(".")[0] == "open_clip" for m in mods), f"{path} imports open_clip"


def test_ci_runs_make_test_and_readme_quick_start_is_the_two_commands():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme


# What the fresh environment runs from a folder outside the checkout: where clipedu and its cache live,
# CLIP's tokenizer, and one loss of the course model on a small batch of the shapes world.
_INSTALLED_CHECKS = """
import json, math, sys
from pathlib import Path

import clipedu
from clipedu.data.photos import load_photos, photo_dir
from clipedu.data.shapes import ShapesWorld
from clipedu.loss import clip_loss
from clipedu.tokenizer import clip_tokenizer
from clipedu.train.cache import CACHE_DIR
from clipedu.train.config import course_preset, get_preset
from clipedu.train.setup import build_tokenizer, init_model
from clipedu.transforms import normalize

config = get_preset(course_preset())
batch = ShapesWorld(seed=config.data_seed, image_size=config.image_size).train(8)
tokenizer = build_tokenizer(config, batch.captions)
model = init_model(config, tokenizer.vocab_size)
texts = tokenizer([c[0] for c in batch.captions], context_length=config.context_length)
loss = clip_loss(*model(normalize(batch.images), texts)).item()
print(json.dumps({"prefix": sys.prefix, "clipedu": clipedu.__file__, "cache": str(CACHE_DIR),
                  "tokens": clip_tokenizer()("Hello World!")[0, :8].tolist(),
                  "preset": config.preset, "loss": loss, "finite": math.isfinite(loss),
                  "photos": str(photo_dir()), "photo_sizes": [p.image().size for p in load_photos()][:2]}))
"""
# The last cell of the copied notebook 00: which interpreter the kernel runs, and which clipedu it imports.
_WHERE_CELL = "import json, sys, clipedu\nprint('KERNEL', json.dumps([sys.prefix, clipedu.__file__]))"


def _fresh_env(home: Path, venv: Path) -> dict[str, str]:
    """os.environ without anything that points Python or Jupyter at the checkout; HOME in the temporary folder."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "JUPYTER", "VIRTUAL_ENV", "IPYTHON", "MPL", "XDG_"))}
    return env | {"HOME": str(home), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                  "PYTHONNOUSERSITE": "1"}


@pytest.mark.slow
def test_the_wheel_works_in_a_fresh_virtual_environment_from_any_folder(tmp_path):
    """`pip install` of the built wheel (not editable) into a new venv: clipedu works with no checkout in sight.

    Installing torch and Jupyter again would take minutes and gigabytes, so the new venv borrows this
    environment's third-party packages through a path line in a .pth file. Python does not run the .pth
    files of a folder added that way, so the checkout's editable clipedu stays out: the test first checks
    that `import clipedu` fails there. Then, from an empty folder with HOME in the temporary folder, the
    installed clipedu tokenizes, builds the course model and computes a loss, caches under ~/.cache/clipedu,
    and runs notebook 00, copied alone into the folder, in a kernel of the new venv.
    """
    src, venv, work, home = (tmp_path / d for d in ("src", "venv", "elsewhere", "home"))
    shutil.copytree(ROOT / "clipedu", src / "clipedu", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "data" / "photos", src / "data" / "photos")  # pyproject's data-files
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = ["-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([sys.executable, *pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist",
                    src], check=True)
    (wheel,) = (tmp_path / "dist").glob("clipedu-*.whl")
    assert "clipedu/assets/bpe_simple_vocab_16e6.txt.gz" in zipfile.ZipFile(wheel).namelist()

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    env = _fresh_env(home, venv)

    def run(*args):  # the new venv's python, in the empty folder
        return subprocess.run([python, *args], cwd=work, env=env, capture_output=True, text=True)

    work.mkdir(), home.mkdir()
    site = Path(run("-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip())
    assert site.is_relative_to(venv), f"the new venv's site-packages is {site}"
    (site / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")
    before = run("-c", "import clipedu")
    assert before.returncode != 0 and "No module named 'clipedu'" in before.stderr, \
        "the new venv imports clipedu before the wheel is installed: the test would not test the wheel"

    installed = run(*pip, "install", "--no-deps", "--no-index", wheel)  # pip itself is borrowed too
    assert installed.returncode == 0, installed.stderr
    checks = run("-c", _INSTALLED_CHECKS)
    assert checks.returncode == 0, checks.stderr
    found = json.loads(checks.stdout.splitlines()[-1])
    assert os.path.samefile(found["prefix"], venv), f"ran in {found['prefix']}, not in the new venv"
    assert Path(found["clipedu"]).is_relative_to(site), f"imported {found['clipedu']}, not the installed wheel"
    assert Path(found["cache"]) == home / ".cache" / "clipedu", "an installed clipedu caches in ~/.cache/clipedu"
    # the course photos travel with the wheel (pyproject's data-files), not from the checkout
    assert Path(found["photos"]) == Path(found["prefix"]) / "share" / "clipedu" / "photos"
    assert all(min(size) > 100 for size in found["photo_sizes"])
    assert found["tokens"] == [49406, 3306, 1002, 256, 49407, 0, 0, 0]
    assert found["finite"], f"the {found['preset']} model's loss is {found['loss']}"

    # notebook 00 as a student gets it, alone in the folder, run by the new venv's own kernel
    kernel = run("-m", "ipykernel", "install", "--prefix", venv, "--name", "python3")
    assert kernel.returncode == 0, kernel.stderr
    notebook = json.loads((ROOT / "notebooks" / "00_welcome.ipynb").read_text())
    notebook["cells"].append({"cell_type": "code", "execution_count": None, "id": "where-am-i", "metadata": {},
                              "outputs": [], "source": _WHERE_CELL})
    (work / "00_welcome.ipynb").write_text(json.dumps(notebook))
    executed = run("-m", "nbconvert", "--to", "notebook", "--execute", "--output", "executed.ipynb",
                   "--ExecutePreprocessor.kernel_name=python3", "--ExecutePreprocessor.timeout=300",
                   "00_welcome.ipynb")
    assert executed.returncode == 0, executed.stderr[-3000:]
    cells = json.loads((work / "executed.ipynb").read_text())["cells"]
    text = "".join("".join(o.get("text", "")) for c in cells if c["cell_type"] == "code" for o in c["outputs"])
    assert not [o for c in cells if c["cell_type"] == "code" for o in c["outputs"] if o["output_type"] == "error"]
    assert "CLIP's BPE merges file: found" in text
    (where,) = [json.loads(line[len("KERNEL "):]) for line in text.splitlines() if line.startswith("KERNEL ")]
    assert os.path.samefile(where[0], venv), f"notebook 00 ran in {where[0]}, not in the new venv"
    assert Path(where[1]).is_relative_to(site), f"notebook 00 imported {where[1]}, not the installed wheel"


def test_environment_yml_is_a_binder_environment():
    """repo2docker (Binder) builds from environment.yml at the root: conda-forge, Python 3.11, pip installs clipedu.

    A local requirement (`-e .`) makes repo2docker copy the repository before it installs the environment,
    and conda runs pip in the folder of environment.yml, the repository root. A binder/ folder would hide
    the root file from repo2docker.
    """
    import yaml  # PyYAML: Jupyter's own dependency (jupyter-events)

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "clipedu"
    assert "conda-forge" in env["channels"]
    deps = env["dependencies"]
    assert "python=3.11" in deps, "repo2docker reads the Python version from a 'python=X.Y' dependency"
    assert "pip" in deps
    (pip,) = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert "-e ." in pip or "." in pip, "the pip list must install the project itself (-e .)"
    assert not (ROOT / "binder").exists() and not (ROOT / ".binder").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str):
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


@pytest.mark.slow
def test_make_lab_opens_at_notebooks_without_the_news_pop_up(tmp_path):
    """`make lab` reads .jupyter/: JupyterLab's notification defaults say "never fetch news" (so it asks
    nothing) and the file browser's preferred path is notebooks/. The user's own settings still apply.

    The server runs with HOME in a temporary folder, where a user setting of our own must come through.
    """
    import time

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    port, token = _free_port(), "clipedu-test"
    own = tmp_path / ".jupyter/lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    own.parent.mkdir(parents=True)
    own.write_text('{"doNotDisturbMode": true}')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "XDG_"))} | {"HOME": str(tmp_path)}
    args = f"--no-browser --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    log = tmp_path / "lab.log"
    with open(log, "w") as out:  # -o: never reinstall .venv from inside a test
        server = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "lab", f"LAB_ARGS={args}"], cwd=ROOT,
                                  env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"make lab exited ({server.returncode}):\n{log.read_text()[-3000:]}"
            try:
                _get_json(f"{base}/api/status?token={token}")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.skip(f"JupyterLab did not answer on port {port} within 60 s (a loaded machine?)")
                time.sleep(0.5)
        notification = json.loads(_get_json(
            f"{base}/lab/api/settings/@jupyterlab/apputils-extension:notification?token={token}"))
        defaults = {k: v["default"] for k, v in notification["schema"]["properties"].items()}
        assert defaults["fetchNews"] == "false", "JupyterLab would ask about Jupyter news on its first start"
        assert defaults["checkForUpdates"] is False
        assert notification["settings"] == {"doNotDisturbMode": True}, "the user's own settings were not read"
        page = _get_json(f"{base}/lab?token={token}")
        assert re.search(r'"preferredPath":\s*"/?notebooks"', page), "the file browser does not open at notebooks/"
    finally:
        os.killpg(server.pid, 15)  # make, its shell and jupyter: the session this test started
        server.wait(timeout=30)
    assert own.read_text() == '{"doNotDisturbMode": true}'
