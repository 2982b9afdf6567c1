"""Sans-IO pieces of the Cranker protocol: message codecs and header rules.

Nothing in this package touches a socket, a thread or a clock; the router and the connector
move bytes and call these functions.
"""
from .headers import (
    HOP_BY_HOP,
    filter_request_headers,
    filter_response_headers,
    forwarded_element,
    route_of,
)
from .registration import (
    SUPPORTED_VERSIONS,
    concluded_version,
    negotiate,
    offer_headers,
    offered_subprotocols,
)
from .v1 import (
    MARKER_BODY_ENDED,
    MARKER_BODY_FOLLOWS,
    MARKER_NO_BODY,
    RequestHead,
    ResponseHead,
    encode_request,
    encode_response_head,
    parse_request,
    parse_request_text,
    parse_response_head,
    request_text,
)

__all__ = [
    "HOP_BY_HOP",
    "MARKER_BODY_ENDED",
    "MARKER_BODY_FOLLOWS",
    "MARKER_NO_BODY",
    "RequestHead",
    "SUPPORTED_VERSIONS",
    "ResponseHead",
    "concluded_version",
    "encode_request",
    "encode_response_head",
    "filter_request_headers",
    "filter_response_headers",
    "forwarded_element",
    "negotiate",
    "offer_headers",
    "offered_subprotocols",
    "parse_request",
    "parse_request_text",
    "request_text",
    "parse_response_head",
    "route_of",
]
