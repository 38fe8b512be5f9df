"""The Grafana dashboard shipped in the chart: valid JSON, and every query asks
only for metrics that the operator's and the API's registries define."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from nicoflow.controller import metrics as operator_metrics
from nicoflow.service.metrics import ApiMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "charts/nico-flow/dashboards/nico-flow.json"
# PromQL functions and aggregations the dashboard may call
FUNCTIONS = frozenset(
    {"sum", "rate", "increase", "histogram_quantile", "topk", "max", "min", "avg", "count"}
)
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset"})
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def series_names(registry: CollectorRegistry) -> dict[str, str]:
    """Every series name a scrape can show -> its metric family's name."""
    names: dict[str, str] = {}
    for family in registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.name
    return names


def defined() -> dict[str, str]:
    tasks = CollectorRegistry()
    # the scrape-time gauges (Tasks by phase, queue depth) come from this collector
    tasks.register(operator_metrics.TaskCollector(list))
    return {
        **series_names(operator_metrics.REGISTRY),
        **series_names(tasks),
        **series_names(ApiMetrics().registry),
    }


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions and labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        called = text[match.end() :].lstrip().startswith("(")
        if called:
            assert word in FUNCTIONS, f"unexpected PromQL function {word!r} in {expr}"
        elif word not in KEYWORDS:
            names.add(word)
    return names


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, method) (rate(a_bucket{x=~"$n", y!="b c"}[5m])))'
        " / on (job) group_left (pod) sum without (z) (b_total) or vector_x"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "vector_x"}
    with pytest.raises(AssertionError, match="label_replace"):
        metric_names("label_replace(a, 'x', 'y', 'z', 'w')")


def test_dashboard_is_a_provisionable_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "nico-flow"
    assert dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_every_query_uses_defined_metrics(dashboard: dict[str, Any]) -> None:
    known = defined()
    used: set[str] = set()
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: no metric in {target['expr']}"
            unknown = names - set(known)
            assert not unknown, f"{panel['title']}: {sorted(unknown)} are not defined"
            used |= {known[n] for n in names}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            (metric,) = re.findall(r"label_values\((\w+),", variable["definition"])
            assert metric in known
    # every operator family shows somewhere, and the API's request, error and latency series
    operator_families = {
        family
        for name, family in known.items()
        if family.startswith("nicoflow_") and not name.endswith("_created")
    }
    assert operator_families <= used, operator_families - used
    assert {
        "grpc_server_handled",
        "grpc_server_handling_seconds",
        "grpc_server_in_flight_requests",
    } <= used


def test_panels_cover_the_operational_questions(dashboard: dict[str, Any]) -> None:
    titles = " | ".join(p["title"] for p in panels(dashboard)).lower()
    for wanted in (
        "tasks by phase",
        "finished tasks",
        "stage duration",
        "queue depth",
        "core calls",
        "core errors",
        "core latency",
        "reconciles",
        "reconcile errors",
        "reconcile duration",
        "api requests",
        "api errors",
        "api latency",
    ):
        assert wanted in titles, wanted
