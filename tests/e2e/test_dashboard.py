"""The dashboard at ``/`` on the registration port, driven in a real headless browser.

Debian's chromium and chromedriver (installed by .ci/run) run the page against a real router
with real connectors and the conftest target; Selenium reads the DOM the page's script built
from the JSON endpoints, clicks its buttons, and collects the browser's console and network
logs. Skipped only where chromium or chromedriver is not installed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import JavascriptException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from support import LOOPBACK, V3_PREFERRED, single_protocols, wait_for

import crank_sync

PAGE_TIMEOUT = 30.0
ADMIN_TOKEN = "dash-admin-token-8a1f"


def _binary(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                      else None)
        if path:
            return path
    return None


class Page:
    """One headless Chromium window, with the helpers the tests read the page through."""

    def __init__(self, chromium: str, chromedriver: str, profile: Path) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-proxy-server", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1300,1000",
                    f"--user-data-dir={profile}"):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path=chromedriver),
                                       options=options)
        self.driver.set_page_load_timeout(PAGE_TIMEOUT)
        self.driver.set_script_timeout(PAGE_TIMEOUT)
        self.console: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []

    def open(self, router: Any) -> None:
        self.driver.get(f"http://{LOOPBACK}:{router.registration_port}/")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, script: str, what: str, *args: Any) -> Any:
        """Poll a JavaScript expression (``return ...``) until it is truthy."""
        def check() -> Any:
            try:
                return self.js(script, *args)
            except JavascriptException:
                return None
        return wait_for(check, timeout=PAGE_TIMEOUT, what=what)

    def card(self, route: str) -> str:
        return f'document.querySelector(\'.route-card[data-route="{route}"]\')'

    def collect_logs(self) -> None:
        self.console.extend(self.driver.get_log("browser"))
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"])

    def console_errors(self) -> list[str]:
        self.collect_logs()
        return [e["message"] for e in self.console if e["level"] == "SEVERE"]

    def quit(self) -> None:
        self.driver.quit()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    chromium = _binary("chromium", "chromium-browser")
    chromedriver = _binary("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("no chromium/chromedriver: install Debian's chromium and chromium-driver")
    browser = Page(chromium, chromedriver, tmp_path / "profile")
    try:
        yield browser
    finally:
        browser.quit()


def get(url: str, **kwargs: Any) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(url, timeout=10, **kwargs)


def test_dashboard_is_served_self_contained(router):
    resp = get(f"http://{LOOPBACK}:{router.registration_port}/")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    page = resp.text
    for endpoint in ('"health"', '"health/connectors"', '"api/stats"', '"api/dark-mode"',
                     '"api/timeseries?minutes=15"'):
        assert endpoint in page, f"dashboard does not poll {endpoint}"
    # no external resources and no innerHTML with connector-supplied strings
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert "innerHTML" not in page and "outerHTML" not in page
    assert "document.write" not in page


def test_timeseries_endpoint(router, target, connector_factory):
    connector_factory(target, route="ts", sliding_window=1, protocols=("1.0",))
    admin = f"http://{LOOPBACK}:{router.registration_port}"

    def since() -> float:
        entry = get(f"{admin}/health/connectors").json()["services"]["ts"]["connectors"][0]
        return float(entry["registeredSince"])

    first = since()
    assert first <= time.time()
    base = f"http://{LOOPBACK}:{router.http_port}"
    assert get(f"{base}/ts/bytes/100").status_code == 200
    assert get(f"{base}/ts/status/404").status_code == 404
    wait_for(lambda: router.idle_sockets("ts") >= 1, what="ts window restored")
    # both v1 sockets were replaced by new ones: the instance's registration time stays
    assert since() == first
    body = get(f"{admin}/api/timeseries?minutes=5").json()
    assert body["bucket_seconds"] == 10 and len(body["start"]) == 30
    series = body["routes"]["ts"]
    assert sum(series["requests"]) == 2 and sum(series["4xx"]) == 1
    assert sum(series["bytes_out"]) > 100
    assert [v for v in series["p50_ms"] if v is not None]
    assert body["states"]["ts"]["state"] == "up"
    for bad in ("0", "16", "x"):
        assert get(f"{admin}/api/timeseries?minutes={bad}").status_code == 400


def test_dashboard_renders_live_data_in_a_browser(router, target, connector_factory, page):
    v1 = connector_factory(target, route="dash-route", sliding_window=2,
                           component_name="dash-component", protocols=("1.0",))
    evil = '<img src=x onerror="document.title=1">&amp;'
    v3 = connector_factory(target, route="dash-v3", sliding_window=1, component_name=evil,
                           protocols=V3_PREFERRED)
    base = f"http://{LOOPBACK}:{router.http_port}"
    for i in range(3):
        assert get(f"{base}/dash-route/bytes/1000?seed={i}").status_code == 200
    assert get(f"{base}/dash-route/status/404").status_code == 404
    admin = f"http://{LOOPBACK}:{router.registration_port}"
    with requests.Session() as s:
        s.trust_env = False
        assert s.put(f"{admin}/api/dark-mode/10.9.8.7", timeout=10).status_code == 200
    wait_for(lambda: router.idle_sockets("dash-route") >= 2, what="dash-route window restored")

    page.open(router)
    card = page.card("dash-route")
    page.wait(f"return {card} && {card}.getAttribute('data-requests') === '4'",
              "the dash-route card with its 4 requests")
    assert page.js("return document.getElementById('status').textContent") == "ok"
    assert page.js("return document.getElementById('version').textContent") == \
        crank_sync.__version__
    assert page.js("return document.getElementById('requests-total').textContent") == "4"

    def series(route: str, name: str, attr: str) -> str:
        return page.js(f"return {page.card(route)}.querySelector("
                       f"'path.line[data-series=\"{name}\"]').getAttribute('{attr}')")

    # the charts hold the traffic: one bucket or two (the requests may straddle a boundary)
    assert 1 <= int(series("dash-route", "rps", "data-points")) <= 2
    assert series("dash-route", "4xx", "data-sum") == "1"
    assert series("dash-route", "5xx", "data-sum") == "0"
    assert int(series("dash-route", "p50_ms", "data-points")) >= 1
    assert int(series("dash-route", "out_bps", "data-points")) >= 1
    assert series("dash-v3", "rps", "data-points") == "0"
    rps_path = series("dash-route", "rps", "d")
    assert len(re.findall(r"[ML]", rps_path)) == 90, "one point per 10 s over 15 minutes"

    # hovering a chart reads out one bucket: its time and values
    chart = page.driver.find_element(
        By.CSS_SELECTOR, '.route-card[data-route="dash-route"] [data-chart="requests"] svg')
    ActionChains(page.driver).move_to_element(chart).perform()
    caption = page.js(f"return {card}.querySelector('[data-chart=\"requests\"] .chart-value')"
                      ".textContent")
    assert re.fullmatch(r"\d\d:\d\d:\d\d  req/s \d+\.\d\d/s", caption), caption
    peak = page.js(f"return {card}.querySelector('[data-chart=\"errors\"] .chart-peak')"
                   ".textContent")
    assert peak == "peak 1"

    states = page.js("return Array.from(document.querySelectorAll('.route-card'))"
                     ".map(c => [c.dataset.route, c.dataset.state])")
    assert ["dash-route", "up"] in states and ["dash-v3", "up"] in states

    def texts(selector: str) -> list[str]:
        return page.js(f"return Array.from(document.querySelectorAll('{selector}'))"
                       ".map(e => e.textContent)")

    instances = texts(".connector-row .instance")
    assert sorted(instances) == sorted([v1.connector_instance_id, v3.connector_instance_id])
    protocols = texts(".connector-row .protocol")
    assert "cranker_1.0" in protocols and "cranker_3.0" in protocols
    assert LOOPBACK in texts(".connector-row .ip")
    assert all(re.fullmatch(r"127\.0\.0\.1:\d+(, :\d+)*", a) for a in texts(".address"))
    idle = texts('.route-card[data-route="dash-route"] .sockets-idle')
    assert len(idle) == 1 and int(idle[0]) >= 2, idle
    assert all(re.match(r"\d\d:\d\d:\d\d \(", s) for s in texts(".connector-row .since"))
    components = texts(".connector-row .component")
    assert "dash-component" in components
    # the connector-supplied name is shown as text, not parsed as markup
    assert evil in components
    assert page.js("return document.querySelectorAll('img').length") == 0
    assert page.js("return document.title") == "crank_sync router"
    assert "10.9.8.7" in texts("li.dark-host")
    assert page.console_errors() == []


@single_protocols
def test_dashboard_shows_a_route_without_connectors_as_down(router_factory, target,
                                                            connector_factory, page):
    # the route is kept (503) for route_keep_time after its last connector left, and shown
    # as down meanwhile (test_route_lifecycle checks it goes once the keep time is over)
    router = router_factory(connector_max_wait=0.5, route_keep_time=600.0)
    gone = connector_factory(target, route="gone", routers=[router], sliding_window=1)
    connector_factory(target, route="stays", routers=[router], sliding_window=1)
    assert get(f"http://{LOOPBACK}:{router.http_port}/gone/bytes/10").status_code == 200
    page.open(router)
    card = page.card("gone")
    page.wait(f"return {card} && {card}.dataset.state === 'up'", "the gone route shown as up")

    assert connector_factory.stop(gone)
    wait_for(lambda: not any(router.registry.snapshot().get("gone", {}).values()),
             what="the gone route's sockets closed")
    page.wait(f"return {card}.dataset.state === 'down'", "the gone route shown as down")
    assert get(f"http://{LOOPBACK}:{router.http_port}/gone/bytes/1").status_code == 503
    page.js("location.reload()")
    page.wait(f"return {card} && {card}.dataset.state === 'down'",
              "the gone route still shown as down after a reload")
    assert page.js(f"return {card}.querySelector('.state').textContent") == "down"
    note = page.js(f"return {card}.querySelector('.down-note').textContent")
    assert note.startswith("All connectors have gone")
    assert page.js(f"return {card}.querySelector('td.empty').textContent") == "no connectors"
    # its history stays on the charts
    assert page.js(f"return {card}.dataset.requests") == "1"
    assert page.js(f"return {page.card('stays')}.dataset.state") == "up"
    assert page.js("return document.getElementById('routes-down').textContent") == "1"
    assert page.console_errors() == []


def test_dashboard_button_turns_a_host_dark_and_back(router, target, connector_factory, page):
    conn = connector_factory(target, route="dark-route", sliding_window=1)
    page.open(router)
    row = f'document.querySelector(\'tr.connector-row[data-instance="{conn.connector_instance_id}"]\')'
    page.wait(f"return {row}", "the connector's row")
    assert page.js(f"return {row}.querySelector('.dark-badge')") is None

    page.js(f"{row}.querySelector('button.dark-toggle').click()")
    wait_for(lambda: router.registry.dark_ips() == [LOOPBACK], what="the host dark in the router")
    page.wait(f"return {row} && {row}.querySelector('.dark-badge')", "the dark badge")
    page.wait(f"return Array.from(document.querySelectorAll('li.dark-host'))"
              f".some(e => e.textContent === '{LOOPBACK}')", "the host in the dark list")
    assert page.js(f"return {row}.querySelector('button.dark-toggle').textContent") == \
        "bring back"

    page.js(f"{row}.querySelector('button.dark-toggle').click()")
    wait_for(lambda: router.registry.dark_ips() == [], what="the host back in rotation")
    page.wait(f"return {row} && !{row}.querySelector('.dark-badge')", "the dark badge gone")
    assert page.console_errors() == []


def test_dashboard_theme_follows_the_system_then_the_toggle(router, page):
    page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    page.open(router)
    loaded = "return document.getElementById('status').textContent === 'ok'"
    page.wait(loaded, "the page loaded")
    theme = "return document.documentElement.dataset.theme"
    background = "return getComputedStyle(document.body).backgroundColor"
    assert page.js(theme) == "dark", "the first theme follows prefers-color-scheme"
    dark = page.js(background)
    page.js("document.getElementById('theme-toggle').click()")
    assert page.js(theme) == "light"
    light = page.js(background)
    assert light != dark
    page.driver.refresh()  # the choice is remembered
    page.wait(loaded, "the page reloaded")
    assert page.js(theme) == "light" and page.js(background) == light
    page.js("document.getElementById('theme-toggle').click()")
    assert page.js(theme) == "dark" and page.js(background) == dark
    assert page.console_errors() == []


def test_dashboard_asks_for_the_admin_token_once(router_factory, target, connector_factory,
                                                 page, caplog):
    caplog.set_level(logging.DEBUG, logger="crank_sync")
    router = router_factory(admin_tokens=(ADMIN_TOKEN,))
    connector_factory(target, route="guarded", routers=[router], sliding_window=1)
    assert get(f"http://{LOOPBACK}:{router.http_port}/guarded/bytes/10").status_code == 200

    page.open(router)
    page.wait("return !document.getElementById('token-panel').hidden", "the token form")
    assert page.js("return document.querySelectorAll('.route-card').length") == 0

    def submit(token: str) -> None:
        page.js("document.getElementById('token-input').value = arguments[0];"
                "document.getElementById('token-submit').click()", token)

    submit("not-the-token")
    page.wait("return !document.getElementById('token-panel').hidden && "
              "document.getElementById('token-message').textContent !== ''",
              "the form again, saying the token was refused")
    submit(ADMIN_TOKEN)
    card = page.card("guarded")
    page.wait(f"return {card} && {card}.dataset.requests === '1'", "data loaded with the token")
    assert page.js("return document.getElementById('token-panel').hidden") is True
    assert page.js("return sessionStorage.getItem('crank-admin-token')") == ADMIN_TOKEN
    assert page.js("return localStorage.getItem('crank-admin-token')") is None

    page.driver.refresh()  # the same tab keeps it: no second prompt
    page.wait(f"return {card} && {card}.dataset.requests === '1'", "data after a reload")
    assert page.js("return document.getElementById('token-panel').hidden") is True

    page.collect_logs()
    urls = [r["url"] for r in page.requests]
    assert any(u.endswith("/api/timeseries?minutes=15") for u in urls), urls
    assert not [u for u in urls if ADMIN_TOKEN in u]
    sent = [r for r in page.requests if "/api/" in r["url"]
            and r.get("headers", {}).get("Authorization") == f"Bearer {ADMIN_TOKEN}"]
    assert sent, "no API request carried the token as a bearer header"
    assert ADMIN_TOKEN not in caplog.text
    # the only console errors are the refusals before the right token was given
    errors = page.console_errors()
    assert errors and all("403" in e for e in errors), errors


def test_dashboard_status_while_draining(router_factory, target, connector_factory,
                                        page) -> None:
    """A draining router answers /health with 503; the page shows that status, not an error."""
    router = router_factory(drain_timeout=60.0)
    connector_factory(target, route="svc", routers=[router], sliding_window=1)
    result: dict[str, Any] = {}

    def slow() -> None:
        try:
            with requests.Session() as s:
                s.trust_env = False
                result["resp"] = s.get(f"http://{LOOPBACK}:{router.http_port}/svc/slow",
                                       timeout=90)
        except Exception as err:
            result["error"] = err

    client = threading.Thread(target=slow, name="test-slow-request")
    client.start()
    stopper = threading.Thread(target=router_factory.stop, args=(router,),
                               name="test-router-stopper")
    try:
        page.open(router)
        page.wait("return document.getElementById('status').textContent === 'ok'", "ok first")
        wait_for(lambda: target.received_for("/svc/slow"), what="slow request at the target")
        stopper.start()
        wait_for(lambda: health_status(router) == 503, what="/health 503 while draining")
        page.wait("return document.getElementById('status').textContent === 'draining'",
                  "the page showing draining")
    finally:
        target.release.set()
        client.join(30)
        if stopper.ident is not None:
            stopper.join(30)
    assert result.get("resp") is not None and result["resp"].status_code == 200, result


def health_status(router: Any) -> int:
    return get(f"http://{LOOPBACK}:{router.registration_port}/health").status_code



def test_dashboard_shows_requests_refused_by_limits(router_factory, target, connector_factory,
                                                    page):
    router = router_factory(routes={"limited": {"rate": "1/h", "burst": 1}})
    connector_factory(target, route="limited", routers=[router])
    base = f"http://{LOOPBACK}:{router.http_port}"
    assert [get(f"{base}/limited/bytes/1").status_code for _ in range(3)] == [200, 429, 429]
    page.open(router)
    page.wait("return document.getElementById('rejected-total').textContent === '2'",
              "the refused requests counted")
    row = 'document.querySelector(\'#limits tr[data-route="limited"]\')'
    cell = f"{row}.querySelector('[data-reason=\"rate_limit\"]').textContent"
    assert page.js(f"return {cell}") == "2"
    assert page.js(f"return {row}.querySelector('[data-reason=\"concurrency\"]').textContent") \
        == "0"
    assert page.console_errors() == []


def test_dashboard_counts_open_websockets(router, connector_factory, page):
    import websocket
    from support.ws_service import WebSocketService

    service = WebSocketService()
    try:
        connector_factory(service.url, protocols=("3.0",))
        clients = [websocket.create_connection(f"ws://{LOOPBACK}:{router.http_port}/svc/echo",
                                               timeout=15) for _ in range(3)]
        try:
            for ws in clients:
                ws.send("x")
                assert ws.recv() == "x"
            page.open(router)
            page.wait("return document.getElementById('websockets-open').textContent === '3'",
                      "three open websockets counted")
            assert get(f"http://{LOOPBACK}:{router.registration_port}/api/stats").json()[
                "websockets_open"] == {"svc": 3}
        finally:
            for ws in clients:
                ws.close()
        page.wait("return document.getElementById('websockets-open').textContent === '0'",
                  "the closed websockets no longer counted")
        assert page.console_errors() == []
    finally:
        service.stop()
