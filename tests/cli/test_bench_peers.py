"""``scripts/bench_peers.py`` runs, end to end, for the rows the test environment can serve:
real router, connector and target processes, the built-in load generator, the JSON line read
back. Only that every figure is there and nothing failed is checked, never a speed (the echo
and the upload check the bytes that come back, so the WSGI and ASGI apps of
``scripts/bench_apps.py`` are exercised too)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
ROWS = ["target direct", "crank_sync v3", "crank_sync WSGI v3", "crank_sync WSGI v1", "asgi-cc"]


def test_the_peers_table_measures_every_row() -> None:
    args = [sys.executable, str(SCRIPTS / "bench_peers.py"), "--quick", "--json",
            "--duration", "0.5", "--load-generator", "builtin"]
    for row in ROWS:
        args += ["--only", row]
    done = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    rows = {row["peer"]: row for row in result["rows"]}
    assert list(rows) == ROWS
    for name, row in rows.items():
        assert "error" not in row, (name, row["error"])
        for conc in ("c1", "c16"):
            assert row[conc]["rps"] > 0 and row[conc]["errors"] == 0, (name, conc, row[conc])
        for figure in ("echo_mbps", "download_mbps", "sink_mbps", "peer_rss_mib"):
            assert row.get(figure), (name, figure, row)
        assert (row["router_rss_mib"] is None) == (name == "target direct")
    ratios = {r["what"]: r["ratio"] for r in result["ratios"]}
    assert ratios["WSGI in-process v3 / asgi-cc, c=16"] is not None
    assert ratios["crank_sync v1 / crank4go, c=16"] is None  # not asked for: no figure
    assert "crank_sync WSGI v3" in done.stdout and "asgi-cc" in done.stdout


def test_a_missing_crank4go_binary_is_one_line_and_status_2(tmp_path: Path) -> None:
    missing = tmp_path / "crank4go-connector"
    done = subprocess.run([sys.executable, str(SCRIPTS / "bench_peers.py"),
                           "--crank4go-connector", str(missing)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"--crank4go-connector: {missing} is not an executable "
                                   "file")
