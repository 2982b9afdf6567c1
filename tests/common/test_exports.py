"""Every exception class crank_sync defines is exported from ``crank_sync`` or private.

Walks every module of the package (``pkgutil.walk_packages``) and every class defined there,
nested ones included: an exception class is either in ``crank_sync.__all__`` (one exception
tree, rooted at :class:`crank_sync.CrankError`, defined in ``crank_sync/errors.py``) or has a
private name. A new error type therefore has to be placed on purpose.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from types import ModuleType

import crank_sync
from crank_sync import errors

#: Classes still to be decided (none).
PENDING: set[str] = set()


def modules() -> Iterator[ModuleType]:
    yield crank_sync
    for info in pkgutil.walk_packages(crank_sync.__path__, "crank_sync."):
        yield importlib.import_module(info.name)


def classes_defined_in(module: ModuleType) -> Iterator[type]:
    """The classes ``module`` defines, and the classes defined inside them."""
    seen: set[type] = set()
    stack = list(vars(module).values())
    while stack:
        obj = stack.pop()
        if isinstance(obj, type) and obj.__module__ == module.__name__ and obj not in seen:
            seen.add(obj)
            yield obj
            stack.extend(vars(obj).values())


def exception_classes() -> dict[str, type[BaseException]]:
    return {f"{cls.__module__}.{cls.__qualname__}": cls
            for module in modules() for cls in classes_defined_in(module)
            if issubclass(cls, BaseException)}


def is_private(cls: type) -> bool:
    return any(part.startswith("_") for part in cls.__qualname__.split("."))


def is_exported(cls: type) -> bool:
    return cls.__name__ in crank_sync.__all__ and getattr(crank_sync, cls.__name__) is cls


def test_the_walk_finds_exceptions_everywhere() -> None:
    found = exception_classes()
    assert "crank_sync.errors.CrankError" in found
    assert "crank_sync.connector.target._Cancelled" in found
    assert "crank_sync.connector.wsgi._ApplicationError" in found


def test_every_exception_class_is_exported_or_private() -> None:
    neither = sorted(name for name, cls in exception_classes().items()
                     if not is_exported(cls) and not is_private(cls) and name not in PENDING)
    assert not neither, f"export these from crank_sync or give them a private name: {neither}"


def test_pending_entries_are_still_needed() -> None:
    found = exception_classes()
    done = sorted(name for name in PENDING
                  if name not in found or is_exported(found[name]) or is_private(found[name]))
    assert not done, f"remove from PENDING: {done}"


def test_the_exported_exceptions_are_the_tree_of_errors_py() -> None:
    exported = {name for name in crank_sync.__all__
                if isinstance(getattr(crank_sync, name), type)
                and issubclass(getattr(crank_sync, name), BaseException)}
    # Reject is a listener's answer to the client (crank_sync.hooks), not an error of ours
    assert exported == set(errors.__all__) | {"Reject"}
    assert crank_sync.Reject.__module__ == "crank_sync.hooks"
    for name in exported - {"Reject"}:
        cls = getattr(crank_sync, name)
        assert issubclass(cls, crank_sync.CrankError), name
        assert cls.__module__ == "crank_sync.errors", name
