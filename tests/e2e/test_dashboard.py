"""The dashboard at ``/`` on the registration port, rendered by a real headless browser.

Chromium loads the page from a real router with real connectors registered, runs its
JavaScript (which polls the JSON endpoints) and dumps the resulting DOM; the test reads the
values the script filled in. Skipped only where no chromium is installed.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from crank_test_support import LOOPBACK, V3_PREFERRED, wait_for

import crank_sync

BROWSER_TIMEOUT_SECONDS = 60


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium: install Debian's chromium")


def dump_dom(url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran for 5 s of virtual time."""
    cmd = [
        find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
        "--dump-dom", url,
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=BROWSER_TIMEOUT_SECONDS,
                          text=True, check=False)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    assert "<html" in proc.stdout, f"no DOM from chromium: {proc.stderr[-2000:]}"
    return proc.stdout


def cells(dom: str, css_class: str) -> list[str]:
    """Text of every ``<td>`` whose class list contains ``css_class`` (unescaped)."""
    pattern = re.compile(r'<td class="([^"]*)"[^>]*>(.*?)</td>', re.S)
    return [html.unescape(text) for classes, text in pattern.findall(dom)
            if css_class in classes.split()]


def element_text(dom: str, element_id: str) -> str:
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', dom, re.S)
    assert match, f"no element #{element_id} in the DOM"
    return html.unescape(match.group(2))


def test_dashboard_is_served_self_contained(router):
    with requests.Session() as s:
        s.trust_env = False
        resp = s.get(f"http://{LOOPBACK}:{router.registration_port}/", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    page = resp.text
    for endpoint in ('"health"', '"health/connectors"', '"api/stats"', '"api/dark-mode"'):
        assert endpoint in page, f"dashboard does not poll {endpoint}"
    # no external resources and no innerHTML with connector-supplied strings
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert "innerHTML" not in page and "outerHTML" not in page
    assert "document.write" not in page


def test_dashboard_renders_live_data_in_a_browser(router, target, connector_factory,
                                                  tmp_path):
    find_chromium()
    v1 = connector_factory(target, route="dash-route", sliding_window=2,
                           component_name="dash-component", protocols=("1.0",))
    evil = '<img src=x onerror="document.title=1">&amp;'
    v3 = connector_factory(target, route="dash-v3", sliding_window=1, component_name=evil,
                           protocols=V3_PREFERRED)
    with requests.Session() as s:
        s.trust_env = False
        base = f"http://{LOOPBACK}:{router.http_port}"
        for i in range(3):
            assert s.get(f"{base}/dash-route/bytes/10?seed={i}", timeout=10).status_code == 200
        admin = f"http://{LOOPBACK}:{router.registration_port}"
        assert s.put(f"{admin}/api/dark-mode/10.9.8.7", timeout=10).status_code == 200
    wait_for(lambda: router.idle_sockets("dash-route") >= 2, what="dash-route window restored")

    dom = dump_dom(f"http://{LOOPBACK}:{router.registration_port}/", tmp_path / "profile")

    assert element_text(dom, "status") == "ok", "the dashboard script did not run"
    assert element_text(dom, "version") == crank_sync.__version__
    assert element_text(dom, "requests-total") == "3"
    routes = cells(dom, "route")
    assert "dash-route" in routes and "dash-v3" in routes
    instances = cells(dom, "instance")
    assert sorted(instances) == sorted([v1.connector_instance_id, v3.connector_instance_id])
    protocols = cells(dom, "protocol")
    assert "cranker_1.0" in protocols and "cranker_3.0" in protocols
    assert LOOPBACK in cells(dom, "ip")
    assert "dash-component" in cells(dom, "component")
    # the connector-supplied name is shown as text, not parsed as markup
    assert evil in cells(dom, "component")
    assert "<img" not in dom
    assert re.search(r'<li class="dark-host">10\.9\.8\.7</li>', dom)
    rates = cells(dom, "rate")
    # polled at least twice in 5 s of virtual time: every route has a rate
    assert rates and all(re.fullmatch(r"\d+\.\d\d", r) for r in rates), rates


def test_dashboard_shows_dark_connectors(router, target, connector_factory, tmp_path):
    find_chromium()
    conn = connector_factory(target, route="dark-route", sliding_window=1)
    with requests.Session() as s:
        s.trust_env = False
        resp = s.put(f"http://{LOOPBACK}:{router.registration_port}/api/dark-mode/{LOOPBACK}",
                     timeout=10)
        assert resp.status_code == 200
    dom = dump_dom(f"http://{LOOPBACK}:{router.registration_port}/", tmp_path / "profile")
    assert element_text(dom, "status") == "ok"
    row = re.search(rf'<tr class="connector-row" data-instance="{conn.connector_instance_id}">'
                    r"(.*?)</tr>", dom, re.S)
    assert row, "no row for the dark connector"
    assert 'class="badge dark-badge"' in row.group(1)
    assert re.search(rf'<li class="dark-host">{re.escape(LOOPBACK)}</li>', dom)


def test_dashboard_status_while_draining(router_factory, target, connector_factory,
                                        tmp_path: Path) -> None:
    """A draining router answers /health with 503; the page shows that status, not an error."""
    find_chromium()
    router = router_factory(drain_timeout=60.0)
    connector_factory(target, route="svc", routers=[router], sliding_window=1)
    result: dict[str, Any] = {}

    def slow() -> None:
        with requests.Session() as s:
            s.trust_env = False
            try:
                result["resp"] = s.get(f"http://{LOOPBACK}:{router.http_port}/svc/slow",
                                       timeout=90)
            except Exception as err:
                result["error"] = err

    client = threading.Thread(target=slow, name="test-slow-request")
    client.start()
    stopper = threading.Thread(target=router_factory.stop, args=(router,),
                               name="test-router-stopper")
    try:
        wait_for(lambda: target.received_for("/svc/slow"), what="slow request at the target")
        stopper.start()
        wait_for(lambda: health_status(router) == 503, what="/health 503 while draining")
        dom = dump_dom(f"http://{LOOPBACK}:{router.registration_port}/", tmp_path / "profile")
    finally:
        target.release.set()
        client.join(30)
        if stopper.ident is not None:
            stopper.join(30)
    assert element_text(dom, "status") == "draining"
    assert result.get("resp") is not None and result["resp"].status_code == 200, result


def health_status(router: Any) -> int:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(f"http://{LOOPBACK}:{router.registration_port}/health", timeout=10).status_code
