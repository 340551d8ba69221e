"""The layer rule, checked on the source: every import inside the package points down the layers, and no two
modules import each other (directly or around a loop). Imports inside functions count: a lazy import is still a
dependency.

    core < hw < train < runs < report < cli
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cpugrpo"
LAYERS = ("core", "hw", "train", "runs", "report", "cli")


def module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE) -> set[str]:
    """Every cpugrpo module ``path`` imports (absolute or relative, at any depth of the file)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == root.name}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root.name:
                continue
            # "from pkg import mod" imports the module (or subpackage) pkg.mod when it exists
            def exists(dotted):
                path = root.parent / Path(*dotted.split("."))
                return path.with_suffix(".py").exists() or (path / "__init__.py").exists()

            subs = [f"{target}.{a.name}" for a in node.names if exists(f"{target}.{a.name}")]
            out |= set(subs) or {target}
    return out - {name}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, root) for p in sorted(root.rglob("*.py"))}


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in g.items():
        lm = layer_of(mod)
        for dep in deps:
            ld = layer_of(dep)
            if lm is None or ld is None:
                if lm is not None and dep.count(".") == 0:  # a layer importing the bare package: harmless
                    continue
                if lm is None and mod.count(".") == 1:  # cpugrpo/__init__ and __main__ may import anything
                    continue
            if lm is not None and ld is not None and ld > lm:
                bad.append(f"{mod} ({LAYERS[lm]}) imports {dep} ({LAYERS[ld]}): imports must point down "
                           f"{' < '.join(LAYERS)}")
    return bad


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_is_in_a_layer():
    stray = [m for m in graph() if layer_of(m) is None and m not in ("cpugrpo",)]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


def test_imports_point_down():
    assert not upward_imports(graph()), "\n".join(upward_imports(graph()))


def test_no_cycles():
    assert not cycles(graph()), cycles(graph())


@pytest.fixture
def fake_package(tmp_path):
    root = tmp_path / "cpugrpo"
    for layer in ("core", "train", "report"):
        (root / layer).mkdir(parents=True)
        (root / layer / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "core" / "config.py").write_text("X = 1\n")
    (root / "train" / "trainer.py").write_text("from ..core.config import X\n")
    (root / "report" / "page.py").write_text("from ..train import trainer\n")
    return root


def test_checker_catches_an_upward_import(fake_package):
    assert not upward_imports(graph(fake_package)) and not cycles(graph(fake_package))
    (fake_package / "train" / "trainer.py").write_text("from ..core.config import X\n\n\ndef f():\n"
                                                        "    from ..report.page import Y\n")
    bad = upward_imports(graph(fake_package))
    assert len(bad) == 1 and "cpugrpo.train.trainer (train) imports cpugrpo.report.page (report)" in bad[0]
    assert cycles(graph(fake_package)) == [["cpugrpo.report.page", "cpugrpo.train.trainer"]]


def test_checker_catches_an_upward_import_of_a_whole_subpackage(fake_package):
    (fake_package / "train" / "trainer.py").write_text("from .. import report\n")
    bad = upward_imports(graph(fake_package))
    assert len(bad) == 1 and "imports cpugrpo.report (report)" in bad[0]


def test_no_module_is_imported_by_name_at_run_time():
    """importlib / __import__ would hide a dependency from the checks above."""
    hits = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
            if "import_module(" in p.read_text(encoding="utf-8") or "__import__(" in p.read_text(encoding="utf-8")]
    assert not hits, hits


def test_checker_catches_a_cycle_inside_a_layer(fake_package):
    (fake_package / "train" / "a.py").write_text("from . import b\n")
    (fake_package / "train" / "b.py").write_text("from .a import thing\n")
    assert cycles(graph(fake_package)) == [["cpugrpo.train.a", "cpugrpo.train.b"]]
