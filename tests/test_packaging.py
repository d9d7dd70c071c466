"""The project's set-up files agree with each other and with the brief."""
import ast
import os
import re
import shutil
import subprocess
import sys
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


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_tokenizes_with_its_own_merges_file(tmp_path):
    """`pip install .` (not editable), run from another folder: CLIP's BPE merges ship inside the package.

    The wheel is built from a copy of the sources (the checkout stays clean), installed with
    --target, and imported from a folder that holds no clipedu, with the checkout off sys.path.
    """
    src, site, work = tmp_path / "src", tmp_path / "site", tmp_path / "elsewhere"
    shutil.copytree(ROOT / "clipedu", src / "clipedu", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", src], check=True)
    (wheel,) = (tmp_path / "dist").glob("clipedu-*.whl")
    assert "clipedu/assets/bpe_simple_vocab_16e6.txt.gz" in zipfile.ZipFile(wheel).namelist()
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", site, wheel], check=True)

    work.mkdir()
    code = ("import clipedu; from clipedu.tokenizer import clip_tokenizer; "
            "print(clipedu.__file__); print(clip_tokenizer()('Hello World!')[0, :6].tolist())")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    where, tokens = out.stdout.splitlines()
    assert Path(where).is_relative_to(site), f"imported {where}, not the installed wheel"
    assert tokens == "[49406, 3306, 1002, 256, 49407, 0]"
