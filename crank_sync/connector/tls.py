"""Client-side TLS for the connector: towards routers (wss) and towards https targets."""
from __future__ import annotations

import ssl

from ..tls_files import load_cert_chain, loading


def client_context(ca_file: str | None = None, verify: bool = True,
                   cert: str | None = None, key: str | None = None,
                   prefix: str = "") -> ssl.SSLContext:
    """A TLS 1.2+ client context. ``verify=False`` disables certificate and hostname checks
    for this context only; nothing global changes. A file that does not load is a
    SettingError naming ``<prefix>ca_file`` or ``client_cert``."""
    with loading(f"{prefix}ca_file", f"the CA certificates {ca_file!r}"):
        ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        load_cert_chain(ctx, cert, key, "client_cert", "client_key")
    return ctx
