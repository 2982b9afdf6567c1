"""One request through the connector's listeners: :func:`send` in the target's ``send`` place.

:func:`send` makes the request's :class:`~crank_sync.hooks.RequestInfo`, calls
``on_before_request`` (the target gets the headers as the listeners left them), the target,
then ``on_response`` (the router gets the headers as the listeners left them), and returns a
:class:`HookedResponse`: the socket workers read it as any target's response, and its
``release_conn()``, which they call exactly once whatever happened, calls ``on_complete``.
When the target never answered, :func:`send` calls ``on_complete`` itself and re-raises.
:func:`tunnel` does the same for a websocket upgrade, where the 101 ends the HTTP exchange.

The connector answers itself (:class:`Answer`) for a :class:`~crank_sync.hooks.Reject`
(its status, headers and body) and for a listener that failed (502, the request id in the
body). Before the target, the request body the router sends is read to its end and dropped
first, so the v1 socket or v3 stream is left as a target would leave it; ``on_response`` is
not called for such an answer. After the target, its response is closed unread.
"""
from __future__ import annotations

import dataclasses
import http
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import ClientGone, ConnectionLost, CrankError, ListenerFailed
from ..hooks import Headers, Reject, RequestInfo
from ..protocol import RequestHead
from .listening import ConnectorHooks
from .target import Cancel, Target, TargetResponse, _Cancelled, send_request

__all__ = ["Answer", "HookedResponse", "send", "tunnel"]

log = logging.getLogger(__name__)

#: Statuses whose response has no body.
_NO_BODY = (204, 304)
#: Headers of a Reject that are the connector's to set.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
_request_ids = random.Random()


def _info(head: RequestHead, router: str, route: str, protocol: str) -> RequestInfo:
    return RequestInfo(router=router, route=route, method=head.method, target=head.target,
                       request_id=request_id_of(head), protocol=protocol,
                       started=time.monotonic())


def request_id_of(head: RequestHead) -> str:
    """The request's X-Request-Id (a router sends one), else a new one for the logs."""
    rid = head.request_id
    return rid if rid != "-" else f"{_request_ids.getrandbits(64):016x}"


def send(hooks: ConnectorHooks, target: Target, head: RequestHead,
         body: Iterable[bytes] | None, cancel: Cancel, *, router: str, route: str,
         protocol: str) -> TargetResponse:
    """``target.send`` with the listeners around it (see the module docstring)."""
    info = _info(head, router, route, protocol)
    counted = _counted(body, info) if body is not None else None
    try:
        return _exchange(hooks, target, head, counted, cancel, info)
    except Exception as err:
        info.error = public_error(err, cancel)
        finish(hooks, info)
        raise


#: What runs a websocket upgrade: ``serve(head, ended)`` returns the service's refusal to relay,
#: or None once the tunnel is open; ``ended()`` is called when the websocket is over (on the
#: relay's thread, maybe before ``serve`` returns).
Serve = Callable[[RequestHead, Callable[[], None]], "TargetResponse | None"]


def tunnel(hooks: ConnectorHooks, head: RequestHead, serve: Serve, *, router: str, route: str,
           protocol: str) -> TargetResponse | None:
    """A websocket upgrade through the listeners: ``on_before_request`` (which may change the
    headers or refuse it), then ``serve``, and ``on_complete`` with status 101 once the
    websocket is over, or with the refusal's status once it is relayed. ``on_response`` and
    the body-chunk callbacks are not called: past the 101 the bytes are the websocket's, not
    an HTTP body."""
    info = _info(head, router, route, protocol)
    cancel = Cancel()  # a tunnel's end is the relay's, not a cancel's
    lock = threading.Lock()  # the relay's end and a late failure of ``serve`` may race
    done = False

    def once(status: int | None, error: Exception | None = None) -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
        info.status, info.error = status, error
        finish(hooks, info)

    try:
        if hooks.before_request:
            head, answer = _before(hooks, head, info)
            if answer is not None:
                return HookedResponse(hooks, info, answer, cancel)
        refusal = serve(head, lambda: once(101))
    except Exception as err:
        once(None, public_error(err, cancel))  # a stream the router cancelled: ClientGone
        raise
    if refusal is not None:
        return HookedResponse(hooks, info, refusal, cancel)
    return None


def _exchange(hooks: ConnectorHooks, target: Target, head: RequestHead,
              body: Iterator[bytes] | None, cancel: Cancel, info: RequestInfo
              ) -> TargetResponse:
    if hooks.before_request:
        head, answer = _before(hooks, head, info)
        if answer is not None:
            for _ in body or ():  # the router's body, to its end: the socket stays usable
                pass
            return HookedResponse(hooks, info, answer, cancel)
    resp = send_request(target, head, body, cancel)
    if not hooks.response:
        return HookedResponse(hooks, info, resp, cancel)
    try:
        info.status = resp.status
        headers = Headers(resp.headers.items())
        hooks.call("on_response", hooks.response, info.request_id, info, resp.status, headers)
    except (Reject, ListenerFailed) as err:
        _drop(resp)
        answer = rejected(err, info.request_id, head.method) if isinstance(err, Reject) \
            else failed(err, info, head.method)
        return HookedResponse(hooks, info, answer, cancel)
    except BaseException:
        _drop(resp)
        raise
    return HookedResponse(hooks, info, resp, cancel, headers)


def _drop(resp: TargetResponse) -> None:
    """The target's answer is not sent: closed, its connection never reused."""
    resp.close()
    resp.release_conn()


def _before(hooks: ConnectorHooks, head: RequestHead, info: RequestInfo
            ) -> tuple[RequestHead, Answer | None]:
    """``on_before_request``: the head as the listeners left it, and the connector's own
    answer when one refused the request (or failed)."""
    try:
        return _before_request(hooks, head, info), None
    except Reject as rej:
        return head, rejected(rej, info.request_id, head.method)
    except ListenerFailed as err:
        return head, failed(err, info, head.method)


def _before_request(hooks: ConnectorHooks, head: RequestHead, info: RequestInfo
                    ) -> RequestHead:
    """``on_before_request``; the head with the headers as the listeners left them."""
    headers = Headers(head.headers)
    hooks.call("on_before_request", hooks.before_request, info.request_id, info, headers)
    try:
        return dataclasses.replace(head, headers=tuple(headers.items()))
    except CrankError as err:  # e.g. a header name that is no HTTP token
        log.error("connector listener left an invalid request header [%s]: %s",
                  info.request_id, err)
        raise ListenerFailed(f"a connector listener failed (request id {info.request_id})"
                             ) from err


def public_error(err: Exception, cancel: Cancel) -> Exception:
    """What listeners see of ``err``: a request the router cancelled (the workers' private
    cancel, or the target's connection failing as it was shut down) as ClientGone."""
    if isinstance(err, _Cancelled) or cancel.cancelled:
        gone = ClientGone(f"the router cancelled the request: {err}" if str(err)
                          else "the router cancelled the request")
        gone.__cause__ = err
        return gone
    return err


def _counted(body: Iterable[bytes], info: RequestInfo) -> Iterator[bytes]:
    for chunk in body:
        info.bytes_in += len(chunk)
        yield chunk


def finish(hooks: ConnectorHooks, info: RequestInfo) -> None:
    if hooks.complete:
        hooks.call_quietly("on_complete", hooks.complete, info.request_id, info)


def rejected(rej: Reject, request_id: str, method: str) -> Answer:
    """A listener's own answer: its status, headers and body; the framing is ours."""
    return Answer(rej.status, rej.body, [(n, v) for n, v in rej.headers
                                         if n.lower() not in _FRAMING], request_id, method)


def failed(err: ListenerFailed, info: RequestInfo, method: str) -> Answer:
    """The 502 for a listener that failed (its traceback is in the log)."""
    info.error = err
    body = f"connector listener failed (request id {info.request_id})\n".encode()
    return Answer(502, body, [], info.request_id, method)


class Answer:
    """A response the connector makes itself, shaped like a target's."""

    def __init__(self, status: int, body: bytes, headers: list[tuple[str, str]],
                 request_id: str, method: str) -> None:
        self.status = status
        try:
            self.reason: str | None = http.HTTPStatus(status).phrase
        except ValueError:
            self.reason = "Unknown"
        self.headers = Headers(headers)
        if body and "content-type" not in self.headers:
            self.headers.add("Content-Type", "text/plain; charset=utf-8")
        if "x-request-id" not in self.headers:
            self.headers.add("X-Request-Id", request_id)
        if status not in _NO_BODY:
            self.headers.add("Content-Length", str(len(body)))
        self._body = b"" if method == "HEAD" or status in _NO_BODY else body

    @property
    def length_remaining(self) -> int:
        return len(self._body)

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        size = len(self._body) if amt is None or amt < 0 else amt
        data, self._body = self._body[:size], self._body[size:]
        return data

    def close(self) -> None:
        self._body = b""

    def release_conn(self) -> None:
        pass


class HookedResponse:
    """A target's response (or an :class:`Answer`) as the listeners see it go back: the
    headers they left, its body bytes counted, ``on_complete`` on ``release_conn()``."""

    def __init__(self, hooks: ConnectorHooks, info: RequestInfo, resp: TargetResponse | Answer,
                 cancel: Cancel, headers: Headers | None = None) -> None:
        self._hooks = hooks
        self.info = info
        self._resp = resp
        self._cancel = cancel
        self.status = info.status = resp.status
        self.reason = resp.reason
        self.headers: Any = headers if headers is not None else resp.headers
        self._cut = False
        self._finished = False

    @property
    def length_remaining(self) -> int | None:
        return getattr(self._resp, "length_remaining", None)

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        try:
            data = self._resp.read1(amt, decode_content=decode_content)
        except Exception as err:
            self.info.error = public_error(err, self._cancel)
            raise
        self.info.bytes_out += len(data)
        return data

    def close(self) -> None:
        """The workers close a response they did not send to its end."""
        self._cut = True
        self._resp.close()

    def release_conn(self) -> None:
        try:
            self._resp.release_conn()
        finally:
            if not self._finished:
                self._finished = True
                info = self.info
                if self._cut and info.error is None:
                    info.error = ClientGone("the router cancelled the request") \
                        if self._cancel.cancelled \
                        else ConnectionLost("the response did not go back to the router in full")
                finish(self._hooks, info)
