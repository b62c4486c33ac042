"""The package's import graph is acyclic (imports inside functions count), no module
imports a private name of another, and no module is over 700 lines (issue 9).

Found from the source (``ast``), so nothing is imported: an edge ``a -> b`` for every
``import`` or ``from ... import`` in ``a`` (at any depth, except under ``if TYPE_CHECKING:``)
that names ``b`` or a name of ``b``; a package's ``__init__`` importing its own submodules
is a re-export, not a dependency.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sde_bias"
MAX_LINES = 700


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _type_checking_nodes(tree) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            t = node.test
            name = t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else ""
            if name.lstrip("_") == "TYPE_CHECKING":
                skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _imports(name: str, path: Path, mods: dict[str, Path]):
    """``(target module, imported name or None)`` of every import of module ``name``."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module
            for a in node.names:
                full = f"{mod}.{a.name}"
                yield (full, None) if full in mods else (mod, a.name)


def _graph():
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for m, p in mods.items():
        for target, imported in _imports(m, p, mods):
            if target not in mods or target == m:
                continue
            if imported and imported.startswith("_") and not imported.startswith("__"):
                private.append(f"{m} imports {target}.{imported}")
            if mods[m].name == "__init__.py" and target.startswith(m + "."):
                continue  # a package re-exporting its submodules
            edges[m].add(target)
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module
    (Tarjan's algorithm)."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
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
                comps.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return comps


def test_the_checker_finds_a_cycle_and_no_false_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle():
    edges, _ = _graph()
    assert sum(map(len, edges.values())) > 50  # the graph was read
    assert _cycles(edges) == []


def test_no_private_name_imported_across_modules():
    _, private = _graph()
    assert private == []


def test_configuration_leaves_import_nothing_above_them():
    """errors and the schema blocks sit at the bottom of the configuration layer; only the
    join (sde_bias.scenario), the command line (cli and the modules behind its subcommands) and the
    public API import the join."""
    edges, _ = _graph()
    assert edges["sde_bias.errors"] == set()
    assert edges["sde_bias._numbers"] <= {"sde_bias.errors"}
    assert edges["sde_bias.config_base"] <= {"sde_bias.errors"}
    importers = sorted(m for m, targets in edges.items() if "sde_bias.scenario" in targets)
    assert set(importers) <= {"sde_bias.cli", "sde_bias.design_cli", "sde_bias.sweep_driver", "sde_bias.sweep_dask", "sde_bias._api", "sde_bias.report.assemble"}, importers


def test_no_module_over_700_lines():
    long = {str(p.relative_to(ROOT)) for p in _modules().values() if p.read_text().count("\n") > MAX_LINES}
    assert long == set(), long
