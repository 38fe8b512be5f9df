"""Pure arithmetic of the benchmarks: Prometheus text parsing, apiserver write
counts, /proc parsing, percentiles and ratios. No I/O, so it is unit-tested."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Verbs that change state in the apiserver's request metrics; APPLY is a
# server-side apply (kubectl apply --server-side, kopf never uses it).
WRITE_VERBS = frozenset({"POST", "PATCH", "PUT", "DELETE", "APPLY"})
# What a restart touches: our own kinds and the Events the operator posts.
WRITE_RESOURCES = frozenset({"tasks", "taskspecs", "events", "racks"})

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (comments and blanks skipped)."""
    out: list[Sample] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        labels = {
            lm["key"]: lm["value"].replace('\\"', '"').replace("\\\\", "\\")
            for lm in _LABEL.finditer(m["labels"] or "")
        }
        try:
            value = float(m["value"])
        except ValueError:
            continue
        out.append(Sample(m["name"], labels, value))
    return out


WriteKey = tuple[str, str]  # ("tasks/status", "PATCH")


def apiserver_writes(
    text: str,
    resources: Iterable[str] = WRITE_RESOURCES,
    verbs: Iterable[str] = WRITE_VERBS,
) -> dict[WriteKey, float]:
    """apiserver_request_total summed over codes, by resource[/subresource] and verb."""
    wanted_res, wanted_verbs = set(resources), set(verbs)
    counts: dict[WriteKey, float] = {}
    for s in parse_metrics(text):
        if s.name != "apiserver_request_total":
            continue
        res, verb = s.labels.get("resource", ""), s.labels.get("verb", "")
        if res not in wanted_res or verb not in wanted_verbs:
            continue
        sub = s.labels.get("subresource", "")
        key = (f"{res}/{sub}" if sub else res, verb)
        counts[key] = counts.get(key, 0.0) + s.value
    return counts


def delta(
    before: Mapping[WriteKey, float], after: Mapping[WriteKey, float]
) -> dict[WriteKey, float]:
    """Counter increase per key; keys that did not move are left out."""
    out: dict[WriteKey, float] = {}
    for key in set(before) | set(after):
        d = after.get(key, 0.0) - before.get(key, 0.0)
        if d:
            out[key] = d
    return out


def per_task(counts: Mapping[WriteKey, float], tasks: int) -> dict[str, float]:
    """Writes per Task keyed "resource VERB", plus "total"."""
    if tasks <= 0:
        raise ValueError("no Tasks to divide by")
    out = {f"{res} {verb}": round(n / tasks, 3) for (res, verb), n in sorted(counts.items())}
    out["total"] = round(sum(counts.values()) / tasks, 3)
    return out


def per_item(counts: Mapping[str, float], n: int) -> dict[str, float]:
    """Any count map divided by `n`, plus "total"."""
    if n <= 0:
        raise ValueError("nothing to divide by")
    out = {k: round(v / n, 3) for k, v in sorted(counts.items()) if v}
    out["total"] = round(sum(counts.values()) / n, 3)
    return out


def core_rpc_counts(text: str) -> dict[str, float]:
    """Core RPCs the operator made, by method (all codes), from its own /metrics."""
    counts: dict[str, float] = {}
    for s in parse_metrics(text):
        if s.name == "nicoflow_core_rpc_duration_seconds_count":
            method = s.labels.get("method", "")
            counts[method] = counts.get(method, 0.0) + s.value
    return counts


def ledger_calls(entries: Iterable[Mapping[str, object]]) -> dict[str, float]:
    """State-changing Core calls by method: the simulator's ledger has one entry
    per component a call touched, entries of one call share its call number."""
    calls: dict[str, set[object]] = {}
    for e in entries:
        calls.setdefault(str(e["method"]), set()).add(e["call"])
    return {m: float(len(c)) for m, c in calls.items()}


def ledger_touches(entries: Iterable[Mapping[str, object]]) -> dict[str, float]:
    """Components touched by state-changing calls, by method."""
    out: dict[str, float] = {}
    for e in entries:
        out[str(e["method"])] = out.get(str(e["method"]), 0.0) + 1
    return out


def counter_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(before) | set(after)}


def cpu_ticks(stat: str) -> int:
    """utime + stime of a /proc/<pid>/stat line, in clock ticks.

    The command name (field 2) may hold spaces and parentheses, so fields are
    counted after its closing parenthesis."""
    rest = stat[stat.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(rest[11]) + int(rest[12])


def parent_pid(stat: str) -> int:
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def status_kib(status: str, field: str) -> int:
    """A "VmHWM:   1234 kB" style field of /proc/<pid>/status, in KiB (0 if absent)."""
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def overhead_ratio(wall: float, stages: int, stage_latency: float, extra: float = 0.0) -> float:
    """Wall time over the critical path the hardware imposes (each stage at
    least its latency, plus fixed waits the rule adds)."""
    critical = stages * stage_latency + extra
    if critical <= 0:
        raise ValueError("critical path must be positive")
    return round(wall / critical, 3)


def verdict(
    value: float | None, limit: float, *, below: bool = False, at_least: bool = False
) -> str:
    """Where a figure stands against its target: "met", "missed" or "not measured"."""
    if value is None:
        return "not measured"
    ok = value >= limit if at_least else value < limit if below else value <= limit
    return "met" if ok else "missed"


def _epoch(stamp: object) -> float | None:
    if not isinstance(stamp, str) or not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def task_spans(tasks: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Spread of the Tasks' creation, start and completion times, counted from
    the first creation: {created, first_start, last_start, first_end, last_end}."""
    created: list[float] = []
    started: list[float] = []
    ended: list[float] = []
    for t in tasks:
        status = t.get("status") or {}
        for out, stamp in (
            (created, t["metadata"].get("creationTimestamp")),
            (started, status.get("startTime")),
            (ended, status.get("completionTime")),
        ):
            value = _epoch(stamp)
            if value is not None:
                out.append(value)
    if not created:
        return {}
    base = min(created)
    spans = {"created": max(created) - base}
    if started:
        spans |= {"first_start": min(started) - base, "last_start": max(started) - base}
    if ended:
        spans |= {"first_end": min(ended) - base, "last_end": max(ended) - base}
    return {k: round(v, 1) for k, v in spans.items()}


def apiserver_write_seconds(
    text: str,
    resources: Iterable[str] = WRITE_RESOURCES,
    verbs: Iterable[str] = WRITE_VERBS,
) -> dict[WriteKey, tuple[float, float]]:
    """(sum of seconds, count) of apiserver_request_duration_seconds by
    resource[/subresource] and verb: the server's own time per write."""
    wanted_res, wanted_verbs = set(resources), set(verbs)
    out: dict[WriteKey, tuple[float, float]] = {}
    for s in parse_metrics(text):
        if s.name not in (
            "apiserver_request_duration_seconds_sum",
            "apiserver_request_duration_seconds_count",
        ):
            continue
        res, verb = s.labels.get("resource", ""), s.labels.get("verb", "")
        if res not in wanted_res or verb not in wanted_verbs:
            continue
        sub = s.labels.get("subresource", "")
        key = (f"{res}/{sub}" if sub else res, verb)
        total, count = out.get(key, (0.0, 0.0))
        if s.name.endswith("_sum"):
            total += s.value
        else:
            count += s.value
        out[key] = (total, count)
    return out


def mean_ms(
    before: Mapping[WriteKey, tuple[float, float]], after: Mapping[WriteKey, tuple[float, float]]
) -> dict[str, float]:
    """Mean server time in ms per write between two snapshots, by "resource VERB"."""
    out: dict[str, float] = {}
    for key, (total, count) in after.items():
        t0, c0 = before.get(key, (0.0, 0.0))
        if count > c0:
            out[f"{key[0]} {key[1]}"] = round((total - t0) / (count - c0) * 1000, 1)
    return out
