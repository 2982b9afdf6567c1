"""Certificates and keys named by settings: a file that does not load is one line naming the
setting (:class:`~crank_sync.errors.SettingError`), not the ssl module's ``PEM lib``."""
from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator

from .errors import SettingError


@contextlib.contextmanager
def loading(setting: str, what: str) -> Iterator[None]:
    """Turn the ssl module's (and the file system's) errors inside into a SettingError."""
    try:
        yield
    except (ssl.SSLError, OSError) as err:
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or str(err)
        raise SettingError(setting, f"cannot load {what}: {reason}") from err


def load_cert_chain(ctx: ssl.SSLContext, cert: str, key: str | None, cert_setting: str,
                    key_setting: str) -> None:
    """``ctx.load_cert_chain(cert, key)``, its failure naming both settings."""
    with loading(cert_setting, f"the certificate {cert!r} with the key {key!r} "
                               f"({key_setting}); both must be PEM files and the key the "
                               "certificate's"):
        ctx.load_cert_chain(cert, key)
