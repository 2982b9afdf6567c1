"""Starts this process's Cranker connector when Django is ready: the recipe of docs/embedding.rst.

Not in management commands (``migrate`` should not take traffic) nor in the autoreloader's
watcher process of ``runserver``; under a WSGI server (gunicorn, uWSGI, mod_wsgi) it runs in
every worker process.
"""
import atexit
import os
import sys
import threading

from django.apps import AppConfig
from django.conf import settings

import crank_sync

_lock = threading.Lock()
_connector = None


def is_serving_process(argv=None, environ=None):
    """False in ``manage.py <command>`` (except runserver's serving child), True otherwise."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    program = os.path.basename(argv[0]) if argv else ""
    if program not in ("manage.py", "django-admin", "__main__.py", "django-admin.py"):
        return True
    command = argv[1] if len(argv) > 1 else ""
    return command == "runserver" and environ.get("RUN_MAIN") == "true"


def start_connector():
    """Connect to ``settings.CRANK_ROUTERS`` once per process; returns the connector or None."""
    global _connector
    with _lock:
        if _connector is None and settings.CRANK_ROUTERS:
            from django.core.handlers.wsgi import WSGIHandler

            _connector = crank_sync.Connector(
                target=WSGIHandler(), route=settings.CRANK_ROUTE,
                routers=settings.CRANK_ROUTERS, component_name="django",
            ).start()
            atexit.register(stop_connector)
        return _connector


def stop_connector(timeout=10.0):
    global _connector
    with _lock:
        connector, _connector = _connector, None
    return connector.stop(timeout) if connector is not None else True


class CrankConfig(AppConfig):
    name = "crank_django_project.crank"

    def ready(self):
        if is_serving_process():
            start_connector()
