#!/usr/bin/env python3
"""Start a crank_sync router: python scripts/run_router.py [--http-port 9000] ..."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from crank_sync.cli import router_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(router_main())
