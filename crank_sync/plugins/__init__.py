"""The plugins crank_sync ships: listeners to give by name (``--plugin access-log``,
``plugins = ["server-timing"]``) or to make in Python.

* :class:`AccessLog` (``access-log``): one JSON object per request, a line each, to a file or
  stderr; on a router or a connector;
* :class:`ServerTiming` (``server-timing``): a ``Server-Timing`` response header with the
  socket wait, the connector's time and the total;
* :class:`HeaderAuth` (``header-auth``): 401 unless a request header holds one of the
  configured tokens.

How a plugin spec names them and gives them options: :mod:`crank_sync.plugin_loader`.
"""
from .access_log import AccessLog
from .header_auth import HeaderAuth
from .server_timing import ServerTiming

__all__ = ["AccessLog", "HeaderAuth", "ServerTiming"]
