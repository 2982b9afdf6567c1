"""Pure tests of crank_sync.protocol.client_address: parsing forwarding headers and walking
them from the right past trusted proxies."""
from __future__ import annotations

import ipaddress

import pytest

from crank_sync.hooks import Headers
from crank_sync.protocol.client_address import (
    TrustedProxies,
    client_address,
    forwarded_hops,
    parse_address,
    x_forwarded_for_hops,
)

A = ipaddress.ip_address


@pytest.mark.parametrize("text, expected", [
    ("1.2.3.4", "1.2.3.4"),
    (" 1.2.3.4 ", "1.2.3.4"),
    ("1.2.3.4:8080", "1.2.3.4"),
    ("1.2.3.4:_port", "1.2.3.4"),  # obfuscated port (RFC 7239 6.3)
    ("2001:db8::1", "2001:db8::1"),
    ("2001:DB8:0:0::1", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("::ffff:10.0.0.1", "10.0.0.1"),  # IPv4-mapped: the IPv4 address
    ("fe80::1%eth0", "fe80::1"),
    ("unknown", None),
    ("_hidden", None),
    ("", None),
    ("example.com", None),
    ("1.2.3.4:", None),
    ("1.2.3.4:x", None),
    ("[2001:db8::1", None),
    ("[2001:db8::1]x", None),
    ("[2001:db8::1]:", None),
    ("999.1.1.1", None),
])
def test_parse_address(text: str, expected: str | None) -> None:
    address = parse_address(text)
    assert (str(address) if address else None) == expected


@pytest.mark.parametrize("lines, expected", [
    (["for=192.0.2.60;proto=http;by=203.0.113.43"], ["192.0.2.60"]),
    (["for=192.0.2.43, for=198.51.100.17"], ["192.0.2.43", "198.51.100.17"]),
    (["for=192.0.2.43", "for=198.51.100.17"], ["192.0.2.43", "198.51.100.17"]),
    (['for="[2001:db8:cafe::17]:4711"'], ["2001:db8:cafe::17"]),
    (['for="[2001:db8:cafe::17]"'], ["2001:db8:cafe::17"]),
    (['For="192.0.2.1:80"'], ["192.0.2.1"]),  # names are case-insensitive
    (["for=unknown, for=10.0.0.1"], [None, "10.0.0.1"]),
    (["for=_hidden, for=10.0.0.1"], [None, "10.0.0.1"]),
    (["by=10.0.0.9;proto=https"], [None]),  # an element without for=
    (['for="[2001:db8::1"'], [None]),  # a broken quoted string
    (['for="1.2.3.4,5.6.7.8", for=10.0.0.1'], [None, "10.0.0.1"]),  # comma inside quotes
    (['proto="a;b";for=10.0.0.2'], ["10.0.0.2"]),  # ; inside quotes
    ([" , for=10.0.0.3 ,"], ["10.0.0.3"]),  # empty elements are skipped
])
def test_forwarded_hops(lines: list[str], expected: list[str | None]) -> None:
    assert [str(h) if h else None for h in forwarded_hops(lines)] == expected


@pytest.mark.parametrize("lines, expected", [
    (["203.0.113.7"], ["203.0.113.7"]),
    (["203.0.113.7, 10.0.0.1"], ["203.0.113.7", "10.0.0.1"]),
    (["203.0.113.7", "10.0.0.1,10.0.0.2"], ["203.0.113.7", "10.0.0.1", "10.0.0.2"]),
    (["2001:db8::5, [2001:db8::6]:99"], ["2001:db8::5", "2001:db8::6"]),
    (["unknown, 10.0.0.1"], [None, "10.0.0.1"]),
    ([",, 10.0.0.1"], ["10.0.0.1"]),
])
def test_x_forwarded_for_hops(lines: list[str], expected: list[str | None]) -> None:
    assert [str(h) if h else None for h in x_forwarded_for_hops(lines)] == expected


TRUSTED = TrustedProxies(["10.0.0.0/8", "fd00::/8", "127.0.0.1"])


@pytest.mark.parametrize("peer, hops, expected", [
    # an untrusted peer: its header is never read
    ("203.0.113.9", ["1.1.1.1"], "203.0.113.9"),
    ("203.0.113.9", [], "203.0.113.9"),
    # a trusted peer: the right-most untrusted hop
    ("10.0.0.1", ["203.0.113.7"], "203.0.113.7"),
    ("10.0.0.1", ["6.6.6.6", "203.0.113.7"], "203.0.113.7"),  # the left one may be forged
    ("10.0.0.1", ["6.6.6.6", "203.0.113.7", "10.0.0.2"], "203.0.113.7"),
    ("127.0.0.1", ["10.0.0.5", "10.0.0.6"], "10.0.0.5"),  # all trusted: the left-most
    ("10.0.0.1", [], "10.0.0.1"),  # a trusted peer without the header: itself
    # an unreadable hop ends the walk at the last address we could trust
    ("10.0.0.1", ["203.0.113.7", None], "10.0.0.1"),
    ("10.0.0.1", ["203.0.113.7", None, "10.0.0.2"], "10.0.0.2"),
    ("10.0.0.1", [None, "203.0.113.7"], "203.0.113.7"),  # the walk ended before it
    # IPv6 peers and hops
    ("fd00::1", ["2001:db8::7"], "2001:db8::7"),
    ("::ffff:10.0.0.1", ["203.0.113.7"], "203.0.113.7"),  # a mapped peer counts as IPv4
    ("2001:db8::9", ["203.0.113.7"], "2001:db8::9"),
    # a peer text that is no address is returned as it is
    ("not-an-ip", ["203.0.113.7"], "not-an-ip"),
])
def test_client_address_walk(peer: str, hops: list[str | None], expected: str) -> None:
    parsed = [A(h) if h else None for h in hops]
    assert client_address(peer, parsed, TRUSTED) == expected


@pytest.mark.parametrize("header, lines, expected", [
    ("x-forwarded-for", [("X-Forwarded-For", "6.6.6.6, 203.0.113.7")], "203.0.113.7"),
    ("x-forwarded-for", [("Forwarded", "for=203.0.113.7")], "10.0.0.1"),  # not the trusted one
    ("forwarded", [("Forwarded", 'for="[2001:db8::7]:1234"')], "2001:db8::7"),
    ("forwarded", [("X-Forwarded-For", "203.0.113.7")], "10.0.0.1"),
    ("forwarded", [("Forwarded", "for=6.6.6.6"), ("Forwarded", "for=203.0.113.8")],
     "203.0.113.8"),
    ("forwarded", [("Forwarded", "for=_hidden")], "10.0.0.1"),
])
def test_client_of_reads_only_the_configured_header(header: str, lines: list[tuple[str, str]],
                                                    expected: str) -> None:
    trusted = TrustedProxies(["10.0.0.0/8"], header)
    assert trusted.client_of("10.0.0.1", Headers(lines)) == expected


def test_an_unknown_header_is_refused() -> None:
    with pytest.raises(ValueError, match="x-forwarded-for or forwarded"):
        TrustedProxies(["10.0.0.0/8"], "x-real-ip")
