"""The import rules of the layout, checked by reading the source with `ast` (no project module is imported).

    tasks/core <- engine <- tasks/{audio, script, store}
               <- tasks/{voices, render, output, qa, sweep, review, book_import} <- flows

Each package imports only what ALLOWED lists for it (tasks/audio and tasks/store not even engine); only `flows/`
imports Prefect; no function-level import of a project module; no import cycles; `tasks/` holds subpackages only.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROJECT_PACKAGES = ("tasks", "engine", "flows")
PREFECT = ("prefect", "prefect_dask")
LEVEL_3 = ("tasks.voices", "tasks.render", "tasks.output", "tasks.qa", "tasks.sweep", "tasks.review",
           "tasks.book_import")
ALLOWED = {
    "tasks.core": ("tasks.core",),
    "engine": ("tasks.core", "engine"),
    "tasks.audio": ("tasks.core", "tasks.audio"),
    "tasks.store": ("tasks.core", "tasks.store"),
    "tasks.script": ("tasks.core", "engine", "tasks.audio", "tasks.script"),
    **{level_3: ("tasks.core", "engine", "tasks.audio", "tasks.script", "tasks.store", *LEVEL_3)
       for level_3 in LEVEL_3},
    "flows": PROJECT_PACKAGES,
}


def within(module: str, packages) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_statements(node: ast.AST, in_function: bool = False):
    """(statement, whether it runs inside a function) for every import in the tree, however deeply nested."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        yield from import_statements(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))


def imported_modules(statement, importer: str, is_package: bool, modules: set[str]) -> list[str]:
    """The modules the statement imports: project ones as a module that exists under the root, others as written."""
    if isinstance(statement, ast.Import):
        names = [alias.name for alias in statement.names]
    else:
        base = statement.module or ""
        if statement.level:
            package = importer.split(".") if is_package else importer.split(".")[:-1]
            base = ".".join(package[:max(0, len(package) - statement.level + 1)] + ([base] if base else []))
        # `from X import name` imports module X.name where that file exists, else a name defined in X.
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in statement.names]
    # `import tasks.gone.x` still runs what exists of it: resolve to the longest prefix that is a project module.
    resolved = {}  # ordered, and one entry for `from X import a, b` when both are names in X
    for name in names:
        prefixes = [".".join(name.split(".")[:n]) for n in range(name.count(".") + 1, 0, -1)]
        resolved[next((prefix for prefix in prefixes if prefix in modules), name)] = None
    return list(resolved)


def import_cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, and modules importing themselves (Tarjan)."""
    index, lowlink, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(module):
        index[module] = lowlink[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                lowlink[module] = min(lowlink[module], lowlink[imported])
            elif imported in on_stack:
                lowlink[module] = min(lowlink[module], index[imported])
        if lowlink[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1 or module in graph[module]:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def deferred_flow(module: str, imported: str) -> bool:
    """The CLI may import a flow inside the command that runs it: flows import Prefect, seconds of start-up
    that `voicebatch history` or `--help` should not pay; for the same reason the console script imports the
    CLI only once no warm process took the command (flows/launch.py). The exceptions to the function-level
    rule."""
    return ((within(module, ("flows.cli",)) and within(imported, ("flows",)) and not within(imported, ("flows.cli",)))
            or (module == "flows.launch" and imported == "flows.cli"))


def import_rule_violations(root: Path) -> list[str]:
    """Every breach of the rules above in the .py files under root/{tasks, engine, flows}, one line each."""
    paths = sorted(path for package in PROJECT_PACKAGES for path in (root / package).rglob("*.py"))
    modules = {module_name(path, root) for path in paths}
    violations, graph = [], {module: {} for module in modules}  # graph: importer -> {imported: "file:line"}
    for path in paths:
        module, relative = module_name(path, root), path.relative_to(root).as_posix()
        layer = max((package for package in ALLOWED if within(module, (package,))), key=len, default=None)
        if path.parent == root / "tasks" and path.name != "__init__.py":
            violations.append(f"{relative}: a module directly in tasks/, which holds subpackages by stage only")
        elif layer is None and module != "tasks":
            violations.append(f"{relative}: {module} is not in any layer")
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
        except SyntaxError as error:
            violations.append(f"{relative}:{error.lineno} does not parse: {error.msg}")
            continue
        for statement, in_function in import_statements(tree):
            for imported in imported_modules(statement, module, path.name == "__init__.py", modules):
                where = f"{relative}:{statement.lineno} imports {imported}"
                if imported.partition(".")[0] in PREFECT and not within(module, ("flows",)):
                    violations.append(f"{where}: only flows/ may import Prefect")
                if imported not in modules:
                    continue
                if in_function and not deferred_flow(module, imported):
                    violations.append(f"{where}: function-level import of a project module")
                else:
                    graph[module].setdefault(imported, f"{relative}:{statement.lineno}")
                if layer and not within(imported, ALLOWED[layer]):
                    violations.append(f"{where}: {layer} may import only {', '.join(ALLOWED[layer])}")
    for cycle in import_cycles(graph):
        edges = [f"{graph[m][i]} imports {i}" for m in cycle for i in sorted(graph[m]) if i in cycle]
        violations.append(f"import cycle among {', '.join(cycle)}: {'; '.join(edges)}")
    return violations


def test_the_project_follows_the_import_rules():
    violations = import_rule_violations(Path(__file__).resolve().parent.parent)
    assert not violations, f"{len(violations)} import rule violations:\n" + "\n".join(violations)


CLEAN_TREE = {
    "tasks/__init__.py": "",
    "tasks/core/__init__.py": "",
    "tasks/core/errors.py": "class VoicebatchError(Exception):\n    pass\n",
    "tasks/audio/__init__.py": "from .wav import load\n",
    "tasks/audio/wav.py": "from tasks.core.errors import VoicebatchError\n\n\ndef load():\n    import torch\n",
    "engine/__init__.py": "from engine.base import Engine\n",
    "engine/base.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tasks.core import errors\n",
    "flows/__init__.py": "",
    "flows/render.py": "import prefect\nfrom prefect_dask import DaskTaskRunner\nfrom engine import base\n"
                       "from tasks.audio import wav\n\n\ndef run():\n    import whisper\n",
}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    return root


def test_a_clean_tree_passes_deferred_third_party_imports_included(tmp_path):
    assert import_rule_violations(write_tree(tmp_path, CLEAN_TREE)) == []


@pytest.mark.parametrize("added, expected", [
    ({"tasks/audio/gain.py": "from engine import base\n"},
     "tasks/audio/gain.py:1 imports engine.base: tasks.audio may import only tasks.core, tasks.audio"),
    ({"tasks/audio/gain.py": "from ...engine.base import Engine\n"},  # relative, resolved against tasks.audio
     "tasks/audio/gain.py:1 imports engine.base: tasks.audio may import only tasks.core, tasks.audio"),
    ({"tasks/audio/play.py": "def play():\n    from prefect.tasks import task\n"},
     "tasks/audio/play.py:2 imports prefect.tasks: only flows/ may import Prefect"),
    ({"engine/device.py": "def pick():\n    from tasks.core.errors import VoicebatchError\n"},
     "engine/device.py:2 imports tasks.core.errors: function-level import of a project module"),
    ({"tasks/audio/a.py": "from . import b\n",
      "tasks/audio/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tasks.audio import a\n"},
     "import cycle among tasks.audio.a, tasks.audio.b: tasks/audio/a.py:1 imports tasks.audio.b; "
     "tasks/audio/b.py:3 imports tasks.audio.a"),
    ({"tasks/helpers.py": ""}, "tasks/helpers.py: a module directly in tasks/"),
    ({"tasks/extras/misc.py": ""}, "tasks/extras/misc.py: tasks.extras.misc is not in any layer"),
], ids=["upward", "relative-upward", "prefect-in-tasks", "function-level", "cycle", "flat-in-tasks", "no-layer"])
def test_the_checker_reports_each_kind_of_violation(tmp_path, added, expected):
    violations = import_rule_violations(write_tree(tmp_path, {**CLEAN_TREE, **added}))
    assert len(violations) == 1 and violations[0].startswith(expected), violations
