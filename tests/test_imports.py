"""The package's import graph, read with `ast` from every module of turnspec: no cycles, and no upward imports.

Imports inside functions count like module-level ones (a lazy import that only dodges a cycle is still the cycle),
and so does the package `__init__` that importing a submodule runs. Imports under `if TYPE_CHECKING:` do not: they
never run. Lazy imports are fine for keeping `import turnspec` light, as long as they point down.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "turnspec"

#: (importer prefix, imported prefix, why it is forbidden). A prefix names a module or a package and its modules.
LAYER_RULES = [
    ("turnspec.encoding", "turnspec.analysis.probes", "the masks use the shared affixes, not the analysis's probes"),
    ("turnspec.encoding", "turnspec.spec", "encoding takes a SpecLike; spec imports encoding"),
    ("turnspec.stops", "turnspec.spec", "stops take a SpecLike; spec imports stops"),
    ("turnspec.analysis", "turnspec.spec", "the analysis takes a SpecLike; spec imports the analysis"),
    ("turnspec.constrain", "turnspec.reader", "grammars are built from the analysis, not from the reader"),
    ("turnspec.constrain", "turnspec.server", "the server uses grammars, not the other way"),
    ("turnspec.reader", "turnspec.server", "the server uses readers"),
    ("turnspec.engines", "turnspec.cli", "engines run under the server and the library too"),
    ("turnspec.engines", "turnspec.server", "the server drives engines"),
    ("turnspec.gguf_tokenizer", "turnspec.sources", "the model source builds tokenizers, not the other way"),
    ("turnspec.gguf_header", "turnspec.sources", "the header reader is below the model source"),
    ("turnspec.server.batch", "turnspec.server.worker", "the worker runs batches; both share server.jobs"),
    ("turnspec.hub.remote", "turnspec.hub.fetch", "downloads ask the Hub; both share hub.hashes"),
    ("turnspec.sources", "turnspec.hub", "pulling uses model sources; reading a source never pulls"),
]

#: Nothing but the command line (and `python -m turnspec`) imports the command line.
CLI = "turnspec.cli"
CLI_USERS = ("turnspec.cli", "turnspec.__main__")

#: Upward edges that remain, each with the reason; the test fails when one disappears, so the list only shrinks.
KNOWN_UPWARD = {
    ("turnspec.analysis.calls", "turnspec.reader.call_parse"):
        "the analysis checks the call syntax it learned by parsing with the reader's call parser",
    ("turnspec.analysis.markup", "turnspec.reader.markers"):
        "the markup's token regex is the reader's marker trie",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "TYPE_CHECKING" or
               isinstance(n, ast.Attribute) and n.attr == "TYPE_CHECKING" for n in ast.walk(node.test))


def _targets(module: str, path: Path, node: ast.ImportFrom | ast.Import) -> set[str]:
    """The turnspec modules an import statement runs: the named module (or the package, for a name it defines),
    and every package `__init__` above it."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            stem = ".".join(base + ([node.module] if node.module else []))
        else:
            stem = node.module or ""
        names = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in MODULES else stem for a in node.names]
    out = set()
    for name in names:
        if not name.startswith("turnspec"):
            continue
        parts = name.split(".")
        out |= {".".join(parts[:k]) for k in range(1, len(parts) + 1) if ".".join(parts[:k]) in MODULES}
    # A module's own packages are already being imported when it runs: they are not its imports.
    return {t for t in out if t != module and not module.startswith(t + ".")}


def _imports(module: str, path: Path) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.update(_targets(module, path, child))
            else:
                visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_graph_is_read():
    """A reader that found no imports would pass every check below."""
    assert len(MODULES) > 80
    assert "turnspec.encoding" in GRAPH["turnspec.spec"] and "turnspec.stops" in GRAPH["turnspec.spec"]
    assert "turnspec.analysis" in GRAPH["turnspec.spec"]  # a lazy import (inside ModelSpec.analysis) counts
    assert "turnspec.spec" not in GRAPH["turnspec.stops"]  # the TYPE_CHECKING import does not


def _known(module: str, target: str) -> bool:
    """A known upward import, or a package `__init__` that only it runs."""
    return any(m == module and (k == target or k.startswith(target + ".")) for m, k in KNOWN_UPWARD)


def test_no_import_cycles():
    graph = {m: {t for t in targets if not _known(m, t)} for m, targets in GRAPH.items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles (move the shared piece into a lower module): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_known_upward_imports_still_exist():
    """An entry of KNOWN_UPWARD that no longer exists must be deleted, so the list never hides a new edge."""
    stale = [edge for edge in KNOWN_UPWARD if edge[1] not in GRAPH.get(edge[0], set())]
    assert not stale, f"remove these from KNOWN_UPWARD: {stale}"


#: Rules still broken, each waiting for a named change; strict: the test fails once the rule holds, to move it up.
PENDING_RULES = [
    pytest.param("turnspec.cli.run_cmd", "turnspec.onboard",
                 "`run -v` says what happens to the system prompt: a fact the analysis should hold, not onboarding",
                 id="turnspec.cli.run_cmd->turnspec.onboard"),
]


@pytest.mark.parametrize("importer, imported, why", [
    *(pytest.param(*rule, id=f"{rule[0]}->{rule[1]}") for rule in LAYER_RULES), *PENDING_RULES])
def test_layer_rule(importer: str, imported: str, why: str):
    assert any(_within(m, importer) for m in GRAPH), f"no module {importer}: the rule is stale"
    broken = sorted((m, t) for m, targets in GRAPH.items() if _within(m, importer)
                    for t in targets if _within(t, imported))
    assert not broken, f"{why}: {broken}"


def test_only_the_command_line_imports_the_command_line():
    broken = sorted((m, t) for m, targets in GRAPH.items() if not any(_within(m, u) for u in CLI_USERS)
                    for t in targets if _within(t, CLI))
    assert not broken, f"turnspec.cli is the top layer; move what these need below it: {broken}"


def test_the_checks_catch_a_cycle_and_an_upward_import():
    """The cycle finder and the rules on a synthetic graph: a test that can't fail is a defect."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .spec import ModelSpec\n"
                     "def f():\n    from .spec import ModelSpec\n")
    guarded, lazy = tree.body[1], tree.body[2]
    assert _is_type_checking(guarded)
    assert _targets("turnspec.stops", PACKAGE / "stops.py", lazy.body[0]) == {"turnspec.spec"}


def test_modelspec_is_speclike():
    """The seams take `SpecLike`: the real spec must have every member it names (a bare-template spec too)."""
    import turnspec
    from turnspec.speclike import SpecLike

    spec = turnspec.from_template("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}")
    assert isinstance(spec, SpecLike)
    assert not isinstance(object(), SpecLike)
