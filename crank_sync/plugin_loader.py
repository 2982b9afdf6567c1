"""Plugins: listeners named in the ``plugins`` setting, made when a Router or Connector is.

A plugin spec is a name, then options::

    NAME [key=value ...]

* ``NAME`` is ``module:factory`` (an attribute of an importable module; dotted for a nested
  one, ``pkg.mod:Class.create``), or the name of a plugin: one crank_sync ships
  (:data:`BUILTIN`), or an entry point of group ``crank_sync.plugins`` that an installed
  distribution offers (``[options.entry_points] crank_sync.plugins = name = module:factory``).
* each ``key=value`` is a keyword argument of the factory, as a string: ``factory(key="value")``;
  without options, ``factory()``. Words are split as a POSIX shell splits them (:mod:`shlex`),
  so a value with a space in it is quoted (``path="/var/log/my logs/a.jsonl"``). The setting is
  a list, split at commas like every list setting, so a value holds no comma: options that take
  several values separate them with ``|`` (``routes=api|admin``).

The factory returns one listener (a :class:`~crank_sync.hooks.ProxyListener` for a router, a
:class:`~crank_sync.hooks.ConnectorListener` for a connector). Anything that goes wrong (a
module that does not import, a missing attribute, a factory that raises or returns something
else) is a :class:`~crank_sync.errors.PluginError` naming the spec: a user's mistake, which the
command line reports in one line with exit status 2.

Nothing here runs, and nothing is imported, unless ``plugins`` names something.
"""
from __future__ import annotations

import importlib
import re
import shlex
from collections.abc import Callable, Iterable
from typing import Any

from .errors import PluginError
from .hooks import ConnectorListener, ProxyListener

#: The entry point group installed distributions offer plugins in.
GROUP = "crank_sync.plugins"

#: The plugins crank_sync ships, by name. These names are found without looking at entry
#: points (so they work from a source checkout too) and no distribution can take them over;
#: setup.cfg offers the same names as entry points, for tools that list a group.
BUILTIN = {
    "access-log": "crank_sync.plugins.access_log:AccessLog",
    "server-timing": "crank_sync.plugins.server_timing:ServerTiming",
    "header-auth": "crank_sync.plugins.header_auth:HeaderAuth",
}

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_OBJECT_RE = re.compile(rf"^({_DOTTED}):({_DOTTED})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_EXAMPLE = "e.g. access-log path=/var/log/crank/access.jsonl, or mypackage.hooks:make_listener"

#: What each side calls its listeners, and their callbacks (a duck-typed listener has one).
_SIDES: dict[str, tuple[type, tuple[str, ...]]] = {
    "router": (ProxyListener, tuple(n for n in vars(ProxyListener) if n.startswith("on_"))),
    "connector": (ConnectorListener, tuple(
        n for n in vars(ConnectorListener) if n.startswith(("on_", "registration_")))),
}


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``spec``'s name and options; ValueError naming the ``plugins`` setting when it is
    not ``NAME [key=value ...]``."""
    try:
        return _parse(spec)
    except ValueError as err:
        raise ValueError(f"plugins: {spec!r}: {err}") from None


def _parse(spec: str) -> tuple[str, dict[str, str]]:
    try:
        words = shlex.split(spec)
    except ValueError as err:
        raise ValueError(f"{err}: quote a value as a shell would") from None
    if not words:
        raise ValueError(f"empty: give a plugin name or module:factory ({_EXAMPLE})")
    name, options = words[0], {}
    if not (_OBJECT_RE.match(name) or (":" not in name and _NAME_RE.match(name))):
        raise ValueError(f"{name!r} is neither a plugin name nor module:factory ({_EXAMPLE})")
    for word in words[1:]:
        key, equals, value = word.partition("=")
        if not equals or not key.isidentifier():
            raise ValueError(f"{word!r} is not an option key=value: options follow the name "
                             f"(access-log path=FILE); a comma separates plugins, so an "
                             f"option's several values are separated with |")
        if key in options:
            raise ValueError(f"option {key!r} is given twice")
        options[key] = value
    return name, options


def check_specs(specs: Iterable[str]) -> None:
    """ValueError for the first spec that does not parse (config validation: the factories
    are only looked up when a Router or Connector is made)."""
    for spec in specs:
        parse_spec(spec)


def load_plugins(specs: Iterable[str], side: str) -> list[object]:
    """A listener for each spec, in order, for ``side`` (``"router"`` or ``"connector"``);
    :class:`PluginError` for the first that cannot be made. Every factory is found before
    any is called, so a name that is not there is reported before another plugin's refusal."""
    found = []
    for index, spec in enumerate(specs):
        try:
            name, options = _parse(spec)
        except ValueError as err:
            raise PluginError(spec, str(err)) from None
        found.append((spec, _factory(spec, name, after_comma=index > 0 and not options),
                      options))
    return [_checked(spec, _call(spec, factory, options), side)
            for spec, factory, options in found]


def available() -> list[str]:
    """The plugin names that can be given without ``module:factory``."""
    names = set(BUILTIN)
    try:
        names.update(ep.name for ep in _entry_points())
    except Exception:  # noqa: BLE001 - a broken distribution must not hide the others
        pass
    return sorted(names)


def _entry_points() -> Any:
    from importlib.metadata import entry_points

    return entry_points(group=GROUP)


def _factory(spec: str, name: str, after_comma: bool = False) -> Callable[..., Any]:
    target = BUILTIN.get(name)
    if target is None and ":" not in name:
        target = _entry_point(spec, name, after_comma)
    module_name, _, attribute = (target or name).partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise PluginError(spec, f"importing {module_name!r} failed: {err}: install what "
                              f"it needs") from None
        raise PluginError(spec, f"no module named {module_name!r}: install it or add its "
                          f"directory to PYTHONPATH") from None
    except Exception as err:  # noqa: BLE001 - a module that fails to import is reported
        raise PluginError(spec, f"importing {module_name!r} failed: "
                          f"{type(err).__name__}: {err}") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise PluginError(spec, f"{module_name!r} has no attribute {attribute!r}: give "
                              f"module:factory, a class or function of that module") from None
        obj = getattr(obj, part)
    if not callable(obj):
        raise PluginError(spec, f"{target or name} is a {type(obj).__name__}, not a factory: "
                          f"give a class or a function that returns a listener")
    return obj  # type: ignore[no-any-return]


def _entry_point(spec: str, name: str, after_comma: bool) -> str:
    """The ``module:attribute`` that entry point ``name`` of :data:`GROUP` stands for.
    ``after_comma``: the spec may be the end of the one before, cut at a comma."""
    try:
        found = {ep.value: ep for ep in _entry_points() if ep.name == name}
    except Exception as err:  # noqa: BLE001 - broken metadata is the user's to fix
        raise PluginError(spec, f"cannot read the installed plugins: {err}") from None
    if not found:
        hint = ("; if it is a value of the plugin before it: a comma separates plugins, so "
                "an option's several values are separated with |" if after_comma else "")
        raise PluginError(spec, f"no plugin named {name!r}: give module:factory, or install "
                          f"the distribution that offers it (entry point group {GROUP}; "
                          f"found: {', '.join(available())}){hint}")
    if len(found) > 1:
        offered = ", ".join(sorted(f"{ep.value} ({_dist(ep)})" for ep in found.values()))
        raise PluginError(spec, f"several distributions offer {name!r}: {offered}: give "
                          f"module:factory instead")
    return next(iter(found))


def _dist(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return str(dist.name) if dist is not None else "unknown distribution"


def _call(spec: str, factory: Callable[..., Any], options: dict[str, str]) -> object:
    try:
        return factory(**options)
    except ValueError as err:  # a factory refusing its options or environment says why
        raise PluginError(spec, " ".join(str(err).split()) or "refused to start") from None
    except Exception as err:  # noqa: BLE001 - whatever a factory raises is reported in a line
        hint = " (options are its keyword arguments)" if isinstance(err, TypeError) else ""
        raise PluginError(spec, f"{_qualname(factory)} raised {type(err).__name__}: "
                          f"{' '.join(str(err).split())}{hint}") from None


def _checked(spec: str, listener: object, side: str) -> object:
    base, callbacks = _SIDES[side]
    other = "connector" if side == "router" else "router"
    if isinstance(listener, base):
        return listener
    if isinstance(listener, _SIDES[other][0]):
        raise PluginError(spec, f"made a {other} listener ({type(listener).__name__}): give "
                          f"it to crank-{other}")
    if not any(callable(getattr(listener, name, None)) for name in callbacks):
        raise PluginError(spec, f"made a {type(listener).__name__}, not a {side} listener: "
                          f"the factory must return a crank_sync.{base.__name__}")
    return listener


def _qualname(obj: object) -> str:
    return str(getattr(obj, "__qualname__", type(obj).__qualname__))
