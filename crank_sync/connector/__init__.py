"""The Cranker connector: sockets to routers, replaying requests against a target."""
from .connector import Connector

__all__ = ["Connector"]
