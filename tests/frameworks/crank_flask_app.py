"""A Flask app factory that puts itself behind Cranker routers: the recipe of docs/embedding.rst.

``start_connector`` is the part to copy into an existing app. The rest is a small app with
forms, uploads, sessions, cookies, a redirect and a streaming response for the tests.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    jsonify,
    redirect,
    request,
    session,
    stream_with_context,
    url_for,
)

import crank_sync


def start_connector(app: Flask) -> crank_sync.Connector | None:
    """Connect ``app`` to the routers in ``CRANK_ROUTERS`` once, and disconnect it at exit."""
    routers = app.config.get("CRANK_ROUTERS")
    if not routers or "crank_connector" in app.extensions:
        return None
    if app.debug and os.environ.get("WERKZEUG_RUN_MAIN") != "true":
        return None  # the reloader's watcher process: only its serving child connects
    connector = crank_sync.Connector(
        target=app, route=app.config["CRANK_ROUTE"], routers=routers, component_name=app.name,
    ).start()
    app.extensions["crank_connector"] = connector
    atexit.register(connector.stop)
    return connector


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test only", CRANK_ROUTE="flask-svc", CRANK_ROUTERS=[])
    app.config.from_prefixed_env("FLASK")
    app.config.update(config or {})
    # The router passes the whole path, route included: the app's URLs live under /<route>.
    app.register_blueprint(pages, url_prefix="/" + app.config["CRANK_ROUTE"])
    app.extensions["stream_gate"] = threading.Event()
    start_connector(app)
    return app


pages = Blueprint("pages", __name__)


@pages.get("/form")
def form_page() -> str:
    return ('<form method="post"><input name="name"><input name="colour">'
            '<button>Send</button></form>')


@pages.post("/form")
def form_submit() -> str:
    return f"hello {request.form['name']}, you like {request.form.getlist('colour')}"


@pages.post("/upload")
def upload() -> Response:
    upload = request.files["file"]
    digest = hashlib.sha256()
    size = 0
    while chunk := upload.stream.read(65536):
        digest.update(chunk)
        size += len(chunk)
    return jsonify(filename=upload.filename, size=size, sha256=digest.hexdigest(),
                   note=request.form.get("note"))


@pages.get("/session")
def session_counter() -> Response:
    session["visits"] = session.get("visits", 0) + 1
    return jsonify(visits=session["visits"])


@pages.get("/cookies/set")
def set_cookies() -> Response:
    resp = jsonify(ok=True)
    resp.set_cookie("flavour", "oatmeal")
    resp.set_cookie("size", "large", httponly=True)
    return resp


@pages.get("/cookies")
def show_cookies() -> Response:
    return jsonify(dict(request.cookies))


@pages.get("/redirect")
def go_elsewhere() -> Response:
    return redirect(url_for(".form_page"))  # type: ignore[return-value]


@pages.get("/stream")
def stream() -> Response:
    from flask import current_app

    gate = current_app.extensions["stream_gate"]

    def lines() -> Iterator[str]:
        yield f"line 0 for {request.args.get('who', 'nobody')}\n"
        gate.wait(20)  # the test reads line 0 before it lets the rest come
        for i in range(1, 5):
            yield f"line {i}\n"

    return Response(stream_with_context(lines()), mimetype="text/plain")


@pages.get("/whoami")
def whoami() -> Response:
    return jsonify(remote_addr=request.remote_addr, scheme=request.scheme, path=request.path,
                   url=request.url, script_root=request.script_root)
