"""Imports sit at module level (issue 17): a function-level import is allowed only for a heavy dependency, with a
one-line reason, or under ``if TYPE_CHECKING:``.

Pure ``ast``, no imports of the package: a function-level import hides cycles and import errors until the one call
that reaches it, so only the modules that would make a light path (the CLI's start, a Ray worker, a unit test) pay
for torch, Ray or scikit-learn may be loaded lazily. A package module counts as heavy when its module-level imports
reach a heavy third-party module, directly or through other package modules (computed, not listed by hand).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "mlplatform"

# Third-party modules that cost seconds to import or are needed on one path only (serving a UI, a searcher), and
# the SQL stack, which Ray workers importing one submodule must not pay for (see ``mlplatform/__init__.py``).
HEAVY_THIRD_PARTY = frozenset({"ray", "torch", "sklearn", "skops", "optuna", "uvicorn", "threadpoolctl",
                               "sqlalchemy", "alembic"})
# The CLI imports every noun module to build ``--help``, so there the web stack counts as heavy too: loading it at
# the top of cli/ slowed the start of every command. Nothing imports cli/, so its lazy imports cannot hide a cycle.
CLI_HEAVY_THIRD_PARTY = HEAVY_THIRD_PARTY | {"fastapi", "httpx"}

# Other helpers are editing these files; the lead hoists their imports after merging and then empties this set.
TEMPORARILY_EXEMPT: frozenset[str] = frozenset()
TEMPORARILY_EXEMPT_DIRS: tuple[str, ...] = ()


def _exempt(rel: str) -> bool:
    return rel in TEMPORARILY_EXEMPT or rel.startswith(TEMPORARILY_EXEMPT_DIRS)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The fully qualified modules an import statement may load (``from a import b`` may load ``a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parent = module.split(".")
        parent = parent[: len(parent) - node.level + (1 if is_package else 0)]
        base = ".".join([*parent, base] if base else parent)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _keys(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> set[str]:
    """What a statement binds, as ``module`` or ``module:name``, to spot one repeated inside a function."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = _targets(node, module, is_package)[0]
    return {f"{base}:{alias.name}" for alias in node.names}


def _module_level_statements(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Every import run when the module is imported: outside functions and outside ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    walk(other)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            walk(child)

    walk(_tree(path))
    return found


def _module_level_imports(path: Path, module: str) -> list[str]:
    return [t for node in _module_level_statements(path) for t in _targets(node, module, path.name == "__init__.py")]


def _heavy_modules(third_party: frozenset[str] = HEAVY_THIRD_PARTY) -> set[str]:
    """Package modules whose import loads a heavy third-party module, through any chain of module-level imports."""
    sources = _sources()
    deps: dict[str, set[str]] = {}
    heavy: set[str] = set()
    for module, path in sources.items():
        deps[module] = set()
        for target in _module_level_imports(path, module):
            if target.split(".")[0] in third_party:
                heavy.add(module)
            # importing a.b.c runs a/__init__ and a/b/__init__ first
            deps[module].update(p for p in _parents(target) if p in sources and p != module)
        deps[module].update(p for p in _parents(module)[:-1] if p in sources)
    changed = True
    while changed:
        changed = False
        for module, reached in deps.items():
            if module not in heavy and reached & heavy:
                heavy.add(module)
                changed = True
    return heavy


def _has_reason(lines: list[str], lineno: int) -> bool:
    return "#" in lines[lineno - 1] or lines[lineno - 2].strip().startswith("#")


def _offenders() -> list[str]:
    sources = _sources()
    heavy, cli_heavy = _heavy_modules(), _heavy_modules(CLI_HEAVY_THIRD_PARTY)
    offenders: list[str] = []
    for module, path in sources.items():
        rel = path.relative_to(PACKAGE).as_posix()
        if _exempt(rel):
            continue
        lines = path.read_text().splitlines()
        third_party, heavy_here = (CLI_HEAVY_THIRD_PARTY, cli_heavy) if rel.startswith("cli/") else (
            HEAVY_THIRD_PARTY, heavy)
        is_package = path.name == "__init__.py"
        at_top = {k for node in _module_level_statements(path) for k in _keys(node, module, is_package)}

        def walk(node: ast.AST, in_function: bool, rel: str = rel, lines: list[str] = lines,
                 module: str = module, is_package: bool = is_package, at_top: set[str] = at_top,
                 third_party: frozenset[str] = third_party, heavy_here: set[str] = heavy_here) -> None:
            reason_above = False  # one comment above a run of lazy imports covers the run
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child):
                    continue
                if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                    targets = _targets(child, module, is_package)
                    is_heavy = any(t.split(".")[0] in third_party or t in heavy_here for t in targets)
                    reason_above = reason_above or _has_reason(lines, child.lineno)
                    where = f"platform/mlplatform/{rel}:{child.lineno}"
                    if not is_heavy:
                        offenders.append(f"{where}: function-level import of a light module; move it to the top")
                    elif _keys(child, module, is_package) <= at_top:
                        offenders.append(f"{where}: already imported at module level")
                    elif not reason_above:
                        offenders.append(f"{where}: a lazy import of a heavy module needs a one-line reason comment")
                    continue
                reason_above = False
                walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

        walk(_tree(path), False)
    return offenders


def test_function_level_imports_are_heavy_and_give_a_reason() -> None:
    offenders = _offenders()
    assert not offenders, f"{len(offenders)} function-level imports break the rule:\n" + "\n".join(offenders)


def test_heavy_modules_are_computed() -> None:
    heavy = _heavy_modules()
    # the Ray Train entry point is heavy; the leaf layers stay light, so they never need a lazy import
    assert "mlplatform.training.torch_train" in heavy
    assert not heavy & {"mlplatform.errors", "mlplatform.entities", "mlplatform.settings", "mlplatform.config"}


def test_exempt_files_exist() -> None:
    """An exemption for a file that moved or was deleted would silently exempt nothing; keep the set honest."""
    for rel in TEMPORARILY_EXEMPT:
        assert (PACKAGE / rel).is_file(), rel
    for rel in TEMPORARILY_EXEMPT_DIRS:
        assert (PACKAGE / rel).is_dir(), rel


def test_the_cli_starts_without_the_heavy_stack() -> None:
    """`mlplatform --help` (every command module imported) loads no SQL store, model stack, Ray or web server:
    those load where a command opens them."""
    heavy = ("sqlalchemy", "torch", "ray", "sklearn", "fastapi")
    code = f"import sys, mlplatform.cli.main; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"imported by `mlplatform --help`: {done.stdout.strip()}"
