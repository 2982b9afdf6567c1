"""Cranker v1.0 messages: the request text the router sends, the response head it gets back.

Strict in what it produces, lenient in what it accepts (PROTOCOL.md, "v1.0").
"""
from __future__ import annotations

import http
import re
from dataclasses import dataclass

from ..errors import LocalProtocolError, RemoteProtocolError

MARKER_BODY_FOLLOWS = "_1"
MARKER_NO_BODY = "_2"
MARKER_BODY_ENDED = "_3"
_MARKERS = (MARKER_BODY_FOLLOWS, MARKER_NO_BODY, MARKER_BODY_ENDED)

Headers = tuple[tuple[str, str], ...]

_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE_RE = re.compile(r"[\r\n\x00]")
#: crank4py-connector puts "<METHOD> <path>" after the status line; its path may hold a colon.
_REQUEST_LINE_RE = re.compile(r"^[A-Z]+ /\S*$")
_STATUS_RE = re.compile(r"^HTTP/\d(?:\.\d)?\s+(\d{3})(?:\s+(.*))?$")


def _check_header(name: str, value: str, error: type[Exception]) -> None:
    if not _TOKEN_RE.match(name):
        raise error(f"invalid header name {name!r}")
    if _BAD_VALUE_RE.search(value):
        raise error(f"invalid character in value of header {name!r}")


@dataclass(frozen=True, kw_only=True)
class RequestHead:
    """A client request as carried to the connector: method, raw target, headers, marker."""

    method: str
    target: str
    headers: Headers
    marker: str = MARKER_NO_BODY

    def __post_init__(self) -> None:
        if not _TOKEN_RE.match(self.method):
            raise LocalProtocolError(f"invalid method {self.method!r}")
        if not self.target or any(c in self.target for c in " \r\n\x00"):
            raise LocalProtocolError(f"invalid request target {self.target!r}")
        if self.marker not in (MARKER_BODY_FOLLOWS, MARKER_NO_BODY):
            raise LocalProtocolError(f"invalid request marker {self.marker!r}")
        for name, value in self.headers:
            _check_header(name, value, LocalProtocolError)

    @property
    def has_body(self) -> bool:
        return self.marker == MARKER_BODY_FOLLOWS

    @property
    def request_id(self) -> str:
        return next((v for n, v in self.headers if n.lower() == "x-request-id"), "-")

    @property
    def label(self) -> str:
        """``METHOD target [request id]``, for log lines."""
        return f"{self.method} {self.target[:200]} [{self.request_id}]"


@dataclass(frozen=True, kw_only=True)
class ResponseHead:
    """A target's response status line and headers, as the connector reports them."""

    status: int
    reason: str = ""
    headers: Headers = ()

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 999:
            raise LocalProtocolError(f"invalid status {self.status!r}")
        if _BAD_VALUE_RE.search(self.reason):
            raise LocalProtocolError("invalid character in reason phrase")
        for name, value in self.headers:
            _check_header(name, value, LocalProtocolError)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _join_cookies(headers: Headers) -> list[tuple[str, str]]:
    """Several ``Cookie`` headers become one, joined with ``; `` (HTTP/1.1 allows only one)."""
    cookies = [v for n, v in headers if n.lower() == "cookie"]
    if len(cookies) < 2:
        return list(headers)
    out: list[tuple[str, str]] = []
    for name, value in headers:
        if name.lower() != "cookie":
            out.append((name, value))
        elif cookies:
            out.append((name, "; ".join(cookies)))
            cookies = []
    return out


def request_text(head: RequestHead) -> str:
    """Request line and headers, then a blank line: the v3 HEADER text."""
    lines = [f"{head.method} {head.target} HTTP/1.1"]
    lines.extend(f"{name}:{value}" for name, value in _join_cookies(head.headers))
    return "\n".join(lines) + "\n\n"


def encode_request(head: RequestHead) -> str:
    """The v1 text message for ``head``: request line, headers, blank line, marker."""
    return request_text(head) + head.marker


def _split_lines(text: str) -> list[str]:
    return [line.rstrip("\r") for line in text.split("\n")]


def _parse_header_line(line: str) -> tuple[str, str] | None:
    name, sep, value = line.partition(":")
    if not sep or _REQUEST_LINE_RE.match(line):
        return None  # e.g. crank4py-connector's "<METHOD> <path>" line: not a header
    name = name.strip()
    value = value.strip(" \t")
    _check_header(name, value, RemoteProtocolError)
    return name, value


def _parse_header_lines(lines: list[str]) -> Headers:
    headers = []
    for line in lines:
        header = _parse_header_line(line) if line else None
        if header is not None:
            headers.append(header)
    return tuple(headers)


def parse_request(text: str) -> RequestHead:
    """Parse the router's request text (what a connector receives)."""
    lines = _split_lines(text)
    if len(lines) < 2:
        raise RemoteProtocolError(f"request message too short: {text[:80]!r}")
    marker = lines[-1].strip()
    if marker not in _MARKERS:
        raise RemoteProtocolError(f"request message without a marker: {text[-80:]!r}")
    return _parse_request_lines(lines[:-1], marker)


def parse_request_text(text: str, has_body: bool) -> RequestHead:
    """Parse v3 HEADER text (no marker); ``has_body`` comes from the frame's END_STREAM."""
    lines = _split_lines(text)
    return _parse_request_lines(lines, MARKER_BODY_FOLLOWS if has_body else MARKER_NO_BODY)


def _parse_request_lines(lines: list[str], marker: str) -> RequestHead:
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise RemoteProtocolError(f"bad request line {lines[0][:200]!r}")
    try:
        return RequestHead(
            method=parts[0],
            target=parts[1],
            headers=_parse_header_lines(lines[1:]),
            marker=MARKER_NO_BODY if marker == MARKER_BODY_ENDED else marker,
        )
    except LocalProtocolError as err:
        raise RemoteProtocolError(str(err)) from err


def encode_response_head(head: ResponseHead) -> str:
    """The text message a connector sends: status line, then one line per header value."""
    reason = head.reason or _phrase(head.status)
    lines = [f"HTTP/1.1 {head.status} {reason}"]
    lines.extend(f"{name}:{value}" for name, value in head.headers)
    return "\n".join(lines) + "\n"


def parse_response_head(text: str) -> ResponseHead:
    """Parse a connector's response head, tolerating what real connectors send.

    Accepted: ``\\r\\n`` line ends, a space after the colon, a reason phrase that is one word,
    ``TODO`` or missing, and lines without a colon (ignored).
    """
    lines = _split_lines(text)
    match = _STATUS_RE.match(lines[0].strip())
    if not match:
        raise RemoteProtocolError(f"bad status line {lines[0][:200]!r}")
    status = int(match.group(1))
    reason = (match.group(2) or "").strip()
    if status < 100:
        raise RemoteProtocolError(f"bad status {status}")
    try:
        return ResponseHead(status=status, reason=reason, headers=_parse_header_lines(lines[1:]))
    except LocalProtocolError as err:
        raise RemoteProtocolError(str(err)) from err
