"""What the figures were measured on."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path


def _cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_gib(meminfo: str) -> float:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def describe() -> dict[str, object]:
    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": _mem_gib(read("/proc/meminfo")),
        "cpu_model": _cpu_model(read("/proc/cpuinfo")),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": read("/proc/loadavg").split()[:3],
    }
