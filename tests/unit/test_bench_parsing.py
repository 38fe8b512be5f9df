"""The pure arithmetic of `make bench`: metrics parsing, write counts, /proc
fields, percentiles, ratios and the target table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# benchmarks/ sits at the repository root, beside tests/, and is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import figures, report


def _req(code: str, group: str, resource: str, sub: str, verb: str, value: str) -> str:
    labels = (
        f'code="{code}",component="apiserver",dry_run="",group="{group}",'
        f'resource="{resource}",scope="resource",subresource="{sub}",verb="{verb}",version="v1"'
    )
    return f"apiserver_request_total{{{labels}}} {value}\n"


APISERVER = (
    "# HELP apiserver_request_total [STABLE] Counter of apiserver requests\n"
    "# TYPE apiserver_request_total counter\n"
    + _req("201", "flow.nico.io", "tasks", "", "POST", "100")
    + _req("200", "flow.nico.io", "tasks", "status", "PATCH", "690")
    + _req("409", "flow.nico.io", "tasks", "status", "PATCH", "10")
    + _req("200", "flow.nico.io", "tasks", "", "LIST", "5000")
    + _req("201", "", "events", "", "POST", "200")
    + _req("200", "", "configmaps", "", "PUT", "7")
    + _req("200", "flow.nico.io", "racks", "", "APPLY", "1e+03")
    + 'apiserver_request_duration_seconds_count{resource="tasks",verb="POST"} 100\n'
)


def test_parse_metrics_reads_labels_values_and_skips_comments() -> None:
    samples = figures.parse_metrics(APISERVER + 'x{a="q\\"uote"} 2.5\nbad line\n')
    assert len(samples) == 9
    assert samples[-1] == figures.Sample("x", {"a": 'q"uote'}, 2.5)
    assert samples[6].value == 1000.0
    assert samples[0].labels["subresource"] == ""


def test_apiserver_writes_sum_codes_and_keep_only_writes_of_our_resources() -> None:
    writes = figures.apiserver_writes(APISERVER)
    assert writes == {
        ("tasks", "POST"): 100,
        ("tasks/status", "PATCH"): 700,  # 200 and 409 both count: the request was made
        ("events", "POST"): 200,
        ("racks", "APPLY"): 1000,
    }


def test_delta_and_per_task() -> None:
    before = figures.apiserver_writes(APISERVER)
    after = dict(before)
    after[("tasks", "POST")] += 10
    after[("tasks/status", "PATCH")] += 75
    after[("taskspecs", "POST")] = 1
    d = figures.delta(before, after)
    assert d == {("tasks", "POST"): 10, ("tasks/status", "PATCH"): 75, ("taskspecs", "POST"): 1}
    per = figures.per_task(d, 10)
    assert per == {
        "tasks POST": 1.0,
        "tasks/status PATCH": 7.5,
        "taskspecs POST": 0.1,
        "total": 8.6,
    }
    with pytest.raises(ValueError, match="no Tasks"):
        figures.per_task(d, 0)


def test_core_rpc_counts_sum_codes_per_method() -> None:
    text = (
        'nicoflow_core_rpc_duration_seconds_count{code="OK",method="AdminPowerControl"} 36\n'
        'nicoflow_core_rpc_duration_seconds_count{code="UNAVAILABLE",'
        'method="AdminPowerControl"} 2\n'
        'nicoflow_core_rpc_duration_seconds_sum{code="OK",method="AdminPowerControl"} 1.5\n'
        'nicoflow_core_rpc_duration_seconds_count{code="OK",method="GetPowerOptions"} 4\n'
    )
    assert figures.core_rpc_counts(text) == {"AdminPowerControl": 38, "GetPowerOptions": 4}
    assert figures.counter_delta({"a": 1.0}, {"a": 4.0, "b": 2.0}) == {"a": 3.0, "b": 2.0}


def test_ledger_calls_count_distinct_calls_and_touches_count_entries() -> None:
    entries = [
        {"method": "ComponentPowerControl", "call": 1},
        {"method": "ComponentPowerControl", "call": 1},
        {"method": "ComponentPowerControl", "call": 2},
        {"method": "AdminPowerControl", "call": 3},
    ]
    assert figures.ledger_calls(entries) == {"ComponentPowerControl": 2, "AdminPowerControl": 1}
    assert figures.ledger_touches(entries) == {"ComponentPowerControl": 3, "AdminPowerControl": 1}
    assert figures.per_item({"a": 3.0, "b": 0.0}, 2) == {"a": 1.5, "total": 1.5}


def test_proc_stat_fields_survive_a_command_name_with_spaces_and_parens() -> None:
    # fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime ...
    stat = "4242 (python (x) y) S 17 4242 4242 0 -1 4194560 9 0 0 0 250 75 3 1 20 0 5 0"
    assert figures.cpu_ticks(stat) == 325
    assert figures.parent_pid(stat) == 17
    status = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert figures.status_kib(status, "VmHWM") == 204800
    assert figures.status_kib(status, "VmRSS") == 102400
    assert figures.status_kib(status, "VmSwap") == 0


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert figures.percentile(values, 50) == 50.0
    assert figures.percentile(values, 99) == 99.0
    assert figures.percentile(values, 100) == 100.0
    assert figures.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        figures.percentile([], 50)


def test_overhead_ratio_divides_by_the_hardware_critical_path() -> None:
    assert figures.overhead_ratio(19.8, 6, 3.0) == 1.1
    assert figures.overhead_ratio(36.0, 6, 3.0) == 2.0
    assert figures.overhead_ratio(22.0, 6, 3.0, extra=4.0) == 1.0
    with pytest.raises(ValueError, match="critical path"):
        figures.overhead_ratio(1.0, 0, 3.0)


def test_verdict_against_targets() -> None:
    assert figures.verdict(12.0, 12) == "met"
    assert figures.verdict(12.01, 12) == "missed"
    assert figures.verdict(400.0, 400, below=True) == "missed"
    assert figures.verdict(None, 400) == "not measured"
    assert figures.verdict(2.0, 2.0, at_least=True) == "met"
    assert figures.verdict(1.4, 2.0, at_least=True) == "missed"


def test_report_targets_read_the_largest_runs() -> None:
    results: list[dict[str, Any]] = [
        {"scenario": "S1-throughput", "racks": 100, "apiserver_writes_per_task": {"total": 9.0}},
        {"scenario": "S1-throughput", "racks": 1000, "apiserver_writes_per_task": {"total": 13.0}},
        {"scenario": "S2-overhead", "racks": 1000, "overhead_ratio": 1.05},
        {"scenario": "S3-api", "not_run": "flow serve did not start"},
        {"scenario": "S3-workers", "ratio": 1.4},
        {
            "scenario": "S5-memory",
            "tasks_1000": {"rss_mib": 200.0},
            "tasks_5000": {"rss_mib": 450.0},
        },
    ]
    rows = report.targets(results)
    assert [r[1:] for r in rows] == [
        [13.0, "missed"],
        [1.05, "met"],
        [450.0, "missed"],
        [None, "not measured"],
        [1.4, "missed"],
    ]
    assert "1000 racks" in rows[0][0]
    assert "5000 Tasks" in rows[2][0]


def test_task_spans_from_the_first_creation() -> None:
    def task(created: str, start: str | None, end: str | None) -> dict[str, object]:
        status = {k: v for k, v in (("startTime", start), ("completionTime", end)) if v}
        return {"metadata": {"creationTimestamp": created}, "status": status}

    tasks = [
        task("2026-11-28T10:00:00Z", "2026-11-28T10:00:01Z", "2026-11-28T10:00:09Z"),
        task("2026-11-28T10:00:26Z", "2026-11-28T10:00:27Z", "2026-11-28T10:00:37Z"),
        task("2026-11-28T10:00:05Z", None, None),
    ]
    assert figures.task_spans(tasks) == {
        "created": 26.0,
        "first_start": 1.0,
        "last_start": 27.0,
        "first_end": 9.0,
        "last_end": 37.0,
    }
    assert figures.task_spans([]) == {}


def test_mean_server_time_per_write() -> None:
    def text(total: float, count: int) -> str:
        labels = 'resource="tasks",subresource="status",verb="PATCH"'
        return (
            f"apiserver_request_duration_seconds_sum{{{labels}}} {total}\n"
            f"apiserver_request_duration_seconds_count{{{labels}}} {count}\n"
            'apiserver_request_duration_seconds_sum{resource="tasks",verb="LIST"} 9\n'
        )

    before = figures.apiserver_write_seconds(text(1.0, 10))
    after = figures.apiserver_write_seconds(text(2.5, 40))
    assert figures.mean_ms(before, after) == {"tasks/status PATCH": 50.0}
    assert figures.mean_ms(after, after) == {}
