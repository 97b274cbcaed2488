"""Metric parser: table-driven malformed output (each section fails alone, nothing raises),
CPU deltas, the simulated devices' output, and bounds on hostile input."""

import pytest

from appliance.demo.fleet import SimDevice
from appliance.probe import metrics
from appliance.probe.metrics import MARK, parse

GOOD = (f"{MARK}stat\ncpu  100 0 50 800 50 0 0 0 0 0\n{MARK}loadavg\n0.50 0.40 0.30 1/100 42\n"
        f"{MARK}meminfo\nMemTotal: 1000 kB\nMemAvailable: 250 kB\nSwapTotal: 100 kB\nSwapFree: 50 kB\n"
        f"{MARK}df\nFilesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 1000 900 100 90% /\n"
        f"tmpfs 100 0 100 0% /run\n{MARK}uptime\n12345.67 2000.00\n{MARK}end\n")


def test_good_output():
    m = parse(GOOD)
    assert m.problems == []
    assert m.memory_percent == 75.0 and m.swap_percent == 50.0 and m.disk_percent == 90.0
    assert (m.load1, m.uptime_seconds) == (0.5, 12345.67)
    assert [d.mount for d in m.disks] == ["/"]  # tmpfs is not a real filesystem
    assert m.cpu_total == 1000 and m.cpu_busy == 150


@pytest.mark.parametrize("broken, section", [
    ("cpu  100 0 50", "stat"),                          # too few fields
    ("intr 1 2 3 4 5 6", "stat"),                        # not the cpu line
    ("cpu  a b c d e f", "stat"),                        # not numbers
    ("0.5 0.4", "loadavg"),                              # too few
    ("-1 0.4 0.3 1/1 1", "loadavg"),                     # negative load
    ("Buffers: 10 kB", "meminfo"),                       # no MemTotal
    ("Filesystem x\n/dev/sda1 x y z 0% /", "df"),        # no numbers
    ("nan", "uptime"),                                   # not a number... nan is refused by the range check
    ("", "uptime"),
])
def test_one_broken_section_loses_only_itself(broken, section):
    parts = GOOD.split(MARK)
    text = MARK.join(p if not p.startswith(section + "\n") else f"{section}\n{broken}\n" for p in parts)
    m = parse(text)
    assert m.problems == [f"{section}: unreadable"]
    others = {"stat": m.cpu_total, "loadavg": m.load1, "meminfo": m.mem_total_kb, "df": m.disks or None,
              "uptime": m.uptime_seconds}
    assert others.pop(section) in (None, [], ())
    assert all(v is not None for v in others.values())


@pytest.mark.parametrize("output", [b"", b"\x00\xff" * 5000, "é" * 10, b"Permission denied\n",
                                    (MARK + "df\n" + "x " * 100000).encode(), (MARK + "stat\n") * 10000])
def test_garbage_never_raises(output):
    m = parse(output)
    assert len(m.problems) >= 1 and m.memory_percent is None


def test_cpu_delta_and_counter_reset():
    a = parse(GOOD)
    b = parse(GOOD.replace("cpu  100 0 50 800 50", "cpu  200 0 100 1600 50"))
    # busy 150 -> 300, total 1000 -> 1950 (idle + iowait count as not busy)
    assert metrics.cpu_percent(a, b) == pytest.approx(100 * 150 / 950)
    assert metrics.cpu_percent(b, a) is None  # counters went backwards: reboot
    assert metrics.cpu_percent(None, a) is None


def test_mount_count_is_bounded():
    df = "".join(f"/dev/d{i} 1000 10 990 1% /m{i}\n" for i in range(500))
    m = parse(f"{MARK}df\nFilesystem h\n{df}")
    assert len(m.disks) == metrics.MAX_MOUNTS


def test_simulated_device_output_parses_and_changes():
    sim = SimDevice(1)
    a, b = parse(sim.metrics_output()), parse(sim.metrics_output())
    assert a.problems == [] and b.problems == []
    assert 0 <= metrics.cpu_percent(a, b) <= 100 and b.uptime_seconds > a.uptime_seconds
