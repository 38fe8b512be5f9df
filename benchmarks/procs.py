"""CPU time and memory of a running process and its children, from /proc."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.figures import cpu_ticks, parent_pid, status_kib

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None  # the process went away between listing and reading


def tree(pid: int) -> list[int]:
    """`pid` and every live descendant."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _read(entry / "stat")
            if stat:
                parents[int(entry.name)] = parent_pid(stat)
    found, frontier = [pid], [pid]
    while frontier:
        nxt = [p for p, pp in parents.items() if pp in frontier]
        found += nxt
        frontier = nxt
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process tree (live children included)."""
    total = 0
    for p in tree(pid):
        stat = _read(Path(f"/proc/{p}/stat"))
        if stat:
            total += cpu_ticks(stat)
    return total / CLK_TCK


def memory_mib(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of the process tree."""
    rss = hwm = 0
    for p in tree(pid):
        status = _read(Path(f"/proc/{p}/status"))
        if status:
            rss += status_kib(status, "VmRSS")
            hwm += status_kib(status, "VmHWM")
    return {"rss_mib": round(rss / 1024, 1), "peak_rss_mib": round(hwm / 1024, 1)}
