"""Dependencies point down: no import cycle between subpackages, no upward edge.

Every ``import atomlens.<pkg>...`` in ``src/atomlens`` (module level AND inside
functions: a lazy import is still a dependency) is an edge between subpackages; the
edges must respect :data:`LAYERS` (a package may import only packages on lower layers or
its own layer), and the graph must have no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "atomlens"

#: Bottom to top; a package may import packages of its own layer or below.
LAYERS: list[set[str]] = [
    {"errors", "__init__"},
    {"viz", "geometry"},
    {"io"},
    {"simulate"},
    {"train"},
    {"segment"},
    {"atoms"},
    {"chem", "descriptors"},
    {"models"},
    {"latent", "pfm", "corrections"},
    {"workflows"},
    {"live"},
    {"pipeline"},
    {"demo"},
    {"_napari"},
    {"cli"},
    {"__main__"},
]


def _package(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


def import_edges() -> dict[tuple[str, str], set[str]]:
    """``{(from_pkg, to_pkg): {files}}`` over every import in the source tree."""
    edges: dict[tuple[str, str], set[str]] = {}
    for path in SRC.rglob("*.py"):
        src = _package(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
                if node.module == "atomlens":  # from atomlens import chem
                    names = [f"atomlens.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] != "atomlens" or len(parts) < 2:
                    continue
                dst = (
                    parts[1]
                    if (SRC / parts[1]).exists() or (SRC / f"{parts[1]}.py").exists()
                    else "__init__"
                )
                if dst != src:
                    edges.setdefault((src, dst), set()).add(str(path.relative_to(SRC)))
    return edges


def _layer(pkg: str) -> int:
    for i, layer in enumerate(LAYERS):
        if pkg in layer:
            return i
    raise AssertionError(f"atomlens.{pkg} has no layer in tests/test_import_graph.py: add it")


def test_every_package_has_a_layer() -> None:
    pkgs = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    pkgs |= {p.stem for p in SRC.glob("*.py")}
    for pkg in pkgs:
        _layer(pkg)


def test_no_upward_edges() -> None:
    bad = [
        f"{src} -> {dst} in {sorted(files)}"
        for (src, dst), files in sorted(import_edges().items())
        if _layer(dst) > _layer(src)
    ]
    assert not bad, "upward imports (move the code down or the import up):\n" + "\n".join(bad)


def test_no_cycle_between_subpackages() -> None:
    graph = nx.DiGraph(list(import_edges()))
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles between subpackages: {cycles}"


def _fake_tree(root: Path, files: dict[str, str]) -> Path:
    fake = root / "atomlens"
    for rel, text in files.items():
        path = fake / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    return fake


def test_detects_a_cycle(tmp_path, monkeypatch) -> None:
    """The checker itself: a planted models -> workflows import is reported."""
    import tests.test_import_graph as me

    fake = _fake_tree(
        tmp_path,
        {
            "models/x.py": "from atomlens.workflows import latent\n",
            "workflows/y.py": "import atomlens.models\n",
        },
    )
    monkeypatch.setattr(me, "SRC", fake)
    with pytest.raises(AssertionError, match="models -> workflows"):
        me.test_no_upward_edges()
    with pytest.raises(AssertionError, match="cycles"):
        me.test_no_cycle_between_subpackages()


def test_detects_lazy_upward_imports_without_a_cycle(tmp_path, monkeypatch) -> None:
    """An import inside a function is an edge too (segment -> atoms, io -> chem: the two
    that were tolerated until they moved), and ``from atomlens import pkg`` counts;
    downward imports alone pass."""
    import tests.test_import_graph as me

    down = {
        "atoms/a.py": "from atomlens.segment.train import Validator\n",
        "workflows/load.py": "from atomlens import chem\nimport atomlens.io.readers\n",
        "chem/c.py": "",
    }
    monkeypatch.setattr(me, "SRC", _fake_tree(tmp_path / "ok", down))
    me.test_no_upward_edges()
    me.test_no_cycle_between_subpackages()
    up = {
        **down,
        "segment/train.py": "def f():\n    from atomlens.atoms.evaluate import v\n",
        "io/readers.py": "def g():\n    from atomlens import chem\n",
    }
    monkeypatch.setattr(me, "SRC", _fake_tree(tmp_path / "bad", up))
    with pytest.raises(AssertionError, match=r"segment -> atoms in \['segment/train.py'\]"):
        me.test_no_upward_edges()
    with pytest.raises(AssertionError, match=r"io -> chem in \['io/readers.py'\]"):
        me.test_no_upward_edges()


def test_no_backend_switch_at_import() -> None:
    """Library code never calls ``matplotlib.use`` at module level."""
    bad = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            call = node.value if isinstance(node, ast.Expr) else None
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "use"
                and getattr(call.func.value, "id", "") in ("matplotlib", "mpl")
            ):
                bad.append(str(path.relative_to(SRC)))
    assert not bad, f"matplotlib.use(...) at import time in {bad}"
