"""A real DNS server (dnslib) on a free loopback UDP port whose records a test changes while
connectors look routers up in it: ``records["routers.test"] = ["127.0.0.1", "127.0.0.2"]``.
``failing = True`` answers SERVFAIL to everything (a DNS outage)."""
from __future__ import annotations

import threading
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from .sockets import LOOPBACK


class _Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.failing = False
        self.queries = 0
        self.lock = threading.Lock()

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        with self.lock:
            self.queries += 1
            if self.failing:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            addresses = list(self.records.get(name, ()))
        if name not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for address in addresses:
            v6 = ":" in address
            if request.q.qtype == (QTYPE.AAAA if v6 else QTYPE.A):
                reply.add_answer(RR(request.q.qname, request.q.qtype, ttl=1,
                                    rdata=AAAA(address) if v6 else A(address)))
        return reply


class DnsServer:
    """Started on construction; ``address`` is ``127.0.0.1:PORT`` for ``dns_server=``."""

    def __init__(self) -> None:
        self.zone = _Zone()
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data",
                          logf=lambda _text: None)
        self._dns = DNSServer(self.zone, address=LOOPBACK, port=0, logger=quiet)
        self.port = self._dns.server.server_address[1]
        self.address = f"{LOOPBACK}:{self.port}"
        self._thread = threading.Thread(target=self._dns.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, name="test-dns-server",
                                        daemon=True)
        self._thread.start()

    def set(self, name: str, addresses: list[str]) -> None:
        with self.zone.lock:
            self.zone.records[name] = list(addresses)

    @property
    def failing(self) -> bool:
        return self.zone.failing

    @failing.setter
    def failing(self, value: bool) -> None:
        with self.zone.lock:
            self.zone.failing = value

    @property
    def queries(self) -> int:
        with self.zone.lock:
            return self.zone.queries

    def stop(self) -> None:
        self._dns.server.shutdown()
        self._dns.server.server_close()
        self._thread.join(10)
