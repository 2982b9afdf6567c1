"""Client-side TLS for the connector: towards routers (wss) and towards https targets."""
from __future__ import annotations

import ssl


def client_context(ca_file: str | None = None, verify: bool = True,
                   cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ client context. ``verify=False`` disables certificate and hostname checks
    for this context only; nothing global changes."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx
