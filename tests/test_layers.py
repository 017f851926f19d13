"""The package's imports go one way: no cycles, and no import against the layer order that
docs/architecture.md declares (imports inside functions count too)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lmbench"


def declared_layers() -> list[list[str]]:
    """The ```layers block of docs/architecture.md: one layer per line, lowest first."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```layers block"
    return [line.split() for line in block.group(1).splitlines() if line.strip()]


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """lmbench modules that ``name`` imports anywhere in its file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".")[: -node.level + (path.name == "__init__.py") or None]
                base = ".".join([*package, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def layer_of(name: str, layers: list[list[str]]) -> int:
    best, rank = -1, None
    for i, layer in enumerate(layers):
        for prefix in layer:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"{name} is in no layer of docs/architecture.md"
    return rank


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer():
    layers = declared_layers()
    for name in modules():
        layer_of(name, layers)


def test_no_import_goes_against_the_layer_order():
    layers = declared_layers()
    wrong = [f"{src} (layer {layer_of(src, layers)}) imports {dst} (layer {layer_of(dst, layers)})"
             for src, deps in graph().items() for dst in deps
             if dst != "lmbench" and layer_of(dst, layers) > layer_of(src, layers)]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    edges = graph()
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in edges[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert not cycles, cycles


def test_the_guard_sees_a_violation(tmp_path, monkeypatch):
    """The checks can fail: a data module importing the tuning layer is reported."""
    layers = declared_layers()
    assert layer_of("lmbench.tuning.trials", layers) > layer_of("lmbench.data.sources", layers)
    fake = tmp_path / "mod.py"
    fake.write_text("def f():\n    from lmbench.tuning import trials\n")
    known = {**modules(), "lmbench.data.fake": fake}
    assert "lmbench.tuning.trials" in imported("lmbench.data.fake", fake, known)
