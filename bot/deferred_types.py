"""Load aiogram's Telegram types without building all of their pydantic validators at import.

Why: ``aiogram.types`` defines ~300 Bot API types as pydantic models with
``defer_build=True`` and then calls ``model_rebuild()`` on every one of them at the end of
its ``__init__`` (to resolve forward references), which builds every validator and
serializer at once: ~130 MB of ``serve``'s ~190 MB with the bot on, whatever the fleet size
(the target is under 150 MB at 500 sessions). The console uses a few dozen of those types.

What this does instead: for the duration of that one import, ``model_rebuild`` on an aiogram
class does nothing but keep the namespace aiogram passes (every type by name); the classes
keep pydantic's own lazy placeholders. Then every aiogram model class gets that namespace as
its parent namespace, which pydantic consults when it builds a class on first use (its
placeholder calls ``model_rebuild``) for the class and for every class nested in it, so the
forward references resolve as they would have at import. The cost of a type moves to its
first use, and a type never used is never built.

Tied to the pinned versions (aiogram 3.31, pydantic 2.13): ``tests/test_deferred_types.py``
fails if an upgrade stops aiogram types from being deferred or leaves one that cannot be
built from the recorded namespace.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pydantic

_AIOGRAM_TYPES = "aiogram.types"


def import_aiogram_types_deferred() -> bool:
    """Import ``aiogram.types`` with its model builds deferred; False if it was already imported.

    Must run before anything imports aiogram (``bot/__init__.py`` calls it): once
    ``aiogram.types`` is loaded the builds have happened and there is nothing to save.
    """
    if _AIOGRAM_TYPES in sys.modules:
        return False
    original = pydantic.BaseModel.__dict__["model_rebuild"]
    build = original.__func__
    namespaces: list[dict[str, Any]] = []

    def keep_namespace(
        cls: type[pydantic.BaseModel],
        *,
        force: bool = False,
        raise_errors: bool = True,
        _parent_namespace_depth: int = 2,
        _types_namespace: dict[str, Any] | None = None,
    ) -> bool | None:
        if _types_namespace is not None and not force and _is_aiogram(cls):
            if not namespaces:
                namespaces.append(_types_namespace)  # the same dict for every type
            return None
        return build(  # type: ignore[no-any-return]
            cls,
            force=force,
            raise_errors=raise_errors,
            _parent_namespace_depth=_parent_namespace_depth + 1,
            _types_namespace=_types_namespace,
        )

    pydantic.BaseModel.model_rebuild = classmethod(keep_namespace)  # type: ignore[method-assign,assignment]
    try:
        importlib.import_module(_AIOGRAM_TYPES)
    finally:
        pydantic.BaseModel.model_rebuild = original  # type: ignore[method-assign]
    if namespaces:
        for model in _subclasses(pydantic.BaseModel):
            if _is_aiogram(model):
                # Complete ones too: generic parametrisations made later inherit it
                # (``Response[list[Update]]`` for ``getUpdates``).
                model.__pydantic_parent_namespace__ = namespaces[0]
    return True


def _is_aiogram(cls: type) -> bool:
    return cls.__module__.startswith("aiogram.")


def _subclasses(cls: type[pydantic.BaseModel]) -> list[type[pydantic.BaseModel]]:
    found: list[type[pydantic.BaseModel]] = []
    stack: list[type[pydantic.BaseModel]] = list(cls.__subclasses__())
    while stack:
        sub = stack.pop()
        found.append(sub)
        stack.extend(sub.__subclasses__())
    return found
