"""`python -m bench [web] [logins] [audit] [binary] [probe] [timing]`: run the benchmarks, print one table.

Default: all of them, in that order. A benchmark that fails (or whose module is absent,
such as bench.binary before it exists) gets a row saying why; the others still run.
Exit status 1 if any benchmark failed to run (budgets missed are reported, not fatal).
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback

from bench.load import print_table

ORDER = ["web", "logins", "audit", "binary", "probe", "timing"]


def main(argv: list[str]) -> int:
    names = argv or ORDER
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ORDER)}", file=sys.stderr)
        return 2
    rows: list[tuple] = []
    failed = False
    for name in names:
        t0 = time.monotonic()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                rows.append((name, "not run: module missing", "", "", ""))
                failed = True
                continue
            raise
        try:
            rows.extend(module.run())
        except Exception as exc:  # keep going: one broken benchmark must not hide the others
            traceback.print_exc()
            rows.append((name, f"FAILED: {type(exc).__name__}: {str(exc)[:200]}", "", "", ""))
            failed = True
        print(f"[bench] {name} done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    print_table(rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
