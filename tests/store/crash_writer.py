"""Subprocess for the kill -9 test: writes rows and prints each id once its write is acknowledged.

Usage: python crash_writer.py DB_PATH KEY_HEX MODE RUN   (MODE: sync | async | threads)
Prints "ready" once open, then one id per acknowledged write, flushed, until killed.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from appliance.store import Database  # noqa: E402

_print_lock = threading.Lock()


def acknowledged(ident: str) -> None:
    with _print_lock:
        sys.stdout.write(ident + "\n")
        sys.stdout.flush()


def insert(ident: str):
    return lambda conn: conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (ident, "x" * 200))


def main() -> None:
    path, key_hex, mode, run = sys.argv[1:5]
    db = Database.open(Path(path), bytes.fromhex(key_hex))
    acknowledged("ready")
    if mode == "sync":
        i = 0
        while True:
            db.write_sync(insert(f"{run}s{i}"))
            acknowledged(f"{run}s{i}")
            i += 1
    elif mode == "threads":
        def worker(n: int) -> None:
            i = 0
            while True:
                db.write_sync(insert(f"{run}t{n}-{i}"))
                acknowledged(f"{run}t{n}-{i}")
                i += 1

        for n in range(8):
            threading.Thread(target=worker, args=(n,), daemon=True).start()
        threading.Event().wait()
    else:
        async def writer(n: int) -> None:
            i = 0
            while True:
                await db.write(insert(f"{run}a{n}-{i}"))
                acknowledged(f"{run}a{n}-{i}")
                i += 1

        async def run() -> None:
            await asyncio.gather(*(writer(n) for n in range(50)))

        asyncio.run(run())


if __name__ == "__main__":
    main()
