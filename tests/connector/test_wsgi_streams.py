"""The in-process WSGI target's two streams, without sockets: ``wsgi.input`` (RequestInput)
read in any mix of calls over any chunking of the tunnel's body, and the response's ``read1``
over chunks larger than one piece. Both are compared with ``io.BytesIO``, and their memory is
measured with tracemalloc: a large read holds the body about once, not twice."""
from __future__ import annotations

import io
import itertools
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from crank_sync.connector.wsgi import RequestInput, WsgiResponse
from crank_sync.connector.wsgi_call import AppCall

BODY = bytes(range(256)) * 40  # 10 KiB


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


operations = st.lists(st.tuples(st.sampled_from(["read", "readline", "read_all"]),
                                st.integers(min_value=-1, max_value=3000)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=20),
       ops=operations, lines=st.booleans())
def test_request_input_reads_like_a_file(cuts, ops, lines):
    data = BODY.replace(b"\x0a", b"x") if not lines else BODY
    stream = RequestInput(iter(chunked(data, cuts)))
    reference = io.BytesIO(data)
    for op, n in ops:
        if op == "read":
            assert stream.read(n) == reference.read(n)
        elif op == "readline":
            assert stream.readline(n) == reference.readline(n)
        else:
            assert stream.read() == reference.read()
    assert stream.read() == reference.read()
    assert stream.read(10) == b""
    assert stream.bytes_read == len(data)


def test_a_large_read_holds_the_body_once():
    size, piece = 16 * 1024 * 1024, 64 * 1024
    block = b"x" * piece

    def body():
        for _ in range(size // piece):
            yield bytes(block)  # a new object each time, as the tunnel hands them over

    stream = RequestInput(body())
    tracemalloc.start()
    try:
        got = stream.read(size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(got) == size
    assert peak < size * 1.25, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB read"


def test_read_stops_at_the_size_and_keeps_the_rest():
    stream = RequestInput(iter([b"abc", b"defgh", b"ij"]))
    assert stream.read(4) == b"abcd"
    assert stream.readline() == b"efghij"
    assert stream.read() == b""


def response_of(chunks: list[bytes]) -> WsgiResponse:
    call = AppCall(0)
    call.start_response("200 OK", [("Content-Length", str(sum(map(len, chunks))))])
    resp = WsgiResponse(call, chunks, "GET")
    resp.start()
    return resp


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=300_000), max_size=6),
       amt=st.integers(min_value=1, max_value=100_000))
def test_read1_returns_every_byte_in_order(sizes, amt):
    chunks = [bytes([i]) * n for i, n in enumerate(sizes)]
    resp = response_of(chunks)
    pieces = []
    while piece := resp.read1(amt):
        assert len(piece) <= amt
        pieces.append(piece)
    assert b"".join(pieces) == b"".join(chunks)


def test_read1_copies_a_large_chunk_once():
    size, amt = 32 * 1024 * 1024, 64 * 1024
    resp = response_of([b"y" * size])
    tracemalloc.start()
    try:
        total = 0
        while piece := resp.read1(amt):
            total += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    # slicing the remainder off at every piece would hold a second copy of the body
    assert peak < 4 * amt
