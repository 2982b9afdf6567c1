"""Checks shared by the config dataclasses (crank_sync.config): each raises ValueError naming
the setting, so a mistake is one line at start-up, not a traceback on a worker thread."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .hooks import ConnectorListener


def redact_url(url: str) -> str:
    """``url`` without the password of its user info (``http://user:***@host``), for logs and
    error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def check_url(name: str, url: str, schemes: tuple[str, ...], example: str) -> None:
    """Raise ValueError, naming setting ``name``, unless ``url`` has one of ``schemes``, a host
    and (if any) a port in 1..65535: urllib3 and websocket-client would only fail on it later,
    on a worker thread, with a traceback."""
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in schemes:
        raise ValueError(f"{name}: {shown!r} must start with "
                         f"{' or '.join(s + '://' for s in schemes)}, e.g. {example}")
    if not parts.hostname:
        raise ValueError(f"{name}: {shown!r} has no host, e.g. {example}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{name}: {shown!r} has an invalid port: give a number in 1..65535, "
                         f"e.g. {example}")


def check_file(name: str, path: str | None) -> None:
    """Raise ValueError, naming setting ``name`` and the file, unless ``path`` can be read."""
    if path is None:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise ValueError(f"{name}: cannot read {path!r}: {err.strerror or err}") from None


def listeners_of(listeners: Any) -> tuple[Any, ...]:
    """A connector's listeners as a tuple; TypeError for one listener not in a list (it
    would fail as "not iterable", or iterate itself)."""
    if isinstance(listeners, ConnectorListener | str) or not isinstance(listeners, Iterable):
        raise TypeError(f"listeners must be a list of ConnectorListener objects, got "
                        f"{type(listeners).__name__}")
    return tuple(listeners)


def check_positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
