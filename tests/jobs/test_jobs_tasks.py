"""The job kinds are declared in one place (``encore.jobs.tasks``) and wired explicitly."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import encore.services
from encore.errors import ConfigurationError
from encore.jobs import registry
from encore.jobs.tasks import TASKS, register_tasks


def enqueued_kinds() -> dict[str, str]:
    """``{kind: module}`` for every ``enqueue_job(session, KIND, ...)`` in the services."""
    kinds: dict[str, str] = {}
    folder = Path(encore.services.__file__).parent
    for path in sorted(folder.glob("*.py")):
        module = f"encore.services.{path.stem}"
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "enqueue_job"):
                continue
            arg = node.args[1]
            if isinstance(arg, ast.Constant):
                kinds[arg.value] = module
            else:  # a module constant such as JOB_KIND
                assert isinstance(arg, ast.Name), ast.dump(arg)
                kinds[getattr(importlib.import_module(module), arg.id)] = module
    return kinds


def test_every_kind_a_service_enqueues_has_a_task() -> None:
    kinds = enqueued_kinds()
    assert {"embed_song", "generate_clip", "finetune"} <= set(kinds)
    missing = {kind: module for kind, module in kinds.items() if kind not in TASKS}
    assert not missing, f"enqueued but no handler in encore.jobs.tasks: {missing}"


def test_register_tasks_registers_them_all_and_is_idempotent() -> None:
    assert register_tasks() == sorted(TASKS)
    assert register_tasks() == sorted(TASKS)
    for kind, handler in TASKS.items():
        assert registry.get_handler(kind) is handler


def test_register_tasks_refuses_to_replace_another_handler() -> None:
    def impostor(ctx) -> None:
        raise AssertionError("never runs")

    registry.register_handler("embed_song", impostor, replace=True)
    try:
        with pytest.raises(ConfigurationError, match="embed_song"):
            register_tasks()
    finally:
        registry.register_handler("embed_song", TASKS["embed_song"], replace=True)


def test_a_handler_module_that_does_not_exist_is_an_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        registry.import_modules(["encore.jobs.no_such_handlers"])
