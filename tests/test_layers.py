"""The import graph only points down: agents <- esc_env <- policies <- esc_cli.

Every module's imports are read with ``ast`` (imports inside functions and ``TYPE_CHECKING``
blocks included, relative imports resolved), so an upward import anywhere in a layer fails
here, not only one made at import time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: the layers, lowest first; a module may import its own layer and the ones before it
LAYERS = ("agents", "esc_env", "policies", "esc_cli")

#: deprecated aliases that forward old names upward, lazily (module ``__getattr__``), for one
#: release: they may import upward inside functions, never at module level
SHIMS = {"esc_env/cli.py", "esc_env/evaluation/policies.py"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path, root: Path, top_level_only: bool = False) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import statement of a file, wherever it sits
    (with ``top_level_only``: only the statements of the module body itself)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out: list[tuple[int, str]] = []
    for node in (tree.body if top_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return out


def upward_imports(root: Path, shims: set[str] = frozenset()) -> list[str]:
    """Every import of a higher layer, as ``"file:line imports module"``."""
    bad = []
    for rank, layer in enumerate(LAYERS):
        above = LAYERS[rank + 1:]
        for path in sorted((root / layer).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for line, name in imported_modules(path, root, top_level_only=rel in shims):
                top = name.split(".")[0]
                if top in above:
                    bad.append(f"{rel}:{line} imports {name} ({layer} may not import {', '.join(above)})")
    return bad


def test_relative_imports_are_resolved(tmp_path):
    pkg = tmp_path / "esc_env" / "evaluation"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import metrics\n")
    (pkg / "x.py").write_text("def f():\n    from ..build import y\n    from .metrics import z\n    import policies.baselines\n")
    assert imported_modules(pkg / "x.py", tmp_path) == [(2, "esc_env.build"), (3, "esc_env.evaluation.metrics"),
                                                        (4, "policies.baselines")]
    assert imported_modules(pkg / "__init__.py", tmp_path) == [(1, "esc_env.evaluation")]


def test_an_upward_import_inside_a_function_is_found(tmp_path):
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "agents" / "a.py").write_text("import numpy\n\n\ndef load():\n    from esc_env.datasets import load_esconv\n")
    (tmp_path / "policies" / "p.py").write_text("from esc_env.evaluation.metrics import mean_ci\n")  # down: allowed
    (tmp_path / "esc_env" / "shim.py").write_text("def __getattr__(name):\n    from esc_cli import main\n")
    (tmp_path / "esc_env" / "eager.py").write_text("from policies.baselines import RandomPolicy\n")
    found = upward_imports(tmp_path)
    assert found == ["agents/a.py:5 imports esc_env.datasets (agents may not import esc_env, policies, esc_cli)",
                     "esc_env/eager.py:1 imports policies.baselines (esc_env may not import policies, esc_cli)",
                     "esc_env/shim.py:2 imports esc_cli (esc_env may not import policies, esc_cli)"]
    # a shim may import upward lazily, not at module level
    assert upward_imports(tmp_path, shims={"esc_env/shim.py", "esc_env/eager.py"}) == found[:2]


def test_no_module_imports_a_higher_layer():
    bad = upward_imports(REPO, SHIMS)
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_shims_exist():
    for rel in SHIMS:
        assert (REPO / rel).is_file(), rel


@pytest.mark.parametrize("module, forbidden", [
    ("agents.personas", ("esc_env", "policies", "esc_cli", "gymnasium")),
    ("agents.datasets", ("esc_env", "policies", "esc_cli", "gymnasium")),
    ("esc_env", ("policies", "esc_cli")),
    ("esc_env.datasets", ("policies", "esc_cli")),
    ("esc_env.cli", ("policies", "esc_cli")),
    ("esc_env.evaluation.policies", ("policies", "esc_cli")),
    ("esc_env.evaluation.interactive", ("policies", "esc_cli")),
    ("esc_env.evaluation.reference", ("policies", "esc_cli")),
    ("policies.rlff.evaluate", ("esc_cli",)),
])
def test_importing_a_layer_loads_nothing_above_it(module, forbidden):
    """What ``import X`` puts in ``sys.modules``, in a fresh interpreter."""
    code = (f"import sys, {module}\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({forbidden!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"import {module} loaded {out.stdout.strip()}"
