"""The import rules of docs/architecture.md, checked on the source: module-level imports point
down the layers; the few imports that reach up at call time are listed here, each with its
reason, so that a new one is a decision rather than an accident."""

from __future__ import annotations

import ast
from pathlib import Path

import encore

SRC = Path(encore.__file__).parent

#: Higher layers may import lower ones at module level, never the reverse.
LAYERS: dict[str, int] = {
    "cli": 5, "commands": 5, "sim": 5,  # entry points and the simulated pilot
    "web": 4, "jobs": 4,  # the two ways in: HTTP requests and queued jobs
    "services": 3,  # the use cases
    "diffusion": 2, "similarity": 2, "corpus": 2, "taste": 2, "feedback": 2, "store": 2,
    "audio": 1,
    "errors": 0, "config": 0, "config_docs": 0, "logs": 0, "models": 0, "units": 0,
}

#: Function-local imports that reach up a layer: (importing module, imported package) -> why.
UPWARD_AT_CALL_TIME: dict[tuple[str, str], str] = {
    ("encore.services.context", "jobs"): "the context builds the queues and registers the tasks "
                                         "(jobs.tasks imports the services: a real cycle)",
    ("encore.services.music", "web"): "web.ratelimit.Limit, a pure value type",
    ("encore.config", "store"): "the pool size for a database URL",
}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "encore" and len(parts) > 1 else None


def imports(path: Path) -> list[tuple[str, bool]]:
    """``(imported encore package, at module level?)`` for every import in ``path``."""
    tree = ast.parse(path.read_text())
    deferred: set[int] = set()
    for node in ast.walk(tree):
        is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        if is_function or (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)):
            deferred.update(id(n) for n in ast.walk(node) if n is not node)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "encore" else [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(p, id(node) not in deferred) for n in names if (p := _package(n)) is not None]
    return found


def modules() -> list[tuple[str, str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        package = rel.parts[1] if len(rel.parts) > 2 else rel.parts[1]
        out.append((".".join(rel.parts).removesuffix(".__init__"), package, path))
    return out


def test_every_package_has_a_layer() -> None:
    packages = {package for _, package, _ in modules()} - {"__init__"}
    assert packages <= set(LAYERS), sorted(packages - set(LAYERS))


def test_module_level_imports_point_down() -> None:
    upward = [
        f"{module} imports encore.{target}"
        for module, package, path in modules() if package in LAYERS
        for target, module_level in imports(path)
        if module_level and target in LAYERS and LAYERS[target] > LAYERS[package]
    ]
    assert not upward, upward


def test_imports_that_reach_up_at_call_time_are_the_listed_ones() -> None:
    upward = {
        (module, target)
        for module, package, path in modules() if package in LAYERS
        for target, module_level in imports(path)
        if not module_level and target in LAYERS and LAYERS[target] > LAYERS[package]
    }
    assert upward == set(UPWARD_AT_CALL_TIME), (
        f"new: {sorted(upward - set(UPWARD_AT_CALL_TIME))}, gone: {sorted(set(UPWARD_AT_CALL_TIME) - upward)}"
    )
