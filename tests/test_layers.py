"""The house's rules, read from the source: imports run one way (pipeline < extractors < models < flows), no
module imports itself back through others, and the command line never imports Prefect or a model."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import ROOT

LAYERS = ("pipeline", "extractors", "models", "flows")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in LAYERS:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The first-party module an import of `name` loads (a package's __init__, or a module in it)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in MODULES:
            return ".".join(parts[:i])
    return None


def imports_of(module: str) -> set[str]:
    """Every first-party module `module` imports, at any depth of its code, with the packages above them
    (importing `a.b.c` runs `a/__init__` and `a/b/__init__` too)."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package and node.level == 1 else base[: len(base) - node.level + is_package]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name)
            if target is None:
                continue
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                found.add(".".join(parts[:i]))
    found.discard(module)
    return {m for m in found if m in MODULES}


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_import_goes_down_or_sideways():
    rank = {pkg: i for i, pkg in enumerate(LAYERS)}
    upward = sorted(f"{m} imports {d}" for m, deps in GRAPH.items() for d in deps
                    if rank[d.split(".")[0]] > rank[m.split(".")[0]])
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:           # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_zoo_models_build_only_on_the_model_interface_and_nn():
    allowed = ("models", "models.base", "models.tasks", "models.metrics", "models.zoo")
    wrong = sorted(f"{m} imports {d}" for m, deps in GRAPH.items() if m.startswith("models.zoo.")
                   for d in deps if d.startswith(("models", "extractors", "flows"))
                   and d not in allowed and not d.startswith("models.nn"))
    assert not wrong, "\n".join(wrong)


def test_the_command_line_starts_without_torch_prefect_or_models():
    code = ("import sys; from flows.cli import build_parser; build_parser(); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'prefect', 'transformers', 'pandas'}"
            " | {m for m in sys.modules if m.startswith(('models.zoo', 'extractors.', 'models.training'))}); "
            "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_import_walker_finds_known_imports():
    """The walker is not vacuous: it finds the imports it must find."""
    assert "extractors.registry" in GRAPH["extractors.runner"]
    assert "pipeline" in GRAPH["pipeline.cache"] or "pipeline.system" in GRAPH["pipeline.cache"]
    assert {"models", "models.nn", "models.nn.masking"} <= GRAPH["models.nn.layers"]
