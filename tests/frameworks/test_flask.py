"""A real Flask app behind a real router: in-process (WSGI target) and through an HTTP target."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from support import LOOPBACK, deterministic_bytes, wait_for

pytest.importorskip("flask", reason="Flask is not installed (pip install -e '.[test]')")

from crank_flask_app import create_app, start_connector  # noqa: E402
from framework_support import run_python  # noqa: E402

ROUTE = "flask-svc"


@pytest.fixture(params=["wsgi", "http"])
def flask_app(request, router, protocols, connectors, local_server) -> Any:
    """The test app reachable at ``/flask-svc/`` through ``router``, either way."""
    ws_url = f"ws://{LOOPBACK}:{router.registration_port}"
    if request.param == "wsgi":
        app = create_app({"CRANK_ROUTERS": [ws_url], "CRANK_ROUTE": ROUTE})
        connector = app.extensions["crank_connector"]
        connector.stop()  # the recipe started it with default protocols; test both versions
        app.extensions["crank_connector"] = connectors(app, ROUTE, protocols)
    else:
        app = create_app()
        connectors(local_server(app).url, ROUTE, protocols)
    app.extensions["base"] = f"http://{LOOPBACK}:{router.http_port}/{ROUTE}"
    return app


def base(app: Any) -> str:
    return app.extensions["base"]


def test_form_post(flask_app, client):
    resp = client.get(base(flask_app) + "/form", timeout=10)
    assert resp.status_code == 200 and b"<form" in resp.content
    resp = client.post(base(flask_app) + "/form", timeout=10,
                       data={"name": "Zoë & co", "colour": ["red", "blue"]})
    assert resp.status_code == 200
    assert resp.text == "hello Zoë & co, you like ['red', 'blue']"


def test_file_upload(flask_app, client):
    data = deterministic_bytes(3_000_000, 11)
    resp = client.post(base(flask_app) + "/upload", timeout=30,
                       files={"file": ("report.bin", data)}, data={"note": "quarterly"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"filename": "report.bin", "size": len(data),
                           "sha256": hashlib.sha256(data).hexdigest(), "note": "quarterly"}


def test_session_and_cookies(flask_app, client):
    visits = [client.get(base(flask_app) + "/session", timeout=10).json()["visits"]
              for _ in range(3)]
    assert visits == [1, 2, 3]
    resp = client.get(base(flask_app) + "/cookies/set", timeout=10)
    assert len(resp.raw.headers.getlist("Set-Cookie")) == 2
    assert client.get(base(flask_app) + "/cookies", timeout=10).json() == {
        "flavour": "oatmeal", "size": "large", "session": client.cookies["session"]}


def test_redirect_is_not_followed(flask_app, client):
    resp = client.get(base(flask_app) + "/redirect", allow_redirects=False, timeout=10)
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/{ROUTE}/form"


def test_streaming_response(flask_app, client):
    resp = client.get(base(flask_app) + "/stream?who=me", stream=True, timeout=10)
    try:
        lines = resp.iter_lines()
        assert next(lines) == b"line 0 for me"  # before the app produced the rest
        flask_app.extensions["stream_gate"].set()
        assert list(lines) == [b"line 1", b"line 2", b"line 3", b"line 4"]
    finally:
        resp.close()


def test_request_sees_the_client(flask_app, client):
    info = client.get(base(flask_app) + "/whoami?x=1", timeout=10).json()
    assert info["remote_addr"] == "127.0.0.1"
    assert info["path"] == f"/{ROUTE}/whoami"
    assert info["scheme"] == "http"


# --------------------------------------------------------------------------- the recipe itself


def test_recipe_connects_once(router, client):
    ws_url = f"ws://{LOOPBACK}:{router.registration_port}"
    app = create_app({"CRANK_ROUTERS": [ws_url]})
    connector = app.extensions["crank_connector"]
    try:
        assert start_connector(app) is None  # a second call does not connect again
        wait_for(lambda: router.idle_sockets(ROUTE) >= 1, what="the recipe's connector")
        url = f"http://{LOOPBACK}:{router.http_port}/{ROUTE}/session"
        assert client.get(url, timeout=10).json() == {"visits": 1}
    finally:
        assert connector.stop(timeout=10)


def test_recipe_skips_the_reloader_watcher(router, monkeypatch):
    ws_url = f"ws://{LOOPBACK}:{router.registration_port}"
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    app = create_app({"CRANK_ROUTERS": [ws_url], "DEBUG": True})
    assert "crank_connector" not in app.extensions
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")  # the reloader's serving child
    connector = start_connector(app)
    assert connector is not None
    assert connector.stop(timeout=10)


def test_recipe_without_routers_does_nothing():
    assert "crank_connector" not in create_app().extensions


CHILD = """
import sys, time, logging
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from crank_flask_app import create_app
app = create_app()
connector = app.extensions["crank_connector"]
deadline = time.monotonic() + 20
while connector.idle_count() < 1 and time.monotonic() < deadline:
    time.sleep(0.02)
print("ready", connector.idle_count(), flush=True)
sys.stdin.readline()
"""


def test_recipe_stops_the_connector_at_exit(router):
    ws_url = f"ws://{LOOPBACK}:{router.registration_port}"
    child = run_python(["-c", CHILD], {"FLASK_CRANK_ROUTERS": json.dumps([ws_url])})
    try:
        assert child.stdout is not None
        ready = child.stdout.readline().split()
        assert ready[0] == "ready" and int(ready[1]) >= 1, ready
        wait_for(lambda: router.idle_sockets(ROUTE) >= 1, what="the child's connector")
    finally:
        out, err = child.communicate(timeout=30)  # closes stdin: the child returns and exits
    assert child.returncode == 0, err
    assert "stopped (clean)" in err
    assert router.idle_sockets(ROUTE) == 0

