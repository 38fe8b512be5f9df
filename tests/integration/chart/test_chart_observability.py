"""The chart's observability objects as helm renders them: the API's metrics
port and Service, one ServiceMonitor over both metrics endpoints, and the
Grafana dashboard ConfigMap."""

from __future__ import annotations

import json
from typing import Any

from chart_support import CHART, Helm, kinds, one

MONITOR_API = "--api-versions=monitoring.coreos.com/v1/ServiceMonitor"


def _selects(selector: dict[str, str], obj: dict[str, Any]) -> bool:
    return selector.items() <= obj["metadata"].get("labels", {}).items()


def _container(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    pod = one(docs, "Deployment", component)["spec"]["template"]["spec"]
    container: dict[str, Any] = pod["containers"][0]
    return container


def test_api_serves_metrics_and_one_monitor_scrapes_both(helm: Helm) -> None:
    docs = helm.render(extra=("--set=metrics.serviceMonitor.enabled=true", MONITOR_API))
    api = _container(docs, "api")
    assert "--metrics-port=9091" in api["args"]
    assert {"name": "metrics", "containerPort": 9091} in api["ports"]
    services = {s["metadata"]["name"]: s for s in kinds(docs, "Service")}
    api_metrics = services["flow-nico-flow-api-metrics"]
    assert api_metrics["spec"]["ports"] == [
        {"name": "metrics", "port": 9091, "targetPort": "metrics"}
    ]
    pod_labels = one(docs, "Deployment", "api")["spec"]["template"]["metadata"]["labels"]
    assert api_metrics["spec"]["selector"].items() <= pod_labels.items()

    monitor = one(docs, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = sorted(name for name, svc in services.items() if _selects(selector, svc))
    # the metrics Services only: never the gRPC Service (it may be a LoadBalancer)
    assert scraped == ["flow-nico-flow-api-metrics", "flow-nico-flow-operator-metrics"]
    assert all(
        "metrics" in {p["name"] for p in services[name]["spec"]["ports"]} for name in scraped
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_metrics_off_means_no_flag_port_or_service(helm: Helm) -> None:
    docs = helm.render(extra=("--set=metrics.enabled=false",))
    api = _container(docs, "api")
    assert not any(a.startswith("--metrics-port") for a in api["args"])
    assert "metrics" not in {p["name"] for p in api["ports"]}
    names = {s["metadata"]["name"] for s in kinds(docs, "Service")}
    assert not {n for n in names if n.endswith("-metrics")}


def test_grafana_dashboard_configmap(helm: Helm) -> None:
    assert not [
        c
        for c in kinds(helm.render(), "ConfigMap")
        if "grafana_dashboard" in c["metadata"].get("labels", {})
    ], "off by default"
    docs = helm.render(
        extra=(
            "--set=metrics.grafanaDashboard.enabled=true",
            "--set=metrics.grafanaDashboard.labels.team=racks",
            "--set=metrics.grafanaDashboard.annotations.grafana_folder=NICo",
        )
    )
    cm = one(docs, "ConfigMap", "grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["team"] == "racks"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "NICo"}
    shipped = json.loads((CHART / "dashboards" / "nico-flow.json").read_text())
    assert json.loads(cm["data"]["nico-flow.json"]) == shipped
    # PromQL legends such as {{phase}} survive helm untouched
    assert "{{phase}}" in cm["data"]["nico-flow.json"]
