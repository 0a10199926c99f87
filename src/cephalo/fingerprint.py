"""Per-command code fingerprints: the workflow's rerun triggers.

:func:`code_fingerprints` - one SHA-256 per ``cephalo`` subcommand over the *code* it can run:
the static import closure of ``cephalo.commands.<name>`` inside the package (function-level
imports included), each module hashed by its abstract syntax tree without docstrings, so a comment
or docstring edit changes nothing and a changed metric definition changes every command that
imports it. Both workflow engines depend on ``results/code/<command>.sha256`` (Snakemake writes them
at parse time, DVC in its ``code_fingerprint`` stage), so a code change reruns exactly the stages
that run that code.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import re
import sys
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from .commands import SUBCOMMANDS
from .io import atomic_path

__all__ = ["code_fingerprints", "write_code_fingerprints", "command_modules", "command_closures"]


def _package_root() -> Path:
    return Path(__file__).resolve().parent


def _module_file(root: Path, dotted: str) -> Path | None:
    rel = dotted.split(".")[1:]  # drop "cephalo"
    base = root.joinpath(*rel) if rel else root
    if base.with_suffix(".py").is_file() and rel:
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imports(tree: ast.AST, dotted: str, is_pkg: bool) -> set[str]:
    """Dotted cephalo modules a module imports (anywhere, lazy imports inside functions included)."""
    out: set[str] = set()
    pkg = dotted if is_pkg else dotted.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "cephalo"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "cephalo":
                continue
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}  # `from . import metrics` names a module
    return out


def _imports_dynamically(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name == "import_module":
                return True
    return False


_REGISTRY_TARGET = re.compile(r"([A-Za-z_][\w.]*):[A-Za-z_]\w*")


def _registry_targets(tree: ast.AST, pkg: str) -> set[str]:
    """Modules a lazy registry names as ``"module:attribute"`` strings, relative to ``pkg``."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = _REGISTRY_TARGET.fullmatch(node.value)
            if m:
                out.add(f"{pkg}.{m.group(1)}")
    return out


@lru_cache(maxsize=1024)
def _parse(path: Path, mtime_ns: int, size: int) -> ast.Module:
    """The module's syntax tree (cached per file version within a process)."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _tree(path: Path) -> ast.Module:
    st = path.stat()
    return _parse(path, st.st_mtime_ns, st.st_size)


def _normalised_source(path: Path) -> str:
    """The module's AST dump without docstrings (comments never reach the AST)."""
    tree = copy.deepcopy(_tree(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def command_modules(command_module: str, root: str | Path | None = None) -> dict[str, Path]:
    """The static import closure of ``cephalo.commands.<command_module>`` within the package.

    Args:
        command_module: module name under ``cephalo.commands`` (``"evaluate"``, ``"make_demo"``).
        root: the package folder (default: this installed package).

    Returns:
        dotted module name -> file, sorted; always includes ``cephalo`` (``__init__``: the version),
        ``cephalo.cli`` and ``cephalo.errors``.

    Raises:
        FileNotFoundError: no such command module.
    """
    root = Path(root) if root is not None else _package_root()
    start = f"cephalo.commands.{command_module}"
    if _module_file(root, start) is None:
        raise FileNotFoundError(f"no module {start} under {root}")
    seen: dict[str, Path] = {}
    todo = [start, "cephalo", "cephalo.cli", "cephalo.errors"]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        f = _module_file(root, mod)
        if f is None:
            continue  # a name imported from a module, not a module itself
        seen[mod] = f
        # a submodule's package __init__ runs too
        parent = mod.rpartition(".")[0]
        if parent:
            todo.append(parent)
        tree = _tree(f)
        todo += sorted(_imports(tree, mod, f.name == "__init__.py") - set(seen))
        if mod != "cephalo.cli" and _imports_dynamically(tree):
            # importlib.import_module(...) with computed names (lazy registries): the modules the
            # registry names as "module:attribute" strings (cephalo.datasets.DATASETS), else every
            # module of the package may run. (The CLI's own dispatch to its subcommands is not followed.)
            pkg_dir = f.parent
            pkg = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
            named = {t for t in _registry_targets(tree, pkg) if _module_file(root, t) is not None}
            if named:
                todo += sorted(named - set(seen))
            else:
                todo += [f"{pkg}.{c.stem}" for c in sorted(pkg_dir.glob("*.py")) if c.stem != "__init__"]
    return dict(sorted(seen.items()))


def command_closures(root: str | Path | None = None) -> dict[str, list[str]]:
    """CLI name -> the dotted modules its fingerprint covers (what ``code_fingerprints`` hashes)."""
    return {name: list(command_modules(SUBCOMMANDS[name][0], root)) for name in sorted(SUBCOMMANDS)}


def code_fingerprints(commands: Iterable[str] | None = None, root: str | Path | None = None) -> dict[str, str]:
    """SHA-256 per subcommand over its import closure (docstring- and comment-insensitive).

    Args:
        commands: CLI names (``"evaluate"``, ``"make-demo"``); default every ``cephalo.commands.SUBCOMMANDS`` entry.
        root: the package folder (default: this installed package).

    Returns:
        CLI name -> hex digest. A fingerprint changes iff the AST (minus docstrings) of a module
        the command can import changes, or a module enters/leaves its closure.
    """
    names = list(commands) if commands is not None else list(SUBCOMMANDS)
    cache: dict[Path, str] = {}
    out = {}
    for name in names:
        if name not in SUBCOMMANDS:
            raise ValueError(f"unknown cephalo subcommand {name!r}; valid: {sorted(SUBCOMMANDS)}")
        h = hashlib.sha256()
        for mod, f in command_modules(SUBCOMMANDS[name][0], root).items():
            if f not in cache:
                cache[f] = hashlib.sha256(_normalised_source(f).encode()).hexdigest()
            h.update(f"{mod}:{cache[f]}\n".encode())
        out[name] = h.hexdigest()
    return out


def write_code_fingerprints(
    out_dir: str | Path, commands: Iterable[str] | None = None, root: str | Path | None = None
) -> dict[str, bool]:
    """Write ``out_dir/<command>.sha256`` (one line: the digest), only where the content changed.

    An unchanged file keeps its mtime, so Snakemake's mtime trigger fires only for commands whose
    code changed. Returns CLI name -> whether the file was (re)written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = {}
    for name, digest in code_fingerprints(commands, root).items():
        p = out_dir / f"{name}.sha256"
        text = digest + "\n"
        if p.is_file() and p.read_text() == text:
            changed[name] = False
            continue
        with atomic_path(p) as tmp:
            Path(tmp).write_text(text)
        changed[name] = True
    return changed


def _main(argv: list[str] | None = None) -> int:  # pragma: no cover - thin wrapper
    args = list(sys.argv[1:] if argv is None else argv)
    out = args[0] if args else "results/code"
    for name, ch in write_code_fingerprints(out).items():
        print(f"{name}: {'written' if ch else 'unchanged'}")
    return 0
