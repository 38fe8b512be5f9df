"""The chart's security pieces, rendered: admission policies named after the
release, RBAC that gives the verbs `drive` and `attribute` to the operator and
the API only, user roles that do not widen edit/admin, the API's roles file
under mTLS, the alert webhook from a Secret file, and BMC Secrets by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chart_support import ALL_VALUES, CHART, Helm, kinds, one

VALUES_PARAMS = [pytest.param(path, id=name) for name, path in ALL_VALUES]
MAP_API = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"


def _rules(docs: list[dict[str, Any]], kind: str, name_suffix: str) -> list[dict[str, Any]]:
    found = [d for d in kinds(docs, kind) if d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, [d["metadata"]["name"] for d in kinds(docs, kind)]
    rules: list[dict[str, Any]] = found[0]["rules"]
    return rules


def _verbs(rules: list[dict[str, Any]], resource: str) -> set[str]:
    return {v for r in rules if resource in r.get("resources", []) for v in r["verbs"]}


def test_admission_policies_carry_the_release_name(helm: Helm) -> None:
    docs = helm.render(release="shop", extra=(f"--api-versions={MAP_API}",))
    policies = {
        d["metadata"]["name"]: d
        for kind in ("ValidatingAdmissionPolicy", "MutatingAdmissionPolicy")
        for d in kinds(docs, kind)
    }
    assert set(policies) == {
        "shop-nico-flow-tasks",
        "shop-nico-flow-requester",
        "shop-nico-flow-requested-by",
    }
    bindings = [
        d
        for kind in ("ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicyBinding")
        for d in kinds(docs, kind)
    ]
    assert sorted(b["spec"]["policyName"] for b in bindings) == sorted(policies)
    # without MutatingAdmissionPolicy served, the rest still ships
    plain = helm.render(release="shop")
    assert kinds(plain, "MutatingAdmissionPolicy") == []
    assert len(kinds(plain, "ValidatingAdmissionPolicy")) == 2
    assert (
        kinds(helm.render(extra=("--set=admission.enabled=false",)), "ValidatingAdmissionPolicy")
        == []
    )


@pytest.mark.parametrize("values", VALUES_PARAMS)
def test_only_the_operator_drives_tasks_and_only_operator_and_api_attribute(
    helm: Helm, values: Path | None
) -> None:
    docs = helm.render(values)
    for role in kinds(docs, "ClusterRole") + kinds(docs, "Role"):
        for rule in role.get("rules", []):
            if "flow.nico.io" in rule.get("apiGroups", []):
                assert "*" not in rule["verbs"], role["metadata"]["name"]
        name = role["metadata"]["name"]
        verbs = _verbs(role.get("rules", []), "tasks")
        if "drive" in verbs:
            assert name.endswith("-operator"), name
        attributes = _verbs(role.get("rules", []), "taskspecs")
        if "attribute" in attributes:
            assert name.endswith(("-operator", "-api")), name
    assert "drive" in _verbs(_rules(docs, "ClusterRole", "nico-flow-operator"), "tasks")


def test_user_roles_do_not_widen_edit_or_admin(helm: Helm) -> None:
    docs = helm.render()
    roles = {d["metadata"]["name"]: d for d in kinds(docs, "ClusterRole")}
    viewer, operator = roles["flow-viewer"], roles["flow-operator"]
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert not any("aggregate" in k for k in operator["metadata"]["labels"])
    assert _verbs(viewer["rules"], "tasks") == {"get", "list", "watch"}
    assert _verbs(operator["rules"], "taskspecs") >= {"create", "delete"}
    assert _verbs(operator["rules"], "tasks") == {"get", "list", "watch", "update", "patch"}
    off = helm.render(extra=("--set=rbac.userRoles.aggregateViewerToDefaultRoles=false",))
    labels = {d["metadata"]["name"]: d["metadata"]["labels"] for d in kinds(off, "ClusterRole")}
    assert not any("aggregate" in k for k in labels["flow-viewer"])


def _container(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    dep = one(docs, "Deployment", component)
    container: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
    return container


def test_api_reads_its_roles_file_under_mtls_only(helm: Helm) -> None:
    tls = CHART / "ci" / "tls-netpol-monitor-values.yaml"
    docs = helm.render(tls, extra=("--set=api.authorization.roles.admin[0]=spiffe://x/ns/p/*",))
    args = _container(docs, "api")["args"]
    assert "--roles=/etc/nico-flow/api-roles/roles.yaml" in args
    config = next(
        d for d in kinds(docs, "ConfigMap") if d["metadata"]["name"].endswith("api-roles")
    )
    assert "spiffe://x/ns/p/*" in config["data"]["roles.yaml"]
    assert "defaultRole: viewer" in config["data"]["roles.yaml"]
    plain = helm.render(CHART / "ci" / "external-db-values.yaml")
    assert not any(a.startswith("--roles") for a in _container(plain, "api")["args"])


def test_alert_webhook_comes_from_a_secret_file(helm: Helm) -> None:
    docs = helm.render(CHART / "ci" / "external-db-values.yaml")
    container = _container(docs, "operator")
    assert "--alert-webhook-file=/etc/nico-flow/alert-webhook/url" in container["args"]
    assert not any(a.startswith("--alert-webhook=") for a in container["args"])
    volumes = one(docs, "Deployment", "operator")["spec"]["template"]["spec"]["volumes"]
    hook = next(v for v in volumes if v["name"] == "alert-webhook")
    assert hook["secret"]["secretName"] == "flow-alert-webhook"
    role = next(r for r in kinds(docs, "Role") if r["metadata"]["name"].endswith("bmc-credentials"))
    assert _verbs(role["rules"], "secrets") == {"get"}
    assert role["rules"][0]["resourceNames"] == ["rack-a03-bmc"]
