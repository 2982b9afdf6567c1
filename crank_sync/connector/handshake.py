"""Opening a websocket to the router: our own client handshake, websocket-client's socket API.

websocket-client's ``create_connection`` reads the 101 response one byte per ``recv`` call:
about 200 system calls (and as many GIL hand-offs) per socket; a v1 connector opens a socket
per request, so that was a third of its CPU time. :mod:`crank_sync.ws.handshake` connects,
sends the upgrade and reads the head in one go; the connected socket is then handed to a
``websocket.WebSocket`` through its public attributes (``sock``, ``connected``,
``handshake_response``), which the rest of the connector uses through its public API, behind
:class:`~crank_sync.connector.websocket.ConnectorWebSocket`. The upgrade's errors become
crank_sync errors here.

Kept websocket-client's ``WebSocket`` rather than a connection object of ours: its public API
(``recv_data_frame``, ``ping``, ``pong``, ``send_close``, ``settimeout``, ``lock``, ``sock``)
is all the connector needs, and the handshake costs the same (CPU per handshake against a
local 101 server, process time: ``create_connection`` 585-820 us, this 117-137 us, the
previous version on websocket-client internals 133-150 us).
As with ``create_connection``, ``http_proxy``/``https_proxy`` (and ``no_proxy``) from the
environment are honoured (a CONNECT tunnel).
"""
from __future__ import annotations

import socket
import ssl
from typing import Any

import websocket

from ..errors import ConnectionLost, RegistrationRefused, TlsError
from ..ws import handshake as ws_handshake
from ..ws.frames import mask_keys
from ..ws.handshake import MAX_HEAD, parse_response_head, read_response_head
from .websocket import ConnectorWebSocket

__all__ = ["MAX_HEAD", "open_websocket", "parse_response_head", "read_response_head",
           "refusal_text", "upgrade"]

#: Longest part of a refusal's body we read (the router's reason is one short line).
MAX_REFUSAL = 4096


def open_websocket(url: str, *, timeout: float, header: list[str],
                   sslopt: dict[str, Any] | None = None,
                   sockopt: tuple[tuple[int, int, int], ...] = (),
                   address: str | None = None) -> ConnectorWebSocket:
    """A connected websocket (:func:`upgrade`), as the connector uses it."""
    return ConnectorWebSocket(upgrade(url, timeout=timeout, header=header, sslopt=sslopt,
                                      sockopt=sockopt, address=address))


def upgrade(url: str, *, timeout: float, header: list[str],
            sslopt: dict[str, Any] | None = None,
            sockopt: tuple[tuple[int, int, int], ...] = (),
            address: str | None = None) -> websocket.WebSocket:
    """A connected websocket-client ``WebSocket``, as ``websocket.create_connection`` gives.

    Raises :class:`RegistrationRefused` for an answer other than 101, :class:`TlsError` when
    the TLS handshake fails, :class:`HandshakeError` for an answer that is no websocket
    handshake (or a URL or proxy that cannot be used), and :class:`ConnectionLost` for the rest
    (refused, reset, timed out, closed by the router).
    """
    context = (sslopt or {}).get("context")
    try:
        # websocket-client's default options (TCP_NODELAY, keepalive), then the caller's
        options = (*((a, b, c) for a, b, c in websocket.DEFAULT_SOCKET_OPTION), *sockopt)
        sock, target = ws_handshake.connect(url, timeout, context, options, address)
    except OSError as err:
        raise _translated(err) from err
    try:
        request, key = ws_handshake.client_request(target, header)
        sock.sendall(request)
        status, headers, reason = read_response_head(sock)
        if status != 101:
            raise RegistrationRefused(status, reason, headers, read_refusal(sock, headers))
        ws_handshake.subprotocol_of(headers, key)
    except OSError as err:
        sock.close()
        raise _translated(err) from err
    except BaseException:
        sock.close()
        raise
    ws = websocket.WebSocket(sslopt=sslopt, sockopt=list(sockopt), enable_multithread=True,
                             skip_utf8_validation=True)
    ws.set_mask_key(mask_keys)
    ws.sock = sock
    ws.settimeout(timeout)
    # what getstatus()/getheaders()/getsubprotocol() read (its type is websocket-client's
    # private class: ours has the same three fields). No subprotocol, as websocket-client
    # reports none unless it offered them itself.
    ws.handshake_response = ws_handshake.HandshakeResponse(  # type: ignore[assignment]
        status, headers, None)
    ws.connected = True
    return ws


def _translated(err: OSError) -> TlsError | ConnectionLost:
    """The socket's error during the upgrade: a failed TLS handshake is a refusal (a
    certificate, or TLS on one end only), the rest a connection that could not be made."""
    text = str(err) or repr(err)
    return TlsError(text) if isinstance(err, ssl.SSLError) else ConnectionLost(text)


def read_refusal(sock: socket.socket, headers: dict[str, str]) -> bytes:
    """The body of a refused upgrade (a router says why in it), at most :data:`MAX_REFUSAL`
    bytes; empty when it has none or it does not arrive within the socket's timeout."""
    try:
        length = min(int(headers.get("content-length", "0")), MAX_REFUSAL)
    except ValueError:
        return b""
    body = b""
    try:
        while len(body) < length:
            data = sock.recv(length - len(body))
            if not data:
                break
            body += data
    except OSError:  # a timeout or a reset: the status alone has to do
        pass
    return body


def refusal_text(err: RegistrationRefused) -> str:
    """One line saying why a router refused a registration: its status and reason, and the
    first line of what it said, with a hint where the status suggests a wrong port."""
    said = err.body.decode("utf-8", "replace").strip().splitlines()
    status = err.status_code
    text = f"router answered {status} {err.status_message}".rstrip()
    first = said[0].removeprefix(text.removeprefix("router answered ")).lstrip(": ") \
        if said else ""
    if first:
        text += f": {first[:300]}"
    if status == 404:
        text += " (is this the router's registration port?)"
    return text



