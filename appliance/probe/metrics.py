"""Linux metrics from ONE combined command, and a parser that never trusts the output.

The command prints sections separated by marker lines; each section is parsed on
its own, so a missing or malformed section loses only its own figures (reported in
`problems`), never the others. Output may be binary, truncated or hostile: it is
decoded with replacement, lines and mounts are bounded, numbers are range-checked.
"""

from __future__ import annotations

import msgspec

MARK = "@@outpost:"
METRICS_COMMAND = (
    "export LC_ALL=C; "
    f"echo {MARK}stat; head -n 1 /proc/stat; "
    f"echo {MARK}loadavg; cat /proc/loadavg; "
    f"echo {MARK}meminfo; cat /proc/meminfo; "
    f"echo {MARK}df; df -P -k 2>/dev/null; "
    f"echo {MARK}uptime; cat /proc/uptime; "
    f"echo {MARK}end"
)
MAX_MOUNTS = 32
PSEUDO_FS = frozenset({"tmpfs", "devtmpfs", "udev", "none", "shm", "proc", "sysfs", "cgroup", "cgroup2"})


class Disk(msgspec.Struct, frozen=True, kw_only=True):
    mount: str
    total_kb: int
    used_kb: int
    percent: float


class Metrics(msgspec.Struct, frozen=True, kw_only=True):
    cpu_busy: int | None = None  # cumulative jiffies from /proc/stat, for deltas
    cpu_total: int | None = None
    load1: float | None = None
    load5: float | None = None
    load15: float | None = None
    mem_total_kb: int | None = None
    mem_available_kb: int | None = None
    swap_total_kb: int | None = None
    swap_free_kb: int | None = None
    disks: list[Disk] = []
    uptime_seconds: float | None = None
    problems: list[str] = []

    @property
    def memory_percent(self) -> float | None:
        if not self.mem_total_kb or self.mem_available_kb is None:
            return None
        return _clamp(100.0 * (self.mem_total_kb - self.mem_available_kb) / self.mem_total_kb)

    @property
    def swap_percent(self) -> float | None:
        if not self.swap_total_kb or self.swap_free_kb is None:
            return 0.0 if self.swap_total_kb == 0 else None
        return _clamp(100.0 * (self.swap_total_kb - self.swap_free_kb) / self.swap_total_kb)

    @property
    def disk_percent(self) -> float | None:
        """The fullest real filesystem (what a threshold cares about)."""
        return max((d.percent for d in self.disks), default=None)


def cpu_percent(prev: Metrics | None, cur: Metrics) -> float | None:
    """CPU busy % between two samples; None without a usable previous sample."""
    if (prev is None or prev.cpu_busy is None or prev.cpu_total is None or cur.cpu_busy is None
            or cur.cpu_total is None):
        return None
    d_total, d_busy = cur.cpu_total - prev.cpu_total, cur.cpu_busy - prev.cpu_busy
    if d_total <= 0 or d_busy < 0:
        return None  # counter reset (reboot) or no time passed
    return _clamp(100.0 * d_busy / d_total)


def _clamp(v: float) -> float:
    return max(0.0, min(100.0, v))


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines()[:4096]:
        if line.startswith(MARK):
            current = line[len(MARK):].strip()
            out.setdefault(current, [])
        elif current is not None and len(out[current]) < 512:
            out[current].append(line[:4096])
    return out


def _stat(lines: list[str]) -> dict:
    fields = lines[0].split() if lines else []
    if len(fields) < 5 or fields[0] != "cpu":
        raise ValueError("no cpu line")
    ticks = [int(x) for x in fields[1:11]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    total = sum(ticks[:8])  # guest time is already counted in user
    return {"cpu_busy": total - idle, "cpu_total": total}


def _loadavg(lines: list[str]) -> dict:
    parts = lines[0].split() if lines else []
    values = [float(x) for x in parts[:3]]
    if len(values) != 3 or any(not 0 <= v < 1e6 for v in values):
        raise ValueError("bad loadavg")
    return dict(zip(("load1", "load5", "load15"), values, strict=True))


def _meminfo(lines: list[str]) -> dict:
    info = {}
    for line in lines:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            info[name.strip()] = int(parts[0])
    if "MemTotal" not in info:
        raise ValueError("no MemTotal")
    available = info.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = info.get("MemFree", 0) + info.get("Buffers", 0) + info.get("Cached", 0)
    return {"mem_total_kb": info["MemTotal"], "mem_available_kb": min(available, info["MemTotal"]),
            "swap_total_kb": info.get("SwapTotal"), "swap_free_kb": info.get("SwapFree")}


def _df(lines: list[str]) -> dict:
    disks: list[Disk] = []
    seen = set()
    for line in lines[1:]:
        parts = line.split()
        if len(parts) < 6 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        fs, mount = parts[0], " ".join(parts[5:])
        total, used = int(parts[1]), int(parts[2])
        if fs in PSEUDO_FS or total == 0 or mount in seen or not mount.startswith("/"):
            continue
        seen.add(mount)
        disks.append(Disk(mount=mount[:200], total_kb=total, used_kb=min(used, total),
                          percent=round(_clamp(100.0 * used / total), 1)))
        if len(disks) >= MAX_MOUNTS:
            break
    if not disks:
        raise ValueError("no filesystems")
    return {"disks": disks}


def _uptime(lines: list[str]) -> dict:
    value = float(lines[0].split()[0]) if lines and lines[0].split() else -1.0
    if not 0 <= value < 1e10:
        raise ValueError("bad uptime")
    return {"uptime_seconds": value}


PARSERS = {"stat": _stat, "loadavg": _loadavg, "meminfo": _meminfo, "df": _df, "uptime": _uptime}


def parse(output: bytes | str) -> Metrics:
    """Parse the combined command's output; never raises on device input."""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    sections = _sections(text)
    values: dict = {}
    problems: list[str] = []
    for name, parser in PARSERS.items():
        if name not in sections:
            problems.append(f"{name}: missing")
            continue
        try:
            values.update(parser(sections[name]))
        except (ValueError, IndexError, OverflowError):
            problems.append(f"{name}: unreadable")
    return Metrics(**values, problems=problems)
