"""Connector(...) takes its options as Router(...) does: a ConnectorConfig or its fields."""
from __future__ import annotations

import pytest

from crank_sync import Connector, ConnectorConfig


def test_config_or_keywords_not_both() -> None:
    config = ConnectorConfig(target="http://127.0.0.1:1", route="r", routers=("ws://127.0.0.1:1",))
    assert Connector(config).config is config
    assert Connector(config=config).config is config
    by_keyword = Connector(target="http://127.0.0.1:1", route="r", routers="ws://127.0.0.1:1")
    assert by_keyword.config.routers == ("ws://127.0.0.1:1",)
    with pytest.raises(TypeError, match="not both"):
        Connector(config, route="other")


def test_missing_options_are_a_type_error() -> None:
    with pytest.raises(TypeError):
        Connector(route="r", routers=("ws://127.0.0.1:1",))


def test_a_connector_never_started_stops_cleanly() -> None:
    conn = Connector(target="http://127.0.0.1:1", route="r", routers=("ws://127.0.0.1:1",))
    assert conn.stop(timeout=0.1) is True
