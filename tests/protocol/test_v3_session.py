"""The v3 session core: an in-memory router/connector pair, driven by tables.

Each side is a :class:`Session`; what one side's ``send_*`` returns is fed to the other's
``receive``, as the websocket would carry it. No sockets, no threads.
"""
from __future__ import annotations

import pytest

from crank_sync.errors import LocalProtocolError, RemoteProtocolError
from crank_sync.protocol import v3
from crank_sync.protocol.v3_session import (
    TRANSITIONS,
    DataReceived,
    HeadReceived,
    Move,
    Role,
    Session,
    StreamError,
    StreamReset,
    StreamState,
    WindowUpdated,
)

HEAD = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
RESPONSE = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"


def pair() -> tuple[Session, Session]:
    return Session(Role.ROUTER), Session(Role.CONNECTOR)


def deliver(to: Session, messages: bytes | list[bytes]) -> list[object]:
    if isinstance(messages, bytes):
        messages = [messages]
    events: list[object] = []
    for message in messages:
        events.extend(to.receive(message))
    return events


# --------------------------------------------------------------------------- whole exchanges

EXCHANGE_ROWS = [
    pytest.param([], [], id="no-body-either-way"),
    pytest.param([b"abc"], [], id="request-body"),
    pytest.param([], [b"ok"], id="response-body"),
    pytest.param([b"a", b"bc"], [b"o", b"k"], id="bodies-in-pieces"),
]


@pytest.mark.parametrize(("request_body", "response_body"), EXCHANGE_ROWS)
def test_request_and_response(request_body: list[bytes], response_body: list[bytes]) -> None:
    router, connector = pair()
    sid = router.open_stream()
    assert sid == 1
    head = router.send_head(sid, HEAD, end_stream=not request_body)
    events = deliver(connector, head)
    assert events == [HeadReceived(stream_id=sid, text=HEAD, frame_sizes=(len(HEAD),),
                           end_stream=not request_body)]
    for index, chunk in enumerate(request_body):
        last = index == len(request_body) - 1
        events = deliver(connector, router.send_data(sid, chunk, end_stream=last))
        assert events == [DataReceived(stream_id=sid, data=chunk, end_stream=last)]
    assert connector.state(sid) is StreamState.HALF_CLOSED_REMOTE
    assert router.state(sid) is StreamState.HALF_CLOSED_LOCAL

    events = deliver(router, connector.send_head(sid, RESPONSE, end_stream=not response_body))
    assert events == [HeadReceived(stream_id=sid, text=RESPONSE, frame_sizes=(len(RESPONSE),),
                                   end_stream=not response_body)]
    for index, chunk in enumerate(response_body):
        last = index == len(response_body) - 1
        events = deliver(router, connector.send_data(sid, chunk, end_stream=last))
        assert events == [DataReceived(stream_id=sid, data=chunk, end_stream=last)]
    assert router.state(sid) is StreamState.CLOSED
    assert connector.state(sid) is StreamState.CLOSED


def test_end_marker_is_an_empty_data_frame() -> None:
    router, connector = pair()
    sid = router.open_stream()
    deliver(connector, router.send_head(sid, HEAD))
    assert deliver(connector, router.send_data(sid, b"", end_stream=True)) == [
        DataReceived(stream_id=sid, data=b"", end_stream=True)]


@pytest.mark.parametrize("chars", [v3.MAX_HEADER_CHARS + 1, 2 * v3.MAX_HEADER_CHARS + 5])
def test_head_split_over_several_frames_is_one_event(chars: int) -> None:
    router, connector = pair()
    sid = router.open_stream()
    text = "GET /" + "a" * chars + " HTTP/1.1\r\n\r\n"
    frames = router.send_head(sid, text, end_stream=True)
    assert len(frames) > 1
    assert [deliver(connector, f) for f in frames[:-1]] == [[]] * (len(frames) - 1)
    assert deliver(connector, frames[-1]) == [
        HeadReceived(stream_id=sid, text=text, end_stream=True,
                     frame_sizes=tuple(len(f) - 6 for f in frames))]
    # every HEADER byte is owed an acknowledgement, and counts in the sender's window
    assert connector.ack(sid) == v3.window_update_frame(sid, len(text))
    assert router.streams[sid].window.unacked == len(text)


# --------------------------------------------------------------------------- flow control

K = 1024
#: (payload sizes sent, acknowledgements, paused after) -- 64 KiB high water, under 16 KiB resume.
WINDOW_ROWS = [
    pytest.param([64 * K], [], False, id="at-high-water-still-sending"),
    pytest.param([64 * K, 1], [], True, id="past-high-water-paused"),
    pytest.param([64 * K + 1], [48 * K], True, id="16KiB-plus-1-left-still-paused"),
    pytest.param([64 * K + 1], [48 * K + 1], True, id="exactly-16KiB-left-still-paused"),
    pytest.param([64 * K + 1], [48 * K + 2], False, id="under-16KiB-resumes"),
    pytest.param([64 * K + 1], [30 * K, 30 * K], False, id="acks-add-up"),
    pytest.param([10 * K], [20 * K], False, id="over-acknowledged-floors-at-zero"),
]


@pytest.mark.parametrize(("sizes", "acks", "paused"), WINDOW_ROWS)
def test_send_window_pauses_and_resumes_at_the_thresholds(
        sizes: list[int], acks: list[int], paused: bool) -> None:
    router, connector = pair()
    sid = router.open_stream()
    deliver(connector, router.send_head(sid, HEAD, end_stream=True))
    deliver(router, connector.send_head(sid, RESPONSE))
    deliver(connector, router.ack(sid))  # the head's bytes: the window is empty again
    for size in sizes:
        deliver(router, connector.send_data(sid, b"x" * size))
    was_paused = connector.paused(sid)
    events = []
    for n in acks:
        events += deliver(connector, v3.window_update_frame(sid, n))
    assert connector.paused(sid) is paused
    assert [e.increment for e in events if isinstance(e, WindowUpdated)] == acks
    resumed = [e.resumed for e in events if isinstance(e, WindowUpdated)]
    assert any(resumed) is (was_paused and not paused)


def test_sending_accounts_for_frames_encoded_elsewhere() -> None:
    router, _ = pair()
    sid = router.open_stream()
    router.sending(v3.header_frames(sid, HEAD, end_stream=False)[0])
    router.sending(v3.data_frame(sid, b"x" * (64 * K)))
    assert router.paused(sid)
    router.sending(v3.data_frame(sid, end_stream=True))
    assert router.state(sid) is StreamState.HALF_CLOSED_LOCAL
    with pytest.raises(LocalProtocolError):
        router.sending(v3.rst_frame(sid, 1))


#: (received payloads, ack argument, expected increment or error)
ACK_ROWS = [
    pytest.param([b"abc"], None, 3, id="all-owed-by-default"),
    pytest.param([b"abc", b"de"], 2, 2, id="part"),
    pytest.param([b"abc"], 4, LocalProtocolError, id="more-than-received"),
    pytest.param([], None, 0, id="nothing-owed"),
]


@pytest.mark.parametrize(("payloads", "n", "expected"), ACK_ROWS)
def test_receive_side_acknowledgements(payloads: list[bytes], n: int | None,
                                       expected: int | type[Exception]) -> None:
    router, connector = pair()
    sid = router.open_stream()
    head = router.send_head(sid, HEAD)
    deliver(connector, head)
    connector.ack(sid)  # the head's bytes
    for payload in payloads:
        deliver(connector, router.send_data(sid, payload))
    if isinstance(expected, int):
        assert connector.ack(sid, n) == v3.window_update_frame(sid, expected)
        assert connector.streams[sid].unacked == sum(map(len, payloads)) - expected
    else:
        with pytest.raises(expected):
            connector.ack(sid, n)


# --------------------------------------------------------------------------- resets and after-end


@pytest.mark.parametrize("resetter", ["router", "connector"])
def test_reset_either_way_and_frames_after_it_are_dropped(resetter: str) -> None:
    router, connector = pair()
    sid = router.open_stream()
    deliver(connector, router.send_head(sid, HEAD))
    deliver(router, connector.send_head(sid, RESPONSE))
    by, to = (router, connector) if resetter == "router" else (connector, router)
    rst = by.reset(sid, v3.RST_TARGET_FAILED, "gone")
    assert by.state(sid) is StreamState.RESET
    assert deliver(to, rst) == [StreamReset(stream_id=sid, code=v3.RST_TARGET_FAILED,
                                            message="gone")]
    assert to.state(sid) is StreamState.RESET
    # late frames of the resetter's peer are dropped by the resetter
    assert deliver(by, v3.data_frame(sid, b"late")) == []
    assert deliver(by, v3.window_update_frame(sid, 4)) == []
    assert deliver(by, v3.rst_frame(sid, 1)) == []


#: (frames the router receives after the connector's whole response, expected events)
AFTER_END_ROWS = [
    pytest.param(v3.data_frame(1, b"more"), [], id="data"),
    pytest.param(v3.data_frame(1, end_stream=True), [], id="second-end"),
    pytest.param(v3.header_frames(1, RESPONSE, True)[0], [], id="header"),
    pytest.param(v3.rst_frame(1, 1), [], id="rst-after-closed"),
    pytest.param(v3.window_update_frame(1, 5), [], id="window-update-after-closed"),
]


@pytest.mark.parametrize(("late", "expected"), AFTER_END_ROWS)
def test_frames_after_the_end_are_dropped(late: bytes, expected: list[object]) -> None:
    router, connector = pair()
    sid = router.open_stream()
    deliver(connector, router.send_head(sid, HEAD, end_stream=True))
    deliver(router, connector.send_head(sid, RESPONSE, end_stream=True))
    assert router.state(sid) is StreamState.CLOSED
    assert deliver(router, late) == expected
    assert router.state(sid) is StreamState.CLOSED


def test_rst_after_remote_end_still_resets() -> None:
    router, connector = pair()
    sid = router.open_stream()
    deliver(connector, router.send_head(sid, HEAD, end_stream=True))
    assert deliver(connector, router.reset(sid, v3.RST_CLIENT_GONE)) == [
        StreamReset(stream_id=sid, code=v3.RST_CLIENT_GONE)]


#: (what the connector sends on an open response stream, the router's events)
PEER_ERROR_ROWS = [
    pytest.param([v3.data_frame(1, b"x")], "DATA before a head", id="data-before-head"),
    pytest.param(v3.header_frames(1, RESPONSE, False) * 2, "a second head", id="second-head"),
    pytest.param([v3.HEADER.to_bytes(1, "big") + bytes([v3.END_HEADER]) + (1).to_bytes(4, "big")
                  + b"\xff"], "bad head", id="head-not-utf8"),
]


@pytest.mark.parametrize(("messages", "reason"), PEER_ERROR_ROWS)
def test_peer_errors_on_one_stream_reset_it(messages: list[bytes], reason: str) -> None:
    router, connector = pair()
    sid = router.open_stream()
    other = router.open_stream()
    events = deliver(router, messages)
    assert isinstance(events[-1], StreamError)
    assert events[-1].stream_id == sid and events[-1].reason.startswith(reason)
    assert router.state(sid) is StreamState.RESET
    assert router.state(other) is StreamState.OPEN


def test_head_over_the_limit_is_a_stream_error() -> None:
    connector = Session(Role.CONNECTOR, header_limit=100)
    events = deliver(connector, v3.header_frames(7, "x" * 101, False))
    assert events == [StreamError(stream_id=7, reason="bad head: header text over 100 bytes")]


# --------------------------------------------------------------------------- stream ids


#: (role, message for stream 9 nobody opened, events)
UNKNOWN_ROWS = [
    pytest.param(Role.ROUTER, v3.data_frame(9, b"x"), [], id="router-data"),
    pytest.param(Role.ROUTER, v3.header_frames(9, RESPONSE, True)[0], [], id="router-header"),
    pytest.param(Role.ROUTER, v3.rst_frame(9, 1), [], id="router-rst"),
    pytest.param(Role.ROUTER, v3.window_update_frame(9, 1), [], id="router-window"),
    pytest.param(Role.CONNECTOR, v3.data_frame(9, b"x"), [], id="connector-data"),
    pytest.param(Role.CONNECTOR, v3.rst_frame(9, 1), [], id="connector-rst"),
    pytest.param(Role.CONNECTOR, v3.window_update_frame(9, 1), [], id="connector-window"),
    pytest.param(Role.CONNECTOR, v3.header_frames(9, HEAD, True)[0],
                 [HeadReceived(stream_id=9, text=HEAD, frame_sizes=(len(HEAD),), end_stream=True)],
                 id="connector-header-opens"),
    pytest.param(Role.ROUTER, bytes([42, 0]) + (9).to_bytes(4, "big"), [], id="unknown-type"),
]


@pytest.mark.parametrize(("role", "message", "expected"), UNKNOWN_ROWS)
def test_unknown_stream_ids(role: Role, message: bytes, expected: list[object]) -> None:
    assert Session(role).receive(message) == expected


def test_unknown_type_on_a_known_stream_is_dropped() -> None:
    router = Session(Role.ROUTER)
    sid = router.open_stream()
    assert router.receive(bytes([42, 0]) + sid.to_bytes(4, "big") + b"x") == []
    assert router.state(sid) is StreamState.OPEN


def test_router_ids_count_from_one_and_wrap_at_int32() -> None:
    router = Session(Role.ROUTER)
    assert [router.open_stream() for _ in range(3)] == [1, 2, 3]
    router = Session(Role.ROUTER, first_id=v3.MAX_STREAM_ID - 1)
    first = router.open_stream()
    assert [first, router.open_stream()] == [v3.MAX_STREAM_ID - 1, v3.MAX_STREAM_ID]
    assert router.open_stream() == 1
    assert router.open_stream() == 2


def test_forgotten_stream_drops_its_frames() -> None:
    router = Session(Role.ROUTER)
    sid = router.open_stream()
    router.forget(sid)
    assert router.receive(v3.data_frame(sid, b"x")) == []


# --------------------------------------------------------------------------- our own mistakes

LOCAL_ERROR_ROWS = [
    pytest.param(lambda s, i: s.send_data(i, b"x"), id="data-after-our-end"),
    pytest.param(lambda s, i: s.send_data(i, end_stream=True), id="second-end"),
    pytest.param(lambda s, i: s.send_head(i, HEAD), id="head-after-our-end"),
    pytest.param(lambda s, i: s.send_data(i + 1, b"x"), id="unknown-stream"),
]


@pytest.mark.parametrize("action", LOCAL_ERROR_ROWS)
def test_sending_after_our_end_is_a_local_error(action) -> None:  # noqa: ANN001
    router = Session(Role.ROUTER)
    sid = router.open_stream()
    router.send_head(sid, HEAD, end_stream=True)
    with pytest.raises(LocalProtocolError):
        action(router, sid)


def test_only_the_router_opens_streams() -> None:
    with pytest.raises(LocalProtocolError):
        Session(Role.CONNECTOR).open_stream()


@pytest.mark.parametrize("message", [b"", b"\x00\x00\x00\x00\x01",
                                     v3.window_update_frame(1, 1)[:7]])
def test_malformed_messages_are_remote_errors(message: bytes) -> None:
    router = Session(Role.ROUTER)
    router.open_stream()
    with pytest.raises(RemoteProtocolError):
        router.receive(message)


# --------------------------------------------------------------------------- the table itself

def test_transition_table_rows() -> None:
    s, m = StreamState, Move
    assert TRANSITIONS[s.OPEN, m.SEND_END] is s.HALF_CLOSED_LOCAL
    assert TRANSITIONS[s.OPEN, m.RECV_END] is s.HALF_CLOSED_REMOTE
    assert TRANSITIONS[s.HALF_CLOSED_LOCAL, m.RECV_END] is s.CLOSED
    assert TRANSITIONS[s.HALF_CLOSED_REMOTE, m.SEND_END] is s.CLOSED
    assert all(TRANSITIONS[state, m.SEND_RESET] in (s.RESET, s.CLOSED) for state in s)
    assert (s.CLOSED, m.RECV_RESET) not in TRANSITIONS
    assert (s.HALF_CLOSED_LOCAL, m.SEND_END) not in TRANSITIONS


# --------------------------------------------------------------------------- flow control, as the
# fake-peer tests exercise it through sockets (tests/e2e/test_v3_fake_peers.py)


def test_an_unacknowledged_stream_pauses_alone() -> None:
    router, connector = pair()
    stalled, other = router.open_stream(), router.open_stream()
    for sid in (stalled, other):
        deliver(connector, router.send_head(sid, "POST /x HTTP/1.1\r\n\r\n"))
    while not router.paused(stalled):
        deliver(connector, router.send_data(stalled, b"x" * 8192))
    deliver(connector, router.send_data(other, b"y" * 8192))
    assert not router.paused(other)
    assert connector.streams[stalled].unacked > v3.HIGH_WATER


def test_a_body_acknowledged_as_it_arrives_never_pauses() -> None:
    router, connector = pair()
    sid = router.open_stream()
    deliver(connector, router.send_head(sid, HEAD))
    deliver(router, connector.ack(sid))  # the head
    for _ in range(256):  # 2 MiB in 8 KiB pieces, each acknowledged once written onward
        deliver(connector, router.send_data(sid, b"x" * 8192))
        deliver(router, connector.ack(sid))
        assert not router.paused(sid)
    assert router.streams[sid].window.unacked == 0
