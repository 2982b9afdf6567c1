"""``manage.py crank_connector``: serve the project through Cranker routers with no local port.

The connector is the only server: it calls the project's WSGI application for each request the
routers send. SIGINT or SIGTERM deregisters, lets in-flight requests finish, and exits.
"""
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.core.wsgi import get_wsgi_application

import crank_sync


class Command(BaseCommand):
    help = "Serve this project through Cranker routers (no local port)."

    def add_arguments(self, parser):
        parser.add_argument("--router", action="append", dest="routers",
                            help="ws(s):// URL of a router's registration port (repeatable); "
                                 "default: settings.CRANK_ROUTERS")
        parser.add_argument("--route", help="default: settings.CRANK_ROUTE")
        parser.add_argument("--stop-timeout", type=float, default=10.0)

    def handle(self, *args, routers=None, route=None, stop_timeout=10.0, **options):
        routers = routers or getattr(settings, "CRANK_ROUTERS", None)
        route = route or getattr(settings, "CRANK_ROUTE", None)
        if not routers or not route:
            raise CommandError("set CRANK_ROUTERS and CRANK_ROUTE, or pass --router and --route")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        connector = crank_sync.Connector(target=get_wsgi_application(), route=route,
                                         routers=routers, component_name="django").start()
        self.stdout.write(f"serving route {route!r} through {', '.join(routers)}", ending="\n")
        self.stdout.flush()
        while not stop.wait(1.0):
            pass
        if not connector.stop(timeout=stop_timeout):
            raise CommandError("requests still in flight at exit")
        self.stdout.write("stopped cleanly")
