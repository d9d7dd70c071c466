"""The house rule, checked by reading clipedu's source with `ast` (nothing is imported).

Dependencies run one way: core (the flat `clipedu/*.py`, the paper) <- `data` <-
`train` <- `experiments`; `grade` (the grader and the exercises' references)
may import those four; `course` (notebook tooling) may import anything, and
nothing outside `course` imports it or `grade`. No two modules import each other, directly
or around a loop, and no module imports another module's private `_name`.

Every import counts, wherever it stands: at the top of a module, or inside a
function (a lazy import). A lazy import delays the cost, but it is still a
dependency: it must point the right way, and it must not close a loop. (Python
tolerates a loop when one side is lazy; a reader does not: two modules that need
each other are one concept cut in two, or a re-export in the wrong place.)

What counts as an import: `import clipedu.x`, `from clipedu.x import y`,
`from clipedu import x` (x a module), and relative imports (`from .x import y`).
Importing `clipedu.a.b` also runs `clipedu/a/__init__.py`; that implicit edge is
not counted, so a package face may re-export from its own modules.
"""

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clipedu"
MAX_LINES = 300

# The layer of each sub-package (flat modules are "core"), and what each layer may import.
PACKAGE_LAYERS = {"assets": "core", "data": "data", "train": "train", "experiments": "experiments", "grade": "grade",
                  "course": "course"}
MAY_IMPORT = {
    "core": {"core"},
    "data": {"core", "data"},
    "train": {"core", "data", "train"},
    "experiments": {"core", "data", "train", "experiments"},
    "grade": {"core", "data", "train", "experiments", "grade"},
    "course": {"core", "data", "train", "experiments", "grade", "course"},
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted ("clipedu.train.loop")
    target: str  # the imported module, dotted
    name: str | None  # the name taken from it (`from target import name`), None for `import target`
    line: int
    lazy: bool  # inside a function


def find_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the package folder `root`."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or (len(parts) == 2 and parts[1] not in PACKAGE_LAYERS):
        return "core"  # the package's own __init__, or a flat module
    if parts[1] not in PACKAGE_LAYERS:
        raise ValueError(f"{module} is in no layer: add its sub-package to PACKAGE_LAYERS")
    return PACKAGE_LAYERS[parts[1]]


def _resolve_relative(source: str, is_package: bool, level: int, module: str | None) -> str:
    base = source.split(".")
    base = base if is_package else base[:-1]  # a package's __init__ is its own base
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(source: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import of a module inside the package (`root`'s modules), lazy ones included."""
    top = source.split(".")[0]
    is_package = path.name == "__init__.py"
    found = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == top:
                        found.append(Import(source, alias.name, None, child.lineno, lazy))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    target = _resolve_relative(source, is_package, child.level, child.module)
                else:
                    target = child.module or ""
                if target.split(".")[0] == top:
                    for alias in child.names:
                        submodule = f"{target}.{alias.name}"
                        if submodule in modules:  # `from clipedu import transforms`: the module itself
                            found.append(Import(source, submodule, None, child.lineno, lazy))
                        else:
                            found.append(Import(source, target, alias.name, child.lineno, lazy))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def private_attributes(source: str, path: Path, modules: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, "other.module._name") for each `module._name` where `module` is another package module
    bound by an import (`from clipedu import viz`, `import clipedu.viz as viz`)."""
    tree = ast.parse(path.read_text(), str(path))
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in modules:
                    bound[alias.asname] = alias.name
    return [(node.lineno, f"{bound[node.value.id]}.{node.attr}") for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id in bound and bound[node.value.id] != source and is_private(node.attr)]


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import loops: each strongly connected group of two or more modules (Tarjan), sorted."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return sorted(groups)


def check_package(root: Path) -> list[str]:
    """Every break of the house rule in the package folder `root`, one line each (empty: all good)."""
    modules = find_modules(root)
    problems, edges = [], {}
    for source, path in modules.items():
        for imp in imports_of(source, path, modules):
            where = f"{path.relative_to(root.parent)}:{imp.line}: {source}"
            kind = "a lazy import" if imp.lazy else "an import"
            if imp.target not in modules:
                problems.append(f"{where} imports {imp.target}, which is not a module of the package")
                continue
            if imp.target != source:
                edges.setdefault(source, set()).add(imp.target)
            src_layer, dst_layer = layer_of(source), layer_of(imp.target)
            if dst_layer not in MAY_IMPORT[src_layer]:
                problems.append(f"{where} ({src_layer}) has {kind} of {imp.target} ({dst_layer}): "
                                f"{src_layer} may import only {', '.join(sorted(MAY_IMPORT[src_layer]))}")
            if imp.name and is_private(imp.name) and imp.target != source:
                problems.append(f"{where} imports the private {imp.target}.{imp.name}")
        for line, name in private_attributes(source, path, modules):
            problems.append(f"{path.relative_to(root.parent)}:{line}: {source} uses the private {name}")
    for group in find_cycles(edges):
        links = [f"{a} -> {b}" for a in group for b in sorted(edges.get(a, ())) if b in group]
        problems.append(f"import cycle between {', '.join(group)} ({'; '.join(links)})")
    return problems


# ---------------------------------------------------------------------------- the package itself


def test_clipedu_follows_the_import_rule():
    problems = check_package(PACKAGE)
    assert not problems, "\n" + "\n".join(problems)


def test_import_clipedu_stays_light():
    """The front door imports only core: no figures, no scikit-learn, none of the four packages."""
    code = ("import sys, clipedu; print(' '.join(m for m in ('matplotlib', 'sklearn', 'ipywidgets', 'clipedu.data', "
            "'clipedu.train', 'clipedu.experiments', 'clipedu.grade', 'clipedu.course') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import clipedu also imported: {out.stdout.strip()}"


def test_every_module_is_in_a_layer():
    for name in find_modules(PACKAGE):
        assert layer_of(name) in MAY_IMPORT


def test_the_walk_sees_the_known_imports():
    """Guards the checker against reading nothing: a few imports that must be there."""
    modules = find_modules(PACKAGE)
    targets = {(i.source, i.target) for name, path in modules.items() for i in imports_of(name, path, modules)}
    assert ("clipedu.model", "clipedu.vision") in targets  # relative: `from .vision import ...`
    assert ("clipedu.embed", "clipedu.transforms") in targets  # lazy, `from clipedu import transforms`
    assert ("clipedu.train.setup", "clipedu.data.contract") in targets


def test_no_module_is_over_300_lines():
    lengths = {path.relative_to(PACKAGE.parent): len(path.read_text().splitlines())
               for path in find_modules(PACKAGE).values()}
    too_long = [f"{path}: {n} lines" for path, n in sorted(lengths.items()) if n > MAX_LINES]
    assert not too_long, f"modules over {MAX_LINES} lines (split them by concept):\n" + "\n".join(too_long)


# ---------------------------------------------------------------------------- the checker catches what it should


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


CLEAN = {
    "__init__.py": "from pkg.model import CLIP\n",
    "model.py": "from .layers import Block\n\nclass CLIP:\n    pass\n",
    "layers.py": "class Block:\n    pass\n\ndef _helper():\n    pass\n",
    "data/__init__.py": "",
    "data/shapes.py": "from pkg.model import CLIP\n",
    "train/__init__.py": "from pkg.train.loop import train\n",
    "train/loop.py": "from pkg.data import shapes\nfrom . import cache\n\ndef train():\n    pass\n",
    "train/cache.py": "from pkg import model\n",
    "experiments/__init__.py": "",
    "experiments/runs.py": "from pkg.train.loop import train\n",
    "grade/__init__.py": "",
    "grade/runner.py": "from pkg.experiments.runs import train\n",
    "course/__init__.py": "",
    "course/viz.py": "from pkg.experiments.runs import train\nfrom pkg.course import widgets\n",
    "course/widgets.py": "import pkg.data.shapes\nfrom pkg.grade import runner\n",
}


def test_checker_passes_a_clean_tree(tmp_path):
    assert check_package(write_tree(tmp_path, CLEAN)) == []


@pytest.mark.parametrize("rel, text, expected", [
    ("model.py", "from pkg.data.shapes import World\n", "pkg.model (core) has an import of pkg.data.shapes (data)"),
    ("layers.py", "def f():\n    from pkg.nothere import x\n", "pkg.nothere, which is not a module of the package"),
    ("data/shapes.py", "def f():\n    import pkg.train.loop\n", "has a lazy import of pkg.train.loop (train)"),
    ("train/cache.py", "from pkg.experiments import runs\n", "pkg.train.cache (train) has an import"),
    ("experiments/runs.py", "from pkg.course.viz import plot\n", "has an import of pkg.course.viz (course)"),
    ("grade/runner.py", "from pkg.course.viz import plot\n", "pkg.grade.runner (grade) has an import of pkg.course.viz"),
    ("train/cache.py", "from pkg.grade import runner\n", "pkg.train.cache (train) has an import of pkg.grade.runner"),
    ("model.py", "from .layers import _helper\n", "imports the private pkg.layers._helper"),
    ("train/cache.py", "from pkg import layers\nlayers._helper()\n", "uses the private pkg.layers._helper"),
    ("layers.py", "import pkg.model\n", "import cycle between pkg.layers, pkg.model"),
    ("train/cache.py", "def f():\n    from pkg.train.loop import train\n",
     "import cycle between pkg.train.cache, pkg.train.loop"),
])
def test_checker_catches_a_planted_bad_import(tmp_path, rel, text, expected):
    files = dict(CLEAN)
    files[rel] = files[rel] + text if rel in files else text
    problems = check_package(write_tree(tmp_path, files))
    assert any(expected in p for p in problems), problems


def test_relative_imports_resolve_from_modules_and_package_faces():
    assert _resolve_relative("pkg.train.loop", False, 1, "cache") == "pkg.train.cache"
    assert _resolve_relative("pkg.train.loop", False, 2, "model") == "pkg.model"
    assert _resolve_relative("pkg.train", True, 1, "loop") == "pkg.train.loop"
    assert _resolve_relative("pkg.model", False, 1, None) == "pkg"
