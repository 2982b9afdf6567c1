"""A busy router holds far more than 1,024 file descriptors; nothing may rely on select()."""
from __future__ import annotations

import http.client
import logging
import os
import resource

import pytest
from support import LOOPBACK, both_protocols


@pytest.fixture
def high_descriptors():
    """Occupy descriptors so that every new socket gets a number above 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low to test descriptors above 1,024")
    if soft != resource.RLIM_INFINITY and soft < 1400:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1400 if hard == resource.RLIM_INFINITY
                                                    else min(hard, 4096), hard))
    held = []
    try:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY)
            held.append(fd)
            if fd > 1100:
                break
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@both_protocols
def test_slow_request_on_a_high_descriptor_completes(high_descriptors, router, target,
                                                     connector_factory, caplog):
    connector_factory(target, route="svc")
    client = http.client.HTTPConnection(LOOPBACK, router.http_port, timeout=20)
    try:
        # the router checks every 0.25 s whether the client left; with select() that check
        # failed for descriptors above 1,024 and dropped the client
        client.request("GET", "/svc/slow?seconds=1")
        resp = client.getresponse()
        assert resp.status == 200
        assert resp.read() == b"slow done\n"
        # the connector reuses its target connection (a high descriptor too): its check that
        # the target did not close it meanwhile must not rely on select() either
        for _ in range(2):
            client.request("GET", "/svc/bytes/10?seed=1")
            again = client.getresponse()
            assert again.status == 200
            assert len(again.read()) == 10
    finally:
        client.close()
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, failures
