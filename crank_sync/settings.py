"""Command-line settings derived from the config dataclasses.

Every field of :class:`~crank_sync.config.RouterConfig` and
:class:`~crank_sync.config.ConnectorConfig` becomes a setting with three spellings: a flag
(``--http-port``), an environment variable (``CRANK_ROUTER_HTTP_PORT``) and a key of a TOML file
given with ``--config`` (``http_port = 9000``). A new config field therefore shows up on the
command line without touching this module, unless its ``metadata`` says
``{"setting": False}`` (the connector's ``listeners``: objects, given in code only).
Precedence: flag > environment > file > default.

This module is pure: it never prints and never exits. Problems are raised as
:class:`SettingError`, whose text names the setting and where the bad value came from; ``cli.py``
turns it into ``prog: error: ...`` and exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
import sys
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .config import ConnectorConfig, RouterConfig, redact_url
from .errors import SettingError
from .limit_values import format_route_tables
from .setting_values import value_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the backport setup.cfg installs there
    import tomli as tomllib

_REQUIRED: Any = object()  #: default of a setting that has none
_GENERATED: Any = object()  #: default made by a dataclass default_factory
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

#: Help for fields without a ``#:`` comment in config.py (and for ``target``, whose comment
#: mentions the WSGI callable, which the command line cannot give).
_CLI_HELP = {
    "host": "address to bind",
    "http_port": "client-facing port, 0 for any free port",
    "registration_port": "port connectors register on, 0 for any free port",
    "target": "target service, e.g. http://127.0.0.1:5000",
    "route": "route to serve ('*' for the catch-all)",
    "routers": "router registration URLs, e.g. ws://127.0.0.1:9070",
    "component_name": "component name reported to the router",
    "sliding_window": "idle sockets kept registered at each router",
    "connector_instance_id": "unique id of this connector instance",
    "connect_timeout": "seconds to wait for a router connection",
}


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type  # int, float, bool, str, tuple (of str) or dict (route tables)
    default: Any
    help: str
    flags: tuple[str, ...]
    env: str
    choices: tuple[str, ...] = ()
    #: ``X | None`` field: the text "none" gives None.
    optional: bool = False
    #: Without a value of its own, take the value of this other setting.
    default_from: str | None = None

    def default_text(self) -> str:
        if self.default_from:
            return f"the value of {self.default_from}"
        if self.default is _REQUIRED:
            return "required"
        if self.default is _GENERATED:
            return "generated"
        if isinstance(self.default, tuple | list | dict) and not self.default:
            return "none"
        return _format(self.default)


@dataclass(frozen=True)
class Spec:
    """The settings of one program (router or connector)."""

    prog: str
    description: str
    env_prefix: str
    config_cls: type
    settings: tuple[Setting, ...]

    @property
    def config_env(self) -> str:
        return f"{self.env_prefix}CONFIG"

    def field_names(self) -> set[str]:
        return {f.name for f in dataclasses.fields(self.config_cls)}

    def setting(self, name: str) -> Setting:
        for s in self.settings:
            if s.name == name:
                return s
        raise KeyError(name)


@dataclass
class Resolved:
    """Effective settings: a value for each (absent only for generated defaults) and its source
    (a flag, an environment variable, a file name or ``"default"``)."""

    spec: Spec
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    print_config: bool = False

    def build(self) -> Any:
        """The config dataclass; its ValueError becomes a SettingError naming the setting."""
        names = self.spec.field_names()
        kwargs = {n: v for n, v in self.values.items()
                  if n in names and self.sources.get(n) != "default"}
        try:
            return self.spec.config_cls(**kwargs)
        except ValueError as err:
            culprit = blame(str(err), sorted(names))
            source = self.sources.get(culprit or "")
            # a value that was never given (a required one missing) has no source to name
            raise SettingError(culprit or "config", str(err),
                               None if source == "default" else source) from err

    def effective(self, config: Any) -> dict[str, Any]:
        """The config plus the command-line-only settings, ready for ``json.dumps``."""
        out = {k: v for k, v in self.values.items() if k not in self.spec.field_names()}
        for f in dataclasses.fields(config):
            if not f.metadata.get("setting", True):
                continue
            value = getattr(config, f.name)
            if "token" in f.name and value and not f.name.endswith("_file"):
                value = "***" if isinstance(value, str) else ["***"] * len(value)
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            elif isinstance(value, tuple) and all(isinstance(v, str) for v in value):
                value = tuple(redact_url(v) if "://" in v else v for v in value)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


# --------------------------------------------------------------------------- deriving settings


def field_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comments above each field of ``cls``, joined into one line per field."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"(\w+)\s*:", stripped)
        if match and pending:
            docs[match.group(1)] = " ".join(pending)
        pending = []
    return docs


def _kind(hint: Any) -> tuple[type, bool]:
    """The conversion kind of a type hint, and whether it is ``X | None``."""
    args = typing.get_args(hint)
    if type(None) in args and len(args) == 2:
        return _kind(next(a for a in args if a is not type(None)))[0], True
    return _base_kind(hint), False


def _base_kind(hint: Any) -> type:
    if hint in (int, float, bool, str):
        return typing.cast(type, hint)
    if typing.get_origin(hint) in (tuple, dict):
        return typing.cast(type, typing.get_origin(hint))
    return str  # Any (the connector target) and anything else is given as text


def derive(cls: type, prog: str, description: str, env_prefix: str, *,
           aliases: Mapping[str, Sequence[str]] | None = None,
           default_from: Mapping[str, str] | None = None,
           extras: Sequence[tuple[str, type, Any, str]] = ()) -> Spec:
    """A Spec with one setting per dataclass field of ``cls``, then ``extras`` (name, kind,
    default, help) for command-line-only settings whose name is not a field."""
    aliases, default_from = aliases or {}, default_from or {}
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    rows: list[tuple[str, type, Any, str]] = []
    optional: set[str] = set()
    for f in dataclasses.fields(cls):
        if not f.metadata.get("setting", True):
            continue  # e.g. the connector's listeners: objects, given in code only
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = {} if f.default_factory is dict else _GENERATED
        else:
            default = _REQUIRED
        help_text = _CLI_HELP.get(f.name) or docs.get(f.name) or f.name.replace("_", " ")
        help_text = help_text.replace("``", "").rstrip(".")
        kind, is_optional = _kind(hints[f.name])
        if is_optional:
            optional.add(f.name)
        rows.append((f.name, kind, default, help_text))
    taken = {row[0] for row in rows}
    rows.extend(row for row in extras if row[0] not in taken)
    settings = []
    for name, kind, default, help_text in rows:
        flags = ("--" + name.replace("_", "-"), *aliases.get(name, ()))
        settings.append(Setting(
            name=name, kind=kind, default=default, help=help_text, flags=flags,
            env=env_prefix + name.upper(), default_from=default_from.get(name),
            choices=LOG_LEVELS if name == "log_level" else (), optional=name in optional,
        ))
    return Spec(prog, description, env_prefix, cls, tuple(settings))


_LOG_LEVEL = ("log_level", str, "INFO", "logging level")

ROUTER = derive(
    RouterConfig, "crank-router", "Run a crank_sync Cranker router.", "CRANK_ROUTER_",
    aliases={"registration_tokens": ["--registration-token"], "admin_tokens": ["--admin-token"],
             "plugins": ["--plugin"]},
    extras=[
        ("drain_timeout", float, 30.0,
         "on SIGTERM, seconds in-flight requests may take to finish before the router exits"),
        ("workers", int, 1, "router processes on this host (one per core), worker i on "
                            "http_port+i and registration_port+i"),
        _LOG_LEVEL,
    ],
)

CONNECTOR = derive(
    ConnectorConfig, "crank-connector", "Run a crank_sync Cranker connector.", "CRANK_CONNECTOR_",
    aliases={"sliding_window": ["--window"], "component_name": ["--component"],
             "routers": ["--router"], "protocols": ["--protocol"], "plugins": ["--plugin"]},
    default_from={"component_name": "route"},
    extras=[
        ("stop_timeout", float, 10.0, "seconds to wait for in-flight requests on SIGTERM"),
        _LOG_LEVEL,
    ],
)


# --------------------------------------------------------------------------- conversion


def _format(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return format_route_tables(value)
    return str(value)


def convert(setting: Setting, raw: Any, source: str) -> Any:
    """Turn text (flag, environment) or a TOML value into the setting's type."""
    if setting.optional and isinstance(raw, str) and raw.strip().lower() == "none":
        return None
    try:
        value = value_of(setting.kind, raw)
    except (TypeError, ValueError) as err:
        raise SettingError(setting.name, str(err), source) from None
    if setting.choices:
        value = str(value).upper()
        if value not in setting.choices:
            raise SettingError(setting.name, f"must be one of {', '.join(setting.choices)}, "
                               f"got {raw!r}", source)
    return value


def blame(message: str, names: Sequence[str]) -> str | None:
    """The setting a validation message is about: the one named earliest in it (``routers`` also
    matches "router", ``http_port`` also "http port")."""
    best: tuple[tuple[int, int], str] | None = None
    for name in names:
        spellings = {name, name.replace("_", " "), name.removesuffix("s")}
        for word in spellings:
            match = re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", message)
            if match:
                key = (match.start(), -len(word))
                if best is None or key < best[0]:
                    best = (key, name)
    return best[1] if best else None


# --------------------------------------------------------------------------- sources


class _Parser(argparse.ArgumentParser):
    """Argparse errors become SettingError, so every error is the same single line."""

    def error(self, message: str) -> NoReturn:
        raise SettingError(None, message)


def build_parser(spec: Spec) -> argparse.ArgumentParser:
    parser = _Parser(
        # no abbreviations: "--http 0" would silently be --http-port, and a later setting
        # starting the same way would change what an old command line means
        prog=spec.prog, description=spec.description, allow_abbrev=False,
        epilog=f"Each setting is read from its flag, else its environment variable, else the "
               f"TOML file given with --config (keys are the setting names, e.g. "
               f"{spec.settings[0].name} = ...), else its default. Lists are comma-separated "
               f"in flags and environment variables, TOML arrays in the file.",
    )
    group = parser.add_argument_group("settings")
    for s in spec.settings:
        text = f"{s.help} (default: {s.default_text()}; env {s.env})".replace("%", "%%")
        common: dict[str, Any] = {"dest": s.name, "default": argparse.SUPPRESS, "help": text}
        if s.kind is bool:
            group.add_argument(*s.flags, action=argparse.BooleanOptionalAction, **common)
        elif s.kind in (tuple, dict):
            group.add_argument(*s.flags, action="append", metavar=s.name.upper(), **common)
        else:
            group.add_argument(*s.flags, metavar=s.name.upper(), **common)
    if any(s.name == "verify" for s in spec.settings):
        group.add_argument("--insecure", dest="verify", action="store_false",
                           default=argparse.SUPPRESS,
                           help="do not verify the router's certificate (same as --no-verify)")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"TOML file with settings (env {spec.config_env})")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective settings as JSON and exit")
    return parser


def load_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as err:
        raise SettingError("config", f"cannot read {path!r}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise SettingError("config", f"{path!r} is not valid TOML: {err}") from None


def resolve(spec: Spec, flags: Mapping[str, Any], environ: Mapping[str, str],
            file_values: Mapping[str, Any], file_name: str = "config file") -> Resolved:
    """Merge the three sources, flag > environment > file > default. Empty environment
    variables count as unset."""
    known = {s.name for s in spec.settings}
    for key in file_values:
        if key not in known:
            raise SettingError(key, f"unknown setting in {file_name}")
    resolved = Resolved(spec)
    for s in spec.settings:
        if s.name in flags:
            raw = flags[s.name]
            source = "/".join(s.flags)
            resolved.values[s.name] = convert(s, raw, source)
        elif environ.get(s.env, "") != "":
            resolved.values[s.name] = convert(s, environ[s.env], s.env)
            source = s.env
        elif s.name in file_values:
            resolved.values[s.name] = convert(s, file_values[s.name], file_name)
            source = file_name
        else:
            continue
        resolved.sources[s.name] = source
    for s in spec.settings:
        if s.name in resolved.values:
            continue
        if s.default_from and s.default_from in resolved.values:
            resolved.values[s.name] = resolved.values[s.default_from]
            resolved.sources[s.name] = resolved.sources[s.default_from]
        elif s.default is _REQUIRED:
            raise SettingError(s.name, f"required: give {s.flags[-1]}, {s.env} or "
                               f"'{s.name}' in a --config file")
        elif s.default is not _GENERATED:
            resolved.values[s.name] = s.default
            resolved.sources[s.name] = "default"
    return resolved


def parse(spec: Spec, argv: Sequence[str] | None = None,
          environ: Mapping[str, str] | None = None) -> Resolved:
    """Read the command line, the environment and the config file into a Resolved."""
    environ = os.environ if environ is None else environ
    args = vars(build_parser(spec).parse_args(argv))
    config_path = args.pop("config") or environ.get(spec.config_env) or None
    print_config = bool(args.pop("print_config"))
    file_values = load_toml(config_path) if config_path else {}
    resolved = resolve(spec, args, environ, file_values, config_path or "config file")
    resolved.print_config = print_config
    return resolved
