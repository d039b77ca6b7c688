"""The package's imports run one way: no two modules import each other (directly or round a circle), no stage imports
the daemon, the CLI or another consumer of the stages, config imports no stage, and the stages' protocols and shared
types load without torch. Read from the source with ``ast`` (deferred imports inside functions count as imports; for
what loads with a module, only what runs at import time does), so nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

import voiceos

PACKAGE = Path(voiceos.__file__).resolve().parent

# What puts the stages together: these may import anything; nothing else may import them.
CONSUMERS = (
    "voiceos.__main__",
    "voiceos.bench",
    "voiceos.bench_lm",
    "voiceos.bench_skills",
    "voiceos.chat",
    "voiceos.cli",
    "voiceos.daemon",
    "voiceos.doctor",
    "voiceos.forget",
    "voiceos.lm_server",
    "voiceos.pipeline",
    "voiceos.selfcheck",
    "voiceos.soak",
    "voiceos.wyoming",
)
# The deliberate cycles: none.
ALLOWED_CYCLES: list[list[str]] = []
# The small modules of shared facts that config.py may use (it builds every stage's options, so it imports no stage).
CONFIG_MAY_IMPORT = {"voiceos.errors", "voiceos.emotion", "voiceos.emotion.labels"}
# The seams (protocols) and the small modules of shared types: what a newcomer imports to write an engine or a fake.
# They load without torch (seconds and hundreds of MB): a concrete backend brings it when it is imported.
TORCH_FREE = (
    "voiceos.asr",
    "voiceos.asr.types",
    "voiceos.audio.rate",
    "voiceos.config",
    "voiceos.dialogue.backend",
    "voiceos.dialogue.types",
    "voiceos.text.chunker",
    "voiceos.tts",
)


def module_files() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["voiceos", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def owning_module(name: str) -> str | None:
    """The module ``name`` is, or the one it is defined in (``voiceos.config.Config`` -> ``voiceos.config``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _load_time_nodes(tree: ast.Module) -> list[ast.AST]:
    """The nodes that run when the module is imported: not function bodies, not ``if TYPE_CHECKING:`` blocks."""
    found: list[ast.AST] = []
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def imports_of(module: str, *, load_time: bool = False) -> set[str]:
    """The voiceos modules ``module`` imports, wherever in it the import stands (``load_time``: only those imported
    when it is); third-party top-level packages are kept as ``third_party:NAME``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str | None] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in _load_time_nodes(tree) if load_time else ast.walk(tree):
        if load_time and isinstance(node, ast.Import):
            found.update(f"third_party:{a.name.split('.')[0]}" for a in node.names if not a.name.startswith("voiceos"))
        top = node.module.split(".")[0] if isinstance(node, ast.ImportFrom) and node.module and not node.level else None
        if load_time and top is not None and top != "voiceos":
            found.add(f"third_party:{top}")
        if isinstance(node, ast.Import):
            found.update(owning_module(alias.name) for alias in node.names if alias.name.startswith("voiceos"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source.split(".")[0] != "voiceos":
                continue
            for alias in node.names:  # `from voiceos.x import y`: y may be a module of its own
                full = f"{source}.{alias.name}"
                found.add(full if full in MODULES else owning_module(source))
    found.discard(None)
    found.discard(module)
    return {name for name in found if name is not None}


GRAPH = {module: imports_of(module) for module in MODULES}
LOAD_TIME = {module: imports_of(module, load_time=True) for module in MODULES}


def loaded_with(module: str) -> set[str]:
    """Everything importing ``module`` loads: its packages' ``__init__``, its load-time imports, theirs, and so on."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name.startswith("third_party:"):
            continue
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in MODULES)
        todo.extend(LOAD_TIME[name])
    return seen


def is_consumer(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in CONSUMERS)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_check_finds_a_circle_and_walks_the_whole_package():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert {"voiceos.config", "voiceos.daemon.assistant", "voiceos.dialogue.lm"} <= set(GRAPH)
    assert "voiceos.config" in GRAPH["voiceos.pipeline"]  # imports are read, including the package's own
    # deferred imports count for cycles, but not for what loads with a module; torch is seen where it is loaded
    assert "voiceos.dialogue.lm" in GRAPH["voiceos.dialogue.backend"]
    assert "voiceos.dialogue.lm" not in loaded_with("voiceos.dialogue.backend")
    assert "third_party:torch" in loaded_with("voiceos.dialogue.lm")


def test_no_two_modules_import_each_other():
    assert cycles(GRAPH) == ALLOWED_CYCLES


def test_no_stage_imports_the_daemon_the_cli_or_another_consumer():
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if not is_consumer(module)
        for target in targets
        if is_consumer(target)
    )
    assert upward == []


def test_config_imports_no_stage():
    assert GRAPH["voiceos.config"] <= CONFIG_MAY_IMPORT


def test_the_protocols_and_shared_types_load_without_torch():
    heavy = {
        module: sorted(loaded_with(module) & {"third_party:torch", "third_party:transformers"}) for module in TORCH_FREE
    }
    assert {module: found for module, found in heavy.items() if found} == {}
