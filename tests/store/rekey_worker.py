"""Subprocess for the rekey crash test: prints "ready", rotates the key, prints "done SECONDS".

Usage: python rekey_worker.py DATA_DIR
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from appliance.app import rekey_database  # noqa: E402

if __name__ == "__main__":
    print("ready", flush=True)
    start = time.monotonic()
    rekey_database(Path(sys.argv[1]), passphrase=None, new_source="file", new_passphrase=None)
    print(f"done {time.monotonic() - start:.4f}", flush=True)
