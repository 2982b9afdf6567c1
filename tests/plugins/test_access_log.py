"""crank_sync/plugins/access_log.py on its own: the record, where it goes, lines from many
threads at once. With a stand-in of the router's ProxyInfo."""
from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest

from crank_sync import NoRoute, RequestInfo
from crank_sync.plugins import AccessLog


def info(**changes):
    base = dict(duration=0.0123, socket_wait=0.0004, client_address="10.0.0.7", method="GET",
                target="/svc/caf\u00e9?x=1", route="svc", status=200, bytes_in=0,
                bytes_out=42, connector_instance_id="c-1", protocol="cranker_3.0",
                request_id="r-1", error=None)
    return SimpleNamespace(**{**base, **changes})


def test_one_line_per_request(tmp_path):
    path = tmp_path / "a.jsonl"
    log = AccessLog(str(path))
    log.on_complete(info())
    log.on_complete(info(route="(none)", connector_instance_id="-", protocol="-", status=None,
                         error=NoRoute("no route for\n'x'")))
    log.close()
    first, second = (json.loads(x) for x in path.read_text().splitlines())
    assert first["duration_ms"] == 12.3 and first["socket_wait_ms"] == 0.4
    assert first["target"] == "/svc/caf\u00e9?x=1" and first["route"] == "svc"
    assert first["connector"] == "c-1" and first["error"] is None and first["status"] == 200
    assert first["time"].endswith("Z")
    assert "\\u00e9" in path.read_text().splitlines()[0]  # ASCII on disk
    assert second["route"] is None and second["connector"] is None
    assert second["protocol"] is None and second["status"] is None
    assert second["error"] == "NoRoute: no route for 'x'"


def test_a_connector_line(tmp_path):
    path = tmp_path / "c.jsonl"
    log = AccessLog(str(path))
    request = RequestInfo(router="wss://user:pw@router:9070", route="svc", method="PUT",
                          target="/svc/x", request_id="r-9", protocol="3.0",
                          started=time.monotonic())
    request.status, request.bytes_in, request.bytes_out = 201, 5, 6
    log.on_complete(request)
    log.close()
    line = json.loads(path.read_text())
    assert line["router"] == "wss://user:***@router:9070" and line["protocol"] == "cranker_3.0"
    assert (line["method"], line["status"], line["bytes_in"], line["bytes_out"]) == (
        "PUT", 201, 5, 6)
    assert "client" not in line and line["error"] is None and line["request_id"] == "r-9"


def test_appends_and_takes_the_path_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "env.jsonl"
    path.write_text('{"old": 1}\n')
    monkeypatch.setenv("CRANK_ACCESS_LOG", str(path))
    log = AccessLog()
    assert log.path == str(path)
    log.on_complete(info())
    log.close()
    assert path.read_text().count("\n") == 2 and path.read_text().startswith('{"old": 1}\n')


def test_stderr_with_a_dash(capsys, monkeypatch):
    monkeypatch.setenv("CRANK_ACCESS_LOG", "/nowhere/at/all")
    log = AccessLog("-")
    log.on_complete(info(request_id="to-stderr"))
    log.close()  # nothing to close
    assert json.loads(capsys.readouterr().err)["request_id"] == "to-stderr"


def test_a_file_that_cannot_be_opened_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^cannot open .*: give path= a file"):
        AccessLog(str(tmp_path / "no" / "dir.jsonl"))


def test_lines_from_many_threads_never_mix(tmp_path):
    path = tmp_path / "many.jsonl"
    log = AccessLog(str(path))
    long_target = "/svc/" + "x" * 20_000

    def write(n: int) -> None:
        for i in range(200):
            log.on_complete(info(request_id=f"{n}-{i}", target=long_target))

    threads = [threading.Thread(target=write, args=(n,), name=f"test-writer-{n}")
               for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    log.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert sorted(r["request_id"] for r in lines) == sorted(
        f"{n}-{i}" for n in range(6) for i in range(200))
