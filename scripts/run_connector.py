#!/usr/bin/env python3
"""Start a crank_sync connector: python scripts/run_connector.py --router ws://... --route ..."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from crank_sync.cli import connector_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(connector_main())
