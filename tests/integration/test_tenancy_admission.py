"""Who may touch which rack, against the real apiserver, operator, PostgreSQL
and Core simulator.

People act with their own credentials: `alice` is a static-token user of the
control plane, `bot` a ServiceAccount with a TokenRequest token; both hold the
built-in `edit` role and the chart's flow-operator role in a tenant namespace
only, plus a Role letting them create Tasks (as the chart's editor role used
to), so what refuses them is the admission policy, not RBAC. A
RackAccessPolicy grants that namespace power on the racks labelled row=a. The
operator watches the tenant and the platform namespace."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_fixtures import condition, in_phase
from sqlalchemy import text

from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack, finished, phase
from nicoflow.devstack.postgres import Postgres
from nicoflow.domain.default_rules import builtin_rule
from nicoflow.domain.types import OperationCode
from nicoflow.inventory.db import make_engine
from nicoflow.kube.resources import task_name

REPO = Path(__file__).resolve().parents[2]
GROUP = "flow.nico.io/v1alpha1"
POLICY_MESSAGE = "Tasks are created only by the nico-flow operator"


class _RowLabelledStack(FlowStack):
    """Racks 0 and 1 in row a, the others in row b, labelled before the operator sees them."""

    def apply_racks(self) -> None:
        for i, body in enumerate(self.rack_bodies):
            body["metadata"].setdefault("labels", {})["row"] = "a" if i < 2 else "b"
        super().apply_racks()


@dataclass
class Site:
    flow: FlowStack
    platform: str
    tenant: str
    alice: Path
    bot: Path
    policy: str

    @property
    def cp(self) -> ControlPlane:
        return self.flow.cp

    @property
    def row_a(self) -> list[str]:
        return self.flow.rack_names[:2]

    @property
    def row_b(self) -> list[str]:
        return self.flow.rack_names[2:]

    def as_user(
        self, kubeconfig: Path, *args: str, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.cp.kubectl(*args, input=input, kubeconfig=kubeconfig, check=False)


def _chart_user_roles(tag: str) -> str:
    helm = (
        subprocess.run(
            ["bash", str(REPO / "hack" / "get-helm.sh")], check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return subprocess.run(
        [
            helm, "template", "t", str(REPO / "charts" / "nico-flow"),
            "--show-only", "templates/rbac-users.yaml",
            f"--set=rbac.userRoles.viewerName=flow-viewer-{tag}",
            f"--set=rbac.userRoles.operatorName=flow-operator-{tag}",
            "--set=rbac.userRoles.aggregateViewerToDefaultRoles=false",
        ],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


@pytest.fixture(scope="module")
def site(
    control_plane: ControlPlane,
    postgres: Postgres,
    crds_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    tag = uuid.uuid4().hex[:6]
    platform, tenant = f"pf-{tag}", f"ten-{tag}"
    work = tmp_path_factory.mktemp("tenancy")
    cp = control_plane
    for ns in (platform, tenant):
        cp.kubectl("create", "namespace", ns)
    cp.kubectl("label", "namespace", tenant, f"team=t-{tag}")
    cp.kubectl("apply", "-f", "-", input=_chart_user_roles(tag))
    cp.kubectl("create", "serviceaccount", "bot", "-n", tenant)
    cp.kubectl(
        "create", "role", "task-writer", "--verb=create,update,patch",
        "--resource=tasks.flow.nico.io", "-n", tenant,
    )  # fmt: skip
    for subject in ("--user=alice", f"--serviceaccount={tenant}:bot"):
        who = subject.split("=")[1].replace(":", "-")
        for role in ("clusterrole=edit", f"clusterrole=flow-operator-{tag}", "role=task-writer"):
            cp.kubectl(
                "create", "rolebinding", f"{role.split('=')[1]}-{who}", f"--{role}", subject,
                "-n", tenant,
            )  # fmt: skip
    token = cp.kubectl("create", "token", "bot", "-n", tenant, "--duration=1h").stdout.strip()
    bot = cp.write_kubeconfig(work / "bot.kubeconfig", token, user="bot")
    alice = cp.user_kubeconfig("alice", work)
    policy = f"team-{tag}"
    cp.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": GROUP,
                "kind": "RackAccessPolicy",
                "metadata": {"name": policy},
                "spec": {
                    "description": "tenant team may power the racks of row a",
                    "namespaceSelector": {"matchLabels": {"team": f"t-{tag}"}},
                    "rackSelector": {"matchLabels": {"row": "a"}},
                    "operations": ["power"],
                },
            }
        ),
    )
    db = f"t_ten_{tag}"
    stack = _RowLabelledStack(
        cp,
        postgres.create_database(db),
        work,
        racks=3,
        seed=41,
        sim_args=("--latency-power", "0s"),
        namespaces=(platform, tenant),
        operator_args=("--platform-namespace", platform),
    )
    try:
        with stack:
            yield Site(stack, platform, tenant, alice, bot, policy)
    finally:
        cp.kubectl("delete", "rackaccesspolicy", policy, "--ignore-not-found", check=False)
        roles = (f"flow-viewer-{tag}", f"flow-operator-{tag}")
        cp.kubectl("delete", "clusterrole", *roles, check=False)
        for ns in (platform, tenant):
            cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        postgres.drop_database(db)


def taskspec(name: str, operation: str, racks: list[str], **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": GROUP,
            "kind": "TaskSpec",
            "metadata": {"name": name},
            "spec": {"operation": operation, "targets": {"racks": racks}, **spec},
        }
    )


def task(
    name: str, ts: str, rack: str, owner_uid: str | None = None, owner: str | None = None
) -> str:
    meta: dict[str, Any] = {"name": name, "labels": {"flow.nico.io/rack": rack}}
    if owner_uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": GROUP,
                "kind": "TaskSpec",
                "name": owner or ts,
                "uid": owner_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return json.dumps(
        {
            "apiVersion": GROUP,
            "kind": "Task",
            "metadata": meta,
            "spec": {
                "taskSpecName": ts,
                "rack": rack,
                "operation": "power_off",
                "components": [{"type": "compute", "ids": [{"name": "compute-01"}]}],
                "rule": {
                    "name": "builtin-power_off",
                    "source": "builtin",
                    "definition": builtin_rule(OperationCode.POWER_OFF).to_crd(),
                },
            },
        }
    )


def wait_finished(site: Site, name: str, ns: str, timeout: float = 120) -> dict[str, Any]:
    return site.flow.wait_for("taskspec", name, ns, finished, timeout=timeout)


def failed_condition(obj: dict[str, Any]) -> dict[str, Any]:
    found = condition(obj, "Failed")
    assert found is not None, obj.get("status")
    return found


# -- only the operator writes Tasks -------------------------------------------------


def test_a_namespace_editor_cannot_create_a_task(site: Site) -> None:
    for who in (site.alice, site.bot):
        created = site.as_user(
            who, "create", "-n", site.tenant, "-f", "-", input=task("mine", "x", site.row_a[0])
        )
        assert created.returncode != 0
        assert POLICY_MESSAGE in created.stderr, created.stderr
        assert "create a TaskSpec instead" in created.stderr
    assert site.flow.list("tasks", site.tenant) == []


def test_a_namespace_editor_may_only_cancel_a_task(site: Site) -> None:
    rack = site.row_a[0]
    made = site.as_user(
        site.alice,
        "create",
        "-n",
        site.tenant,
        "-f",
        "-",
        input=taskspec("held", "power_on", [rack], suspend=True),
    )
    assert made.returncode == 0, made.stderr
    name = task_name("held", rack)
    site.flow.wait_for("task", name, site.tenant, lambda t: bool(t), timeout=60)

    relabel = site.as_user(
        site.alice, "label", "task", name, "-n", site.tenant, "--overwrite", "flow.nico.io/rack=x"
    )
    assert relabel.returncode != 0
    assert "may only set spec.cancel on a Task" in relabel.stderr, relabel.stderr
    retarget = site.as_user(
        site.alice, "patch", "task", name, "-n", site.tenant, "--type=merge",
        "-p", json.dumps({"spec": {"rack": site.row_b[0]}}),
    )  # fmt: skip
    assert retarget.returncode != 0
    assert "immutable except spec.cancel" in retarget.stderr, retarget.stderr
    status = site.as_user(
        site.alice, "patch", "task", name, "-n", site.tenant, "--subresource=status",
        "--type=merge", "-p", '{"status": {"phase": "Succeeded"}}',
    )  # fmt: skip
    assert status.returncode != 0  # RBAC gives editors no status rights at all
    cancel = site.as_user(
        site.alice, "patch", "task", name, "-n", site.tenant, "--type=merge",
        "-p", '{"spec": {"cancel": true}}',
    )  # fmt: skip
    assert cancel.returncode == 0, cancel.stderr
    done = site.flow.wait_for("task", name, site.tenant, in_phase("Cancelled"), timeout=60)
    assert phase(done) == "Cancelled"


def test_the_operator_refuses_tasks_an_admin_made_by_hand(site: Site) -> None:
    """An admin passes the admission policy; the operator still runs nothing it did
    not make for a live TaskSpec, and says why."""
    ns, rack = site.platform, site.row_a[1]
    assert site.flow.control is not None
    since = max((int(e["seq"]) for e in site.flow.control.ledger()), default=0)
    for name in ("decoy", "other"):
        decoy_spec = taskspec(name, "power_off", [rack], suspend=True)
        site.cp.kubectl("create", "-n", ns, "-f", "-", input=decoy_spec)
    uid = site.flow.get("taskspec", "decoy", ns)["metadata"]["uid"]
    other = site.flow.get("taskspec", "other", ns)["metadata"]["uid"]
    cases = {
        # no owner at all
        "orphan": (task("orphan", "decoy", rack), "Orphaned", "no controlling owner"),
        # owned by another TaskSpec than the one it claims to run for (an owner uid
        # that exists nowhere would be garbage-collected before the operator looks)
        "stolen-owner": (
            task("stolen-owner", "decoy", rack, owner_uid=other, owner="other"),
            "OwnerMismatch",
            "not by TaskSpec decoy",
        ),
        # the right owner, a rack that is not in the inventory
        task_name("decoy", "rack-zz"): (
            task(task_name("decoy", "rack-zz"), "decoy", "rack-zz", owner_uid=uid),
            "UnknownRack",
            "rack-zz is not in the inventory",
        ),
    }
    for body, _, _ in cases.values():
        site.cp.kubectl("create", "-n", ns, "-f", "-", input=body)
    for name, (_, reason, words) in cases.items():
        refused = site.flow.wait_for("task", name, ns, in_phase("Failed"), timeout=60)
        cond = failed_condition(refused)
        assert cond["reason"] == reason, cond
        assert words in cond["message"], cond
    events = json.loads(site.cp.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    assert {"Orphaned", "OwnerMismatch", "UnknownRack"} <= {e["reason"] for e in events}
    # nothing reached the hardware
    assert site.flow.control.ledger(since=str(since)) == []


# -- tenancy ---------------------------------------------------------------------------


def test_targets_outside_the_grant_are_refused_naming_the_racks(site: Site) -> None:
    everything = site.flow.rack_names
    made = site.as_user(
        site.alice, "create", "-n", site.tenant, "-f", "-",
        input=taskspec("too-wide", "power_off", everything),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    refused = wait_finished(site, "too-wide", site.tenant)
    assert phase(refused) == "Failed"
    cond = failed_condition(refused)
    assert cond["reason"] == "AccessDenied"
    for rack in site.row_b:
        assert rack in cond["message"]
    for rack in site.row_a:
        assert rack not in cond["message"]
    assert f"namespace {site.tenant} may not run power_off" in cond["message"]
    assert refused["status"]["racks"] == 0
    assert site.flow.list("tasks", site.tenant, "flow.nico.io/taskspec=too-wide") == []

    # the grant is for power: a firmware upgrade of a granted rack is refused too
    made = site.as_user(
        site.bot, "create", "-n", site.tenant, "-f", "-",
        input=taskspec("firmware", "upgrade", site.row_a[:1]),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    refused = wait_finished(site, "firmware", site.tenant)
    assert "no RackAccessPolicy grants namespace" in failed_condition(refused)["message"]
    assert "firmware" in failed_condition(refused)["message"]


def test_targets_inside_the_grant_run_and_record_who_asked(site: Site) -> None:
    for who, name, user in (
        (site.alice, "mine", "alice"),
        (site.bot, "bots", f"system:serviceaccount:{site.tenant}:bot"),
    ):
        made = site.as_user(
            who, "create", "-n", site.tenant, "-f", "-",
            input=taskspec(name, "power_on", site.row_a),
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        done = wait_finished(site, name, site.tenant)
        assert phase(done) == "Complete", done["status"]
        assert done["status"]["requestedBy"] == user
        assert done["metadata"]["annotations"]["flow.nico.io/requested-by"] == user
        tasks = site.flow.list("tasks", site.tenant, f"flow.nico.io/taskspec={name}")
        assert {t["spec"]["requestedBy"] for t in tasks} == {user}
        assert _archived_requesters(site, name) == {user}


def _archived_requesters(site: Site, taskspec_name: str) -> set[str]:
    engine = make_engine(site.flow.database_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT requested_by FROM task_history WHERE task_spec_name = :n"),
                    {"n": taskspec_name},
                ).all()
            if len(rows) == 2 or time.monotonic() > deadline:
                return {r[0] for r in rows}
            time.sleep(0.5)
    finally:
        engine.dispose()


def test_who_asked_cannot_be_forged(site: Site) -> None:
    forged = yaml.safe_load(taskspec("forged", "power_on", site.row_a[:1], suspend=True))
    forged["metadata"]["annotations"] = {"flow.nico.io/requested-by": "mallory"}
    made = site.as_user(
        site.alice, "create", "-n", site.tenant, "-f", "-", input=json.dumps(forged)
    )
    assert made.returncode == 0, made.stderr
    stored = site.flow.get("taskspec", "forged", site.tenant)
    # the apiserver wrote the real author over the forged one
    assert stored["metadata"]["annotations"]["flow.nico.io/requested-by"] == "alice"
    changed = site.as_user(
        site.alice, "annotate", "taskspec", "forged", "-n", site.tenant, "--overwrite",
        "flow.nico.io/requested-by=mallory",
    )  # fmt: skip
    assert changed.returncode == 0  # kept as it was, silently
    stored = site.flow.get("taskspec", "forged", site.tenant)
    assert stored["metadata"]["annotations"]["flow.nico.io/requested-by"] == "alice"
    vouched = site.as_user(
        site.alice, "annotate", "taskspec", "forged", "-n", site.tenant,
        "flow.nico.io/on-behalf-of=the-ceo",
    )  # fmt: skip
    assert vouched.returncode != 0
    assert "lacks the RBAC verb attribute" in vouched.stderr, vouched.stderr


def test_the_policy_says_it_is_in_force(site: Site) -> None:
    def accepted(obj: dict[str, Any]) -> bool:
        found = condition(obj, "Accepted")
        return found is not None and found["status"] == "True"

    policy = site.flow.wait_for("rackaccesspolicy", site.policy, None, accepted, timeout=30)
    message = (condition(policy, "Accepted") or {})["message"]
    assert message.startswith("grants power on racks selected by row=a to namespaces")
    assert policy["status"]["observedGeneration"] == policy["metadata"]["generation"]


def schedule(name: str, operation: str, racks: list[str]) -> str:
    return json.dumps(
        {
            "apiVersion": GROUP,
            "kind": "TaskSchedule",
            "metadata": {"name": name},
            "spec": {
                "schedule": {"cron": "0 3 1 1 *"},
                "taskSpecTemplate": {
                    "metadata": {"annotations": {"flow.nico.io/on-behalf-of": "the-ceo"}},
                    "spec": {"operation": operation, "targets": {"racks": racks}},
                },
            },
        }
    )


def test_a_schedule_outside_the_grant_says_so_and_never_fires(site: Site) -> None:
    made = site.as_user(
        site.alice, "create", "-n", site.tenant, "-f", "-",
        input=schedule("wide-nightly", "power_off", site.flow.rack_names),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr

    def refused(obj: dict[str, Any]) -> bool:
        ready = condition(obj, "Ready")
        return ready is not None and ready["reason"] == "AccessDenied"

    found = site.flow.wait_for("taskschedule", "wide-nightly", site.tenant, refused, timeout=60)
    message = (condition(found, "Ready") or {})["message"]
    assert all(rack in message for rack in site.row_b)
    assert not any(rack in message for rack in site.row_a)
    # firing it by hand is refused as well
    site.as_user(
        site.alice, "annotate", "taskschedule", "wide-nightly", "-n", site.tenant,
        "flow.nico.io/trigger-now=now-1",
    )  # fmt: skip
    site.flow.wait_for(
        "taskschedule",
        "wide-nightly",
        site.tenant,
        lambda o: (o.get("status") or {}).get("lastTriggerToken") == "now-1",
        timeout=60,
    )
    spawned = site.flow.list("taskspecs", site.tenant, "flow.nico.io/schedule=wide-nightly")
    assert spawned == []


def test_a_granted_schedule_fires_for_its_author(site: Site) -> None:
    made = site.as_user(
        site.alice, "create", "-n", site.tenant, "-f", "-",
        input=schedule("row-a-nightly", "power_on", site.row_a),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    site.as_user(
        site.alice, "annotate", "taskschedule", "row-a-nightly", "-n", site.tenant,
        "flow.nico.io/trigger-now=go",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (
        spawned := site.flow.list("taskspecs", site.tenant, "flow.nico.io/schedule=row-a-nightly")
    ):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    name = spawned[0]["metadata"]["name"]
    done = wait_finished(site, name, site.tenant)
    assert phase(done) == "Complete", done["status"]
    # made for alice by the operator; the template's own claim was dropped
    assert done["metadata"]["annotations"]["flow.nico.io/on-behalf-of"] == "alice"
    assert done["status"]["requestedBy"] == "alice (via admin)"
