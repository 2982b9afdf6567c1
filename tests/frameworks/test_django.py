"""A minimal Django project (tests/frameworks/crank_django_project) behind a real router."""
from __future__ import annotations

import hashlib
import os
import re
import signal

import pytest
from support import LOOPBACK, deterministic_bytes, wait_for

pytest.importorskip("django", reason="Django is not installed (pip install -e '.[test]')")

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crank_django_project.settings")

import django  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.test import override_settings  # noqa: E402
from framework_support import run_python  # noqa: E402

django.setup()

from crank_django_project.crank import apps as crank_apps  # noqa: E402
from crank_django_project.crank import views  # noqa: E402

ROUTE = "django-svc"


@pytest.fixture
def site(router, protocols, connectors) -> str:
    """The project in-process (a WSGI target), reachable at ``/django-svc/`` through ``router``."""
    connectors(get_wsgi_application(), ROUTE, protocols)
    views.stream_gate.clear()
    return f"http://{LOOPBACK}:{router.http_port}/{ROUTE}"


def test_form_with_csrf(site, client):
    page = client.get(site + "/form", timeout=10)
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    resp = client.post(site + "/form", timeout=10,
                       data={"csrfmiddlewaretoken": token, "name": "Zoë", "age": "42"})
    assert (resp.status_code, resp.text) == (200, "hello Zoë, 42")
    bad = client.post(site + "/form", data={"csrfmiddlewaretoken": token, "name": "x",
                                            "age": "-1"}, timeout=10)
    assert bad.status_code == 400 and "age" in bad.json()["errors"]
    client.cookies.clear()
    assert client.post(site + "/form", data={"name": "x", "age": "1"},
                       timeout=10).status_code == 403  # CSRF still enforced


def test_file_upload(site, client):
    client.get(site + "/form", timeout=10)
    data = deterministic_bytes(3_000_000, 4)  # over FILE_UPLOAD_MAX_MEMORY_SIZE: a temp file
    resp = client.post(site + "/upload", timeout=30, files={"file": ("big.bin", data)},
                       data={"note": "n", "csrfmiddlewaretoken": client.cookies["csrftoken"]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"filename": "big.bin", "size": len(data),
                           "sha256": hashlib.sha256(data).hexdigest(), "note": "n"}


def test_session(site, client):
    visits = [client.get(site + "/session", timeout=10).json()["visits"] for _ in range(3)]
    assert visits == [1, 2, 3]
    assert "sessionid" in client.cookies


def test_redirect_is_not_followed(site, client):
    resp = client.get(site + "/redirect", allow_redirects=False, timeout=10)
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/{ROUTE}/form"


def test_streaming_response(site, client):
    resp = client.get(site + "/stream", stream=True, timeout=10)
    try:
        lines = resp.iter_lines()
        assert next(lines) == b"line 0"
        views.stream_gate.set()
        assert list(lines) == [b"line 1", b"line 2", b"line 3", b"line 4"]
    finally:
        resp.close()


def test_request_meta(site, client):
    info = client.get(site + "/whoami?x=1", timeout=10).json()
    assert info["remote_addr"] == "127.0.0.1"
    assert info["path"] == f"/{ROUTE}/whoami"
    assert info["uri"].startswith(f"http://{LOOPBACK}:")


# --------------------------------------------------------------------------- the recipes


def test_app_config_ready_starts_from_settings(router, client):
    ws_url = f"ws://{LOOPBACK}:{router.registration_port}"
    with override_settings(CRANK_ROUTERS=[ws_url]):
        connector = crank_apps.start_connector()
        try:
            assert crank_apps.start_connector() is connector  # once per process
            wait_for(lambda: router.idle_sockets(ROUTE) >= 1, what="the ready() connector")
            resp = client.get(f"http://{LOOPBACK}:{router.http_port}/{ROUTE}/session",
                              timeout=10)
            assert resp.json() == {"visits": 1}
        finally:
            assert crank_apps.stop_connector()


@pytest.mark.parametrize(("argv", "environ", "serving"), [
    (["gunicorn", "mysite.wsgi"], {}, True),
    (["/srv/manage.py", "migrate"], {}, False),
    (["manage.py", "crank_connector"], {}, False),
    (["manage.py", "runserver"], {}, False),  # the autoreloader's watcher
    (["manage.py", "runserver"], {"RUN_MAIN": "true"}, True),
    (["/usr/lib/python3/site-packages/django/__main__.py", "shell"], {}, False),
])
def test_ready_only_in_serving_processes(argv, environ, serving):
    assert crank_apps.is_serving_process(argv, environ) is serving


def test_management_command_serves_until_sigterm(router, client):
    ws_url = f"ws://{LOOPBACK}:{router.registration_port}"
    child = run_python(["-m", "django", "crank_connector", "--router", ws_url],
                       {"DJANGO_SETTINGS_MODULE": "crank_django_project.settings"})
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith(f"serving route '{ROUTE}'")
        wait_for(lambda: router.idle_sockets(ROUTE) >= 1, what="the command's connector")
        resp = client.get(f"http://{LOOPBACK}:{router.http_port}/{ROUTE}/session", timeout=10)
        assert resp.json() == {"visits": 1}
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert "stopped cleanly" in out
    wait_for(lambda: router.idle_sockets(ROUTE) == 0, what="the command's sockets to go")


