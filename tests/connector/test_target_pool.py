"""The connector's target pool: surplus connections past its size are closed quietly."""
from __future__ import annotations

import logging

from crank_test_support import deterministic_bytes

from crank_sync.connector.target import TargetClient
from crank_sync.protocol import RequestHead


def test_connections_past_the_pool_size_are_closed_without_a_warning(target, caplog):
    client = TargetClient(target.url, connect_timeout=5, read_timeout=5, maxsize=1)
    caplog.set_level(logging.DEBUG)
    try:
        head = RequestHead(method="GET", target="/svc/bytes/100?seed=1",
                           headers=(("Host", "127.0.0.1"),))
        # three at once: the pool keeps one connection, the other two are surplus
        responses = [client.send(head, None) for _ in range(3)]
        for resp in responses:
            assert resp.status == 200
            assert resp.read() == deterministic_bytes(100, 1)
            resp.release_conn()
        assert client.pool.num_connections == 3
        assert client.pool.pool is not None and client.pool.pool.qsize() == 1
        # the kept connection serves the next request
        again = client.send(head, None)
        assert again.read() == deterministic_bytes(100, 1)
        again.release_conn()
        assert client.pool.num_connections == 3
    finally:
        client.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warnings, [r.getMessage() for r in warnings]
    assert sum("closing a surplus connection" in r.getMessage() for r in caplog.records) == 2
