"""The Cranker router: client listener, registration listener, connector socket pools."""
from .server import Router

__all__ = ["Router"]
