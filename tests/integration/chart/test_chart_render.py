"""The chart as helm renders it: lint, every value set, and what each template
must contain. No cluster: these run the real helm binary only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from chart_support import ALL_VALUES, CHART, Helm, kinds, one

from nicoflow import __version__
from nicoflow.api import admission
from nicoflow.api.crdgen import render_all
from nicoflow.cli.operator import operator as operator_command
from nicoflow.cli.serve import serve as serve_command
from nicoflow.core.config import parse_config

VALUES_PARAMS = [pytest.param(path, id=name) for name, path in ALL_VALUES]
CI = CHART / "ci"


def _values(path: Path | None) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) if path else {}


def _pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "StatefulSet", "Job"):
            specs.append((name, d["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            specs.append((name, d["spec"]))
    return specs


def _options(command: click.Command) -> set[str]:
    return {opt for p in command.params for opt in getattr(p, "opts", [])}


def _parses(command: click.Command, args: list[str]) -> None:
    """The arguments as the container passes them, through the command's own parser
    (a file the Pod mounts stands in as this file: it does not exist here)."""
    mounted = {
        opt
        for p in command.params
        if isinstance(p.type, click.Path) and p.type.exists
        for opt in p.opts
    }
    args = [
        f"{a.split('=', 1)[0]}={__file__}" if a.split("=", 1)[0] in mounted else a for a in args
    ]
    try:
        command.make_context(command.name or "flow", args)
    except click.UsageError as exc:
        raise AssertionError(f"{args}: {exc.format_message()}") from exc


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# -- chart metadata and generated copies ---------------------------------------------------


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


def test_chart_crds_equal_the_generated_crds() -> None:
    shipped = {p.name: p.read_text() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert shipped == render_all(), "run `flow crds --also charts/nico-flow/files/crds`"


def test_value_sets_cover_the_required_shapes() -> None:
    names = {p.stem for p in CI.glob("*.yaml")}
    assert {
        "external-db-values",
        "bundled-db-values",
        "tls-netpol-monitor-values",
        "no-crds-values",
        "api-replicas-values",
    } <= names


# -- lint and render every value set -------------------------------------------------------


@pytest.mark.parametrize("values", VALUES_PARAMS)
def test_helm_lint(helm: Helm, values: Path | None) -> None:
    args = ["lint", str(CHART), "--strict"]
    if values:
        args.append(f"--values={values}")
    out = helm.run(*args).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("values", VALUES_PARAMS)
def test_every_pod_is_restricted(helm: Helm, values: Path | None) -> None:
    docs = helm.render(values)
    pods = _pod_specs(docs)
    assert len(pods) >= 3
    for name, spec in pods:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "latest" not in c["image"], name
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}: a read-only root needs an emptyDir /tmp"


@pytest.mark.parametrize("values", VALUES_PARAMS)
def test_operator_deployment(helm: Helm, values: Path | None) -> None:
    docs = helm.render(values)
    dep = one(docs, "Deployment", "operator")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[0] == "operator"
    assert "--leader-elect" in args
    assert "--leader-election-id=flow-nico-flow-operator" in args
    assert not any(a.startswith("--peering") for a in args)
    assert "--liveness=http://0.0.0.0:8080/healthz" in args
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert {"name": "liveness", "containerPort": 8080} in container["ports"]
    # every flag the chart passes exists on `flow operator`
    flags = {a.split("=", 1)[0] for a in args[1:] if a.startswith("--")}
    assert flags <= _options(operator_command), flags - _options(operator_command)
    # ... and parses: helm writes a large number as 1e+06 unless the template says int64
    _parses(operator_command, args[1:])
    env = _env(container)
    assert "NICO_CORE_API_URL" in env
    # the certificate directory is named only when a Secret fills it: `flow
    # serve` refuses a named directory that lacks the files
    if _values(values).get("tls", {}).get("secretName"):
        assert env["CERTDIR"] == "/var/run/secrets/spiffe.io"
    else:
        assert "CERTDIR" not in env
    # the Lease's namespace and the holder identity, from the downward API
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert pod["serviceAccountName"] == "flow-nico-flow-operator"


@pytest.mark.parametrize("values", VALUES_PARAMS)
def test_api_deployment(helm: Helm, values: Path | None) -> None:
    vals = _values(values)
    docs = helm.render(values)
    api = vals.get("api", {})
    dep = one(docs, "Deployment", "api")
    replicas = api.get("replicas", 2)
    assert dep["spec"]["replicas"] == replicas
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[:2] == ["serve", "--listen-port=50051"]
    assert "--namespace=nico-flow" in args
    flags = {a.split("=", 1)[0] for a in args[1:] if a.startswith("--")}
    assert flags <= _options(serve_command), flags - _options(serve_command)
    _parses(serve_command, args[1:])
    tls = vals.get("tls", {}).get("secretName")
    probe = container["readinessProbe"]
    if tls:
        # the kubelet's gRPC probe cannot speak mTLS
        cmd = probe["exec"]["command"]
        assert cmd[:3] == ["python", "/opt/nico-flow/scripts/health_probe.py", "127.0.0.1:50051"]
        assert "--cert-dir=/var/run/secrets/spiffe.io" in cmd
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["tls"]["mountPath"] == "/var/run/secrets/spiffe.io"
    else:
        assert probe["grpc"] == {"port": 50051}
        assert container["livenessProbe"]["grpc"] == {"port": 50051}
    service = one(docs, "Service", "api")
    assert service["spec"]["ports"][0]["port"] == 50051
    pdbs = kinds(docs, "PodDisruptionBudget")
    if replicas > 1:
        assert len(pdbs) == 1
        assert pdbs[0]["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    else:
        assert pdbs == [], "a one-replica budget blocks node drains"


@pytest.mark.parametrize("values", VALUES_PARAMS)
def test_crds_behind_values(helm: Helm, values: Path | None) -> None:
    crds_values = _values(values).get("crds", {})
    crds = kinds(helm.render(values), "CustomResourceDefinition")
    if not crds_values.get("enabled", True):
        assert crds == []
        return
    assert sorted(c["metadata"]["name"] for c in crds) == sorted(
        name.removesuffix(".yaml") for name in render_all() if name != admission.FILENAME
    )
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "nico-flow"


def test_crds_without_keep(helm: Helm) -> None:
    crds = kinds(helm.render(extra=("--set=crds.keep=false",)), "CustomResourceDefinition")
    assert crds
    assert all("annotations" not in c["metadata"] for c in crds)


@pytest.mark.parametrize("values", VALUES_PARAMS)
def test_migration_hook_job(helm: Helm, values: Path | None) -> None:
    bundled = _values(values).get("database", {}).get("bundled", {}).get("enabled", False)
    job = one(helm.render(values), "Job", "db-migrate")
    ann = job["metadata"]["annotations"]
    expected = "post-install,pre-upgrade" if bundled else "pre-install,pre-upgrade"
    assert ann["helm.sh/hook"] == expected
    assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "migrate"]
    env = _env(container)
    assert ("DB_HOST" in env) == bundled
    assert ("DATABASE_URL" in env) != bundled


def test_external_database(helm: Helm) -> None:
    docs = helm.render(CI / "external-db-values.yaml")
    for component in ("operator", "api"):
        pod = one(docs, "Deployment", component)["spec"]["template"]["spec"]
        env = _env(pod["containers"][0])
        assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "flow-db", "key": "dsn"}}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["db-ca"]["secret"]["secretName"] == "flow-db-ca"
    assert kinds(docs, "StatefulSet") == []


def test_bundled_database(helm: Helm) -> None:
    docs = helm.render(CI / "bundled-db-values.yaml")
    sts = one(docs, "StatefulSet", "postgres")
    assert sts["spec"]["replicas"] == 1
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "docker.io/library/postgres:17.6"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "2Gi"
    }
    secret = one(docs, "Secret", "postgres")
    assert len(secret["stringData"]["password"]) == 32
    svc = one(docs, "Service", "postgres")
    env = _env(one(docs, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0])
    assert env["DB_HOST"] == svc["metadata"]["name"]
    assert env["DB_PASSWORD"] == {
        "secretKeyRef": {"name": secret["metadata"]["name"], "key": "password"}
    }


def test_component_manager_config_is_valid(helm: Helm) -> None:
    docs = helm.render(CI / "external-db-values.yaml")
    cm = one(docs, "ConfigMap", "operator")
    config = parse_config(cm["data"]["component-managers.yaml"], "chart")
    assert config.component_managers["compute"] == "nico"
    container = one(docs, "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]
    assert _env(container)["COMPONENT_MANAGER_CONFIG"] == "/etc/nico-flow/component-managers.yaml"
    # without values the operator keeps its embedded default
    default_env = _env(
        one(helm.render(), "Deployment", "operator")["spec"]["template"]["spec"]["containers"][0]
    )
    assert "COMPONENT_MANAGER_CONFIG" not in default_env


def test_tls_network_policies_and_service_monitor(helm: Helm) -> None:
    values = CI / "tls-netpol-monitor-values.yaml"
    docs = helm.render(values, extra=("--api-versions=monitoring.coreos.com/v1/ServiceMonitor",))
    monitor = one(docs, "ServiceMonitor")
    metrics_svc = one(docs, "Service", "operator")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        metrics_svc["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    policies = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]: p
        for p in kinds(docs, "NetworkPolicy")
    }
    assert set(policies) == {"operator", "api"}
    assert policies["api"]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policies["api"]["spec"]["ingress"][0]["from"][0]["namespaceSelector"]
    # the API's metrics port is open to the scrapers, apart from its callers
    api_rules = {r["ports"][0]["port"]: r for r in policies["api"]["spec"]["ingress"]}
    assert set(api_rules) == {"grpc", "metrics"}
    assert api_rules["metrics"].get("from") == policies["operator"]["spec"]["ingress"][0].get(
        "from"
    )
    # the test Pod checks health over mTLS with the configured server name
    test_pod = one(docs, "Pod", "test")
    cmd = test_pod["spec"]["containers"][0]["command"]
    assert cmd[2] == "flow-nico-flow-api.nico-flow.svc:50051"
    assert "--server-name=flow-api.example.internal" in cmd
    # without the Prometheus Operator's API the monitor is left out
    assert kinds(helm.render(values), "ServiceMonitor") == []


def test_helm_test_pod_and_scripts(helm: Helm) -> None:
    docs = helm.render()
    pod = one(docs, "Pod", "test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    cmd = pod["spec"]["containers"][0]["command"]
    assert cmd == [
        "python",
        "/opt/nico-flow/scripts/health_probe.py",
        "flow-nico-flow-api.nico-flow.svc:50051",
    ]
    scripts = one(docs, "ConfigMap", "api")
    assert scripts["data"]["health_probe.py"] == (CHART / "files" / "health_probe.py").read_text()


def _operator_args(docs: list[dict[str, Any]]) -> list[str]:
    pod = one(docs, "Deployment", "operator")["spec"]["template"]["spec"]
    args: list[str] = pod["containers"][0]["args"]
    return args


def test_leader_election_lease_rights_and_timings(helm: Helm) -> None:
    docs = helm.render(
        extra=(
            "--set=operator.leaderElection.leaseDuration=30",
            "--set=operator.leaderElection.renewDeadline=20",
            "--set=operator.leaderElection.retryPeriod=4",
        )
    )
    args = _operator_args(docs)
    assert "--leader-elect-lease-duration=30" in args
    assert "--leader-elect-renew-deadline=20" in args
    assert "--leader-elect-retry-period=4" in args
    # a namespaced Role on Leases, bound to the operator's ServiceAccount only
    role = _named(docs, "Role", "flow-nico-flow-operator-leader-election")
    assert role["metadata"]["namespace"] == "nico-flow"
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        }
    ]
    binding = _named(docs, "RoleBinding", "flow-nico-flow-operator-leader-election")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "flow-nico-flow-operator", "namespace": "nico-flow"}
    ]
    cluster_role = one(docs, "ClusterRole", "operator")
    groups = {g for rule in cluster_role["rules"] for g in rule["apiGroups"]}
    assert "coordination.k8s.io" not in groups
    assert "kopf.dev" not in groups, "no kopf peering"
    assert kinds(docs, "ClusterKopfPeering") == []


def test_leader_election_off(helm: Helm) -> None:
    docs = helm.render(extra=("--set=operator.leaderElection.enabled=false",))
    args = _operator_args(docs)
    # POD_NAMESPACE is set in the pod, so the default would be on: say no
    assert "--no-leader-elect" in args
    assert "--standalone" in args
    assert not any(a.startswith("--leader-elect-") for a in args)
    roles = kinds(docs, "Role") + kinds(docs, "RoleBinding")
    assert [r["metadata"]["name"] for r in roles if "leader" in r["metadata"]["name"]] == []


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in kinds(docs, kind) if d["metadata"]["name"] == name]
    return found


def test_bmc_credentials_readable_in_the_release_namespace_only(helm: Helm) -> None:
    docs = helm.render()
    role = _named(docs, "Role", "flow-nico-flow-operator-bmc-credentials")
    assert role["metadata"]["namespace"] == "nico-flow"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    binding = _named(docs, "RoleBinding", "flow-nico-flow-operator-bmc-credentials")
    assert binding["subjects"][0]["name"] == "flow-nico-flow-operator"
    cluster_role = one(docs, "ClusterRole", "operator")
    assert not [r for r in cluster_role["rules"] if "secrets" in r["resources"]]


def test_mirroring_core_racks_adds_the_flag_and_rack_creation(helm: Helm) -> None:
    def creates_racks(docs: list[dict[str, Any]]) -> bool:
        rules = one(docs, "ClusterRole", "operator")["rules"]
        return any("racks" in r["resources"] and "create" in r["verbs"] for r in rules)

    default = helm.render()
    assert "--mirror-expected-racks" not in _operator_args(default)
    assert not creates_racks(default)
    mirrored = helm.render(extra=("--set=operator.mirrorExpectedRacks=true",))
    assert "--mirror-expected-racks" in _operator_args(mirrored)
    assert creates_racks(mirrored)


@pytest.mark.parametrize(
    "timing",
    [
        ("leaseDuration=10", "renewDeadline=10"),
        ("renewDeadline=2", "retryPeriod=2"),
    ],
)
def test_leader_election_timings_must_leave_room(helm: Helm, timing: tuple[str, str]) -> None:
    sets = [f"--set=operator.leaderElection.{t}" for t in timing]
    result = helm.run("template", "flow", str(CHART), *sets, check=False)
    assert result.returncode != 0
    assert "must be longer than" in result.stderr


@pytest.mark.parametrize(
    "bad",
    [
        "bogus=1",
        "operator.bogus=1",
        "api.replicas=-1",
        "environment=prod",
        "core.url=http://x",
        "operator.leaderElection.retryPeriod=0",
        "operator.leaderElection.bogus=1",
        "operator.history.maxAgeDays=-1",
        "operator.history.bogus=1",
        "api.taskSpecTTLSeconds=-5",
        "api.workers=0",
    ],
)
def test_schema_rejects_bad_values(helm: Helm, bad: str) -> None:
    result = helm.run("template", "flow", str(CHART), f"--set={bad}", check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr


def test_retention_values_reach_the_processes(helm: Helm) -> None:
    docs = helm.render(
        extra=(
            "--set=api.taskSpecTTLSeconds=3600",
            "--set=api.workers=3",
            "--set=operator.history.maxAgeDays=30",
            "--set=operator.history.maxTasks=0",
        )
    )
    (operator,) = one(docs, "Deployment", "operator")["spec"]["template"]["spec"]["containers"]
    assert "--history-max-age-days=30" in operator["args"]
    assert "--history-max-tasks=0" in operator["args"]
    assert "--history-prune-interval=3600" in operator["args"]
    (api,) = one(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"]
    assert "--taskspec-ttl=3600" in api["args"]
    assert "--workers=3" in api["args"]
