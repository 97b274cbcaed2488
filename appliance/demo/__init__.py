"""Demo data: simulated SSH devices on loopback for `serve --demo-data`, the benchmark and tests.

Invariants: simulated devices listen on loopback only; demo devices are added
through DeviceService (audited as the system actor) like any other device; the
demo is never started unless --demo-data is given.
"""
