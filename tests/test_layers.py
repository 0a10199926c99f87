"""The package's layers (docs/DESIGN.md "Layers"): every import points down or sideways, and no cycle.

Every module's imports are read with ``ast``, those inside functions included (a lazy import is still
an import: it runs, and the code fingerprint follows it). Importing ``a.b.c`` also runs the package
``a.b``'s ``__init__``, so that edge counts too. An import of a module in a higher layer, or any cycle
of imports between modules, fails with the modules named.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "cephalo"

#: bottom to top; a module may import its own layer and the layers below. A name is a module or a
#: package (prefix of dotted names under ``cephalo.``); the package's own ``__init__`` is "".
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("", "errors", "io", "geometry", "landmarks", "imageio", "measurements", "tracking", "provenance")),
    ("data", ("datasets", "index", "preprocess", "demo", "demo_skull")),
    ("config", ("config",)),
    ("models", ("models", "codecs", "public_hrnet", "losses", "augment", "inference")),
    ("learning", ("train", "evaluate", "refine", "uncertainty", "flags")),
    ("clinic", ("predict", "assess", "report_html")),
    ("commands", ("commands", "fingerprint")),
    ("cli", ("cli", "__main__")),
]


def modules(package: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under ``package`` (a package is named by its ``__init__``)."""
    out = {}
    for f in sorted(package.rglob("*.py")):
        parts = list(f.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module ``name`` imports, anywhere in it, with their parent packages."""
    root = name.split(".")[0]
    is_pkg = path.name == "__init__.py"
    here = name if is_pkg else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = here.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] != root:
                continue
            while t not in known and "." in t:
                t = t.rpartition(".")[0]
            while t:  # the module and the packages whose __init__ runs first
                if t in known and t != name and not name.startswith(t + "."):
                    found.add(t)
                t = t.rpartition(".")[0]
    return found


def layer_of(name: str, layers: list[tuple[str, tuple[str, ...]]]) -> int | None:
    rel = name.partition(".")[2]
    best: tuple[int, int] | None = None
    for i, (_, members) in enumerate(layers):
        for m in members:
            if (rel == m or (m and rel.startswith(m + "."))) and (best is None or len(m) > best[1]):
                best = (i, len(m))
    return None if best is None else best[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check(package: Path, layers: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """Every problem: a module in no layer, an import of a higher layer, a cycle."""
    mods = modules(package)
    graph = {name: imports(name, path, set(mods)) for name, path in mods.items()}
    problems = []
    for name in sorted(mods):
        mine = layer_of(name, layers)
        if mine is None:
            problems.append(f"{name}: in no layer (add it to one in LAYERS and docs/DESIGN.md)")
            continue
        for t in sorted(graph[name]):
            theirs = layer_of(t, layers)
            if theirs is not None and theirs > mine:
                problems.append(f"{name} ({layers[mine][0]}) imports {t} ({layers[theirs][0]}): an upward import")
    for comp in cycles(graph):
        problems.append("import cycle: " + " <-> ".join(comp))
    return problems


# --- the package -----------------------------------------------------------------------------


def test_the_package_keeps_its_layers_and_has_no_cycle():
    assert check(PACKAGE, LAYERS) == []


def test_design_doc_draws_the_same_layers():
    text = (REPO / "docs" / "DESIGN.md").read_text()
    for name, members in LAYERS:
        assert f"**{name}**" in text, name
        for m in members:
            if m:
                assert f"`{m}`" in text, (name, m)


# --- the checker itself, on a made-up package ---------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


SMALL_LAYERS = [("base", ("", "low")), ("mid", ("mid",)), ("top", ("top",))]


def test_checker_accepts_downward_imports(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "low.py": "X = 1\n",
            "mid/__init__.py": "",
            "mid/a.py": "from ..low import X\n",
            "top.py": "from .mid import a\n",
        },
    )
    assert check(pkg, SMALL_LAYERS) == []


def test_checker_fails_on_an_upward_import_even_inside_a_function(tmp_path):
    pkg = _package(
        tmp_path,
        {"low.py": "def f():\n    from .top import Y\n    return Y\n", "mid/__init__.py": "", "top.py": "Y = 2\n"},
    )
    problems = check(pkg, SMALL_LAYERS)
    assert problems == ["pkg.low (base) imports pkg.top (top): an upward import"]


def test_checker_fails_on_a_cycle_within_a_layer(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "low.py": "",
            "mid/__init__.py": "",
            "mid/a.py": "from . import b\n",
            "mid/b.py": "def g():\n    from .a import h\n",
            "top.py": "",
        },
    )
    assert check(pkg, SMALL_LAYERS) == ["import cycle: pkg.mid.a <-> pkg.mid.b"]


def test_checker_counts_the_package_init_that_an_import_runs(tmp_path):
    # mid.a imports top.t; top/__init__ imports mid.b: a cycle through top's __init__ only
    pkg = _package(
        tmp_path,
        {
            "low.py": "",
            "mid/__init__.py": "",
            "mid/a.py": "",
            "mid/b.py": "",
            "top/__init__.py": "from ..mid import b\n",
            "top/t.py": "",
            "mid/c.py": "from ..top import t\n",
        },
    )
    problems = check(pkg, SMALL_LAYERS)
    assert problems == [
        "pkg.mid.c (mid) imports pkg.top (top): an upward import",
        "pkg.mid.c (mid) imports pkg.top.t (top): an upward import",
    ]


def test_checker_names_a_module_in_no_layer(tmp_path):
    pkg = _package(tmp_path, {"low.py": "", "stray.py": ""})
    assert check(pkg, SMALL_LAYERS) == ["pkg.stray: in no layer (add it to one in LAYERS and docs/DESIGN.md)"]


def test_modules_over_500_lines_are_explained_in_the_design_doc():
    """docs/DESIGN.md "Modules over 500 lines, and why" names every module that long, and no shorter one."""
    design = (REPO / "docs" / "DESIGN.md").read_text()
    section = design.split("## Modules over 500 lines, and why", 1)[1].split("\n## ", 1)[0]
    listed = {cell.strip("` ") for cell in (row.split("|")[1] for row in section.splitlines() if row.startswith("| `"))}
    long = {str(f.relative_to(PACKAGE)) for f in PACKAGE.rglob("*.py") if len(f.read_text().splitlines()) > 500}
    assert long - listed == set(), f"over 500 lines and not explained in docs/DESIGN.md: {sorted(long - listed)}"
    assert listed - long == set(), f"listed in docs/DESIGN.md but no longer over 500 lines: {sorted(listed - long)}"


def test_no_function_over_10_parameters():
    """No function of the package takes over 10 parameters: pass a typed config section or a small
    frozen dataclass of the parameters that travel together. Click commands are exempt: their
    parameters are the command's options."""
    found = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if any("command" in ast.unparse(d) or "option" in ast.unparse(d) for d in node.decorator_list):
                continue  # a click command: one parameter per command-line option
            a = node.args
            n = (
                len(a.posonlyargs)
                + len(a.args)
                + len(a.kwonlyargs)
                - (a.args[:1] != [] and a.args[0].arg in ("self", "cls"))
            )
            if n > 10:
                found[f"{f.relative_to(PACKAGE)}:{node.name}"] = n
    assert found == {}, f"functions over 10 parameters (pass a config section or a dataclass): {found}"
