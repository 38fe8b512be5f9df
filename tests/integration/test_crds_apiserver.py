"""The generated CRDs on a real kube-apiserver: valid objects are stored as sent,
invalid ones are refused with a message a person can act on, Task specs are
immutable except for cancel, statuses keep every declared field, and kubectl
shows the printer columns and the `flow` category."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from nicoflow.api.common import API_VERSION
from nicoflow.api.crdgen import KINDS
from nicoflow.api.taskstatus import TaskStatus
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.domain.default_rules import builtin_rule, builtin_rule_name
from nicoflow.domain.types import OperationCode

pytestmark = pytest.mark.usefixtures("crds_installed")

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"
CLUSTER_KINDS = {info.kind for info in KINDS if info.scope == "Cluster"}
MODELS = {info.kind: info.spec for info in KINDS}
Obj = dict[str, Any]


# -- helpers ---------------------------------------------------------------------------


def obj(kind: str, name: str, spec: Obj, namespace: str | None = None) -> Obj:
    meta: Obj = {"name": name}
    if namespace and kind not in CLUSTER_KINDS:
        meta["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


def create(cp: ControlPlane, body: Obj, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cp.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(body), check=check)


def get(cp: ControlPlane, kind: str, name: str, namespace: str | None = None) -> Obj:
    args = ["get", f"{kind.lower()}s.flow.nico.io", name, "-o", "json"]
    if namespace and kind not in CLUSTER_KINDS:
        args += ["-n", namespace]
    result: Obj = json.loads(cp.kubectl(*args).stdout)
    return result


def patch(
    cp: ControlPlane,
    kind: str,
    name: str,
    namespace: str | None,
    body: Obj,
    *,
    status: bool = False,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    args = ["patch", f"{kind.lower()}s.flow.nico.io", name, "--type=merge", "-p", json.dumps(body)]
    if namespace and kind not in CLUSTER_KINDS:
        args += ["-n", namespace]
    if status:
        args.append("--subresource=status")
    return cp.kubectl(*args, check=check)


def rack_spec(serial: str = "NVL72-TEST-1") -> Obj:
    return {
        "identity": {"manufacturer": "NVIDIA", "serialNumber": serial, "model": "GB200 NVL72"},
        "components": [
            {
                "name": "compute-01",
                "type": "compute",
                "serialNumber": f"{serial}-C1",
                "bmcs": [{"type": "host", "macAddress": "02:6e:66:aa:20:01"}],
            },
            {"name": "nvswitch-01", "type": "nvswitch", "serialNumber": f"{serial}-S1"},
        ],
    }


def rule_spec(code: OperationCode = OperationCode.POWER_ON, **extra: Any) -> Obj:
    return {"operation": code.value, "definition": builtin_rule(code).to_crd(), **extra}


def task_spec_spec(**extra: Any) -> Obj:
    return {"operation": "restart", "targets": {"racks": ["gb200-a01"]}, **extra}


def task_run_spec(**extra: Any) -> Obj:
    code = OperationCode.RESTART
    return {
        "taskSpecName": "restart-row-a",
        "rack": "gb200-a01",
        "operation": code.value,
        "components": [
            {
                "type": "compute",
                "ids": [
                    {"name": "compute-01", "serial": "CT240120001", "coreId": "fm100ht0001"},
                    {"name": "compute-02", "serial": "CT240120002", "coreId": "fm100ht0002"},
                ],
            },
            {"type": "nvswitch", "ids": [{"name": "nvswitch-01", "coreId": "sw0001"}]},
        ],
        "rule": {
            "name": builtin_rule_name(code),
            "source": "builtin",
            "reason": "no OperationRule for restart matches the rack",
            "definition": builtin_rule(code).to_crd(),
        },
        **extra,
    }


def schedule_spec(schedule: Obj, **extra: Any) -> Obj:
    return {
        "schedule": schedule,
        "taskSpecTemplate": {"spec": task_spec_spec(operation="power_on")},
        **extra,
    }


def with_step(code: OperationCode, **changes: Any) -> Obj:
    """A rule spec whose first step has `changes` applied."""
    spec = rule_spec(code)
    spec["definition"]["steps"][0].update(changes)
    return spec


def with_main(code: OperationCode, action: Obj) -> Obj:
    """A rule spec whose first step's main action is `action`."""
    return with_step(code, mainOperation=action)


def cycle_rule(*, verified: bool) -> Obj:
    """A power_off rule: the shelves restart in stage 1, the trays power off in stage 2."""
    check = [{"name": "VerifyPowerStatus", "parameters": {"expectedStatus": "on"}}]
    restart = {
        "componentType": "powershelf",
        "stage": 1,
        "mainOperation": {"name": "PowerControl", "parameters": {"operation": "restart"}},
        **({"postOperation": check} if verified else {}),
    }
    off = {"componentType": "compute", "stage": 2, "mainOperation": {"name": "PowerControl"}}
    return {"operation": "power_off", "definition": {"steps": [restart, off]}}


def without_pre_post(code: OperationCode) -> Obj:
    """A rule spec whose steps leave out preOperation and postOperation (both optional)."""
    spec = rule_spec(code)
    for step in spec["definition"]["steps"]:
        step.pop("preOperation", None)
        step.pop("postOperation", None)
    return spec


def task_with_main(action: Obj) -> Obj:
    """A Task spec whose rule snapshot's first step has `action` as main action."""
    spec = task_run_spec()
    spec["rule"]["definition"]["steps"][0]["mainOperation"] = action
    return spec


def contains(stored: Any, sent: Any) -> bool:
    """Whether `stored` holds everything of `sent` (the apiserver may add defaults)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(
            k in stored and contains(stored[k], v) for k, v in sent.items()
        )
    if isinstance(sent, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(sent)
            and all(contains(a, b) for a, b in zip(stored, sent, strict=True))
        )
    return bool(stored == sent)


def example_objects() -> list[Obj]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


# -- valid objects -----------------------------------------------------------------------

VALID: list[tuple[str, str, Callable[[], Obj]]] = [
    ("minimal rack", "Rack", lambda: rack_spec()),
    (
        "rule with selector",
        "OperationRule",
        lambda: rule_spec(
            OperationCode.POWER_OFF,
            priority=10,
            rackSelector={"matchExpressions": [{"key": "row", "operator": "In", "values": ["a"]}]},
        ),
    ),
    (
        "default upgrade rule",
        "OperationRule",
        lambda: rule_spec(OperationCode.UPGRADE, isDefault=True),
    ),
    (
        "upgrade rule without pre or post actions",
        "OperationRule",
        lambda: without_pre_post(OperationCode.UPGRADE),
    ),
    (
        "power rule without pre or post actions",
        "OperationRule",
        lambda: without_pre_post(OperationCode.POWER_ON),
    ),
    (
        "poll interval equal to timeout",
        "OperationRule",
        lambda: with_main(
            OperationCode.UPGRADE,
            {"name": "FirmwareControl", "timeout": "2m", "pollInterval": "2m"},
        ),
    ),
    (
        "legacy pollTimeout with a poll interval within it",
        "OperationRule",
        lambda: with_main(
            OperationCode.UPGRADE,
            {"name": "FirmwareControl", "pollInterval": "1m", "parameters": {"pollTimeout": "1h"}},
        ),
    ),
    (
        "inherited power_off with forceAfter",
        "OperationRule",
        lambda: with_main(
            OperationCode.POWER_OFF, {"name": "PowerControl", "parameters": {"forceAfter": "5m"}}
        ),
    ),
    ("taskspec by rack", "TaskSpec", lambda: task_spec_spec()),
    (
        "taskspec by components",
        "TaskSpec",
        lambda: {
            "operation": "force_power_off",
            "targets": {
                "components": [
                    {"coreId": "fm100ht0001", "type": "compute"},
                    {"serial": "CT240120002"},
                    {"name": "nvswitch-03", "rack": "gb200-a02"},
                    {"id": "5f0c6e0e-7c55-4d36-9c5e-0a6f4a1f4c01"},
                ]
            },
            "conflictStrategy": "Queue",
            "queueTimeoutSeconds": 86400,
        },
    ),
    (
        "firmware taskspec",
        "TaskSpec",
        lambda: {
            "operation": "upgrade",
            "targets": {"nvlDomains": ["nvl-a01"], "componentTypes": ["nvswitch"]},
            "options": {
                "targetVersion": '{"nvswitch": "1.3.0"}',
                "subTargets": ["bmc", "nvos"],
                "firmwareWindow": {
                    "startTime": "2026-06-01T22:00:00Z",
                    "endTime": "2026-06-02T04:00:00Z",
                },
                "overrideReadinessCheck": True,
            },
            "ruleRef": {"name": "gb200-upgrade"},
        },
    ),
    ("verified shelf restart then power-off", "OperationRule", lambda: cycle_rule(verified=True)),
    ("task", "Task", lambda: task_run_spec()),
    ("interval schedule", "TaskSchedule", lambda: schedule_spec({"interval": "6h"}, suspend=True)),
    (
        "one-time schedule",
        "TaskSchedule",
        lambda: schedule_spec({"at": "2026-12-24T18:00:00Z"}, overlapPolicy="Queue"),
    ),
    ("cron macro schedule", "TaskSchedule", lambda: schedule_spec({"cron": "@hourly"})),
]


@pytest.mark.parametrize(
    ("kind", "spec"), [(k, s) for _, k, s in VALID], ids=[n for n, _, _ in VALID]
)
def test_valid_object_is_stored_as_sent(
    control_plane: ControlPlane, namespace: str, kind: str, spec: Callable[[], Obj]
) -> None:
    body = obj(kind, f"valid-{namespace}", spec(), namespace)
    try:
        stored = json.loads(create(control_plane, body).stdout)
        assert contains(stored["spec"], body["spec"])  # kept as sent, defaults added around it
        MODELS[kind].model_validate(stored["spec"])  # and the operator reads what was stored
    finally:
        _forget_cluster_object(control_plane, body)


def _forget_cluster_object(cp: ControlPlane, body: Obj) -> None:
    """Namespaces go with their test; a cluster-wide object (a default rule
    above all) would steer every later test's operator."""
    if body["kind"] in CLUSTER_KINDS:
        kind = f"{body['kind'].lower()}s.flow.nico.io"
        cp.kubectl("delete", kind, body["metadata"]["name"], "--ignore-not-found", check=False)


@pytest.mark.parametrize(
    "doc", example_objects(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}"
)
def test_example_is_accepted(control_plane: ControlPlane, namespace: str, doc: Obj) -> None:
    body = copy.deepcopy(doc)
    if body["kind"] not in CLUSTER_KINDS:
        body["metadata"]["namespace"] = namespace
    try:
        result = control_plane.kubectl("apply", "-f", "-", input=json.dumps(body))
        assert "flow.nico.io" in result.stdout
    finally:
        _forget_cluster_object(control_plane, body)


def test_every_builtin_rule_is_a_valid_operation_rule(
    control_plane: ControlPlane, namespace: str
) -> None:
    items = [
        obj("OperationRule", f"{namespace}-{code.value.replace('_', '-')}", rule_spec(code))
        for code in OperationCode
    ]
    control_plane.kubectl(
        "create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    try:
        listed = control_plane.kubectl("get", "oprule", "-o", "name").stdout.split()
        assert {f"operationrule.flow.nico.io/{i['metadata']['name']}" for i in items} <= set(listed)
    finally:
        for item in items:
            _forget_cluster_object(control_plane, item)


# -- invalid objects ---------------------------------------------------------------------


def rack_with(**changes: Any) -> Obj:
    spec = rack_spec()
    spec.update(changes)
    return spec


def dup_component() -> Obj:
    spec = rack_spec()
    spec["components"].append(dict(spec["components"][0], serialNumber="OTHER"))
    return spec


def dup_serial() -> Obj:
    spec = rack_spec()
    spec["components"][1]["serialNumber"] = spec["components"][0]["serialNumber"]
    return spec


def bad_mac() -> Obj:
    spec = rack_spec()
    spec["components"][0]["bmcs"][0]["macAddress"] = "02-6e-66-aa-20-01"
    return spec


def no_pp_targets() -> Obj:
    return task_spec_spec(targets={"componentTypes": ["compute"]})


def two_identifiers() -> Obj:
    return task_spec_spec(
        targets={"components": [{"serial": "S1", "coreId": "m1", "type": "compute"}]}
    )


INVALID: list[tuple[str, str, Callable[[], Obj], str]] = [
    (
        "taskspec without targets",
        "TaskSpec",
        no_pp_targets,
        "targets must name at least one of racks, rackSelector, nvlDomains, components or allRacks",
    ),
    (
        "component with two identifiers",
        "TaskSpec",
        two_identifiers,
        "name a component by exactly one of id, coreId, serial or name",
    ),
    (
        "component name without rack",
        "TaskSpec",
        lambda: task_spec_spec(targets={"components": [{"name": "compute-01"}]}),
        "a component named by name must also set rack",
    ),
    (
        "coreId without type",
        "TaskSpec",
        lambda: task_spec_spec(targets={"components": [{"coreId": "m1"}]}),
        "a component named by coreId must also set type",
    ),
    (
        "unknown operation",
        "TaskSpec",
        lambda: task_spec_spec(operation="reboot"),
        'Unsupported value: "reboot"',
    ),
    (
        "queue timeout zero",
        "TaskSpec",
        lambda: task_spec_spec(queueTimeoutSeconds=0),
        "should be greater than or equal to 1",
    ),
    (
        "queue timeout too long",
        "TaskSpec",
        lambda: task_spec_spec(queueTimeoutSeconds=100000),
        "should be less than or equal to 86400",
    ),
    (
        "unknown conflict strategy",
        "TaskSpec",
        lambda: task_spec_spec(conflictStrategy="Wait"),
        'Unsupported value: "Wait"',
    ),
    (
        "firmware options on power op",
        "TaskSpec",
        lambda: task_spec_spec(options={"targetVersion": "1.2.3"}),
        "options.targetVersion, subTargets and firmwareWindow apply only to upgrade, downgrade and "
        "rollback",
    ),
    (
        "reversed firmware window",
        "TaskSpec",
        lambda: task_spec_spec(
            operation="upgrade",
            options={
                "firmwareWindow": {
                    "startTime": "2026-06-02T04:00:00Z",
                    "endTime": "2026-06-01T22:00:00Z",
                }
            },
        ),
        "firmwareWindow.startTime must be before endTime",
    ),
    (
        "selector In without values",
        "TaskSpec",
        lambda: task_spec_spec(
            targets={"rackSelector": {"matchExpressions": [{"key": "row", "operator": "In"}]}}
        ),
        "values must be non-empty for operators In and NotIn",
    ),
    (
        "cron and interval",
        "TaskSchedule",
        lambda: schedule_spec({"cron": "0 2 * * *", "interval": "1h"}),
        "set exactly one of schedule.cron, schedule.interval or schedule.at",
    ),
    (
        "no schedule kind",
        "TaskSchedule",
        lambda: schedule_spec({}),
        "set exactly one of schedule.cron, schedule.interval or schedule.at",
    ),
    (
        "abbreviated time zone",
        "TaskSchedule",
        lambda: schedule_spec({"cron": "0 2 * * *", "timeZone": "PST"}),
        "timeZone must be an IANA zone name",
    ),
    (
        "time zone without cron",
        "TaskSchedule",
        lambda: schedule_spec({"interval": "1h", "timeZone": "UTC"}),
        "timeZone applies only to cron schedules",
    ),
    (
        "interval too short",
        "TaskSchedule",
        lambda: schedule_spec({"interval": "30s"}),
        "interval must be at least 1m",
    ),
    (
        "interval not a duration",
        "TaskSchedule",
        lambda: schedule_spec({"interval": "1 hour"}),
        "spec.schedule.interval: Invalid value",
    ),
    (
        "cron with four fields",
        "TaskSchedule",
        lambda: schedule_spec({"cron": "0 2 * *"}),
        "cron must have five space-separated fields",
    ),
    (
        "history limit too large",
        "TaskSchedule",
        lambda: schedule_spec({"cron": "0 2 * * *"}, successfulHistoryLimit=101),
        "should be less than or equal to 100",
    ),
    (
        "template without targets",
        "TaskSchedule",
        lambda: dict(
            schedule_spec({"interval": "1h"}),
            taskSpecTemplate={"spec": {"operation": "power_on", "targets": {}}},
        ),
        "targets must name at least one of racks",
    ),
    (
        "default rule with selector",
        "OperationRule",
        lambda: rule_spec(isDefault=True, rackSelector={"matchLabels": {"row": "a"}}),
        "a default rule applies to every rack",
    ),
    (
        "two steps for one type in a stage",
        "OperationRule",
        lambda: with_step(OperationCode.POWER_ON, componentType="compute", stage=3),
        "each component type may have only one step per stage",
    ),
    (
        "sleep without duration",
        "OperationRule",
        lambda: with_step(OperationCode.POWER_ON, postOperation=[{"name": "Sleep"}]),
        "Sleep needs parameters.duration",
    ),
    (
        "verify without expected status",
        "OperationRule",
        lambda: with_step(OperationCode.POWER_ON, postOperation=[{"name": "VerifyPowerStatus"}]),
        "VerifyPowerStatus needs parameters.expectedStatus: on or off",
    ),
    (
        "reachability without types",
        "OperationRule",
        lambda: with_step(OperationCode.POWER_ON, preOperation=[{"name": "VerifyReachability"}]),
        "VerifyReachability needs parameters.componentTypes",
    ),
    (
        "unknown action",
        "OperationRule",
        lambda: with_step(OperationCode.POWER_ON, mainOperation={"name": "Reboot"}),
        'Unsupported value: "Reboot"',
    ),
    (
        "poll interval on PowerControl",
        "OperationRule",
        lambda: with_step(
            OperationCode.POWER_ON, mainOperation={"name": "PowerControl", "pollInterval": "5s"}
        ),
        "pollInterval applies only to the polling actions",
    ),
    (
        "forceAfter on restart",
        "OperationRule",
        lambda: with_step(
            OperationCode.POWER_OFF,
            mainOperation={
                "name": "PowerControl",
                "parameters": {"operation": "restart", "forceAfter": "5m"},
            },
        ),
        "parameters.forceAfter escalates a graceful power_off",
    ),
    (
        "inherited power op in a firmware rule",
        "OperationRule",
        lambda: with_step(OperationCode.UPGRADE, mainOperation={"name": "PowerControl"}),
        "every PowerControl action must set parameters.operation",
    ),
    (
        "stage zero",
        "OperationRule",
        lambda: with_step(OperationCode.POWER_ON, stage=0),
        "should be greater than or equal to 1",
    ),
    (
        "bad step timeout",
        "OperationRule",
        lambda: with_step(OperationCode.POWER_ON, timeout="5 minutes"),
        "timeout: Invalid value",
    ),
    (
        "zero action timeout",
        "OperationRule",
        lambda: with_main(OperationCode.POWER_ON, {"name": "PowerControl", "timeout": "0"}),
        "timeout must be greater than 0: give a duration such as 5m",
    ),
    (
        "zero action timeout with a unit",
        "OperationRule",
        lambda: with_main(OperationCode.POWER_ON, {"name": "PowerControl", "timeout": "0h0.0m"}),
        "timeout must be greater than 0",
    ),
    (
        "zero legacy pollTimeout",
        "OperationRule",
        lambda: with_main(
            OperationCode.UPGRADE, {"name": "FirmwareControl", "parameters": {"pollTimeout": "0s"}}
        ),
        "parameters.pollTimeout is the action's timeout and must be greater than 0",
    ),
    (
        "zero poll interval",
        "OperationRule",
        lambda: with_main(
            OperationCode.POWER_ON,
            {
                "name": "VerifyPowerStatus",
                "pollInterval": "0",
                "parameters": {"expectedStatus": "on"},
            },
        ),
        "pollInterval must be greater than 0: give a duration such as 10s",
    ),
    (
        "poll interval longer than timeout",
        "OperationRule",
        lambda: with_main(
            OperationCode.POWER_ON,
            {
                "name": "VerifyPowerStatus",
                "timeout": "10s",
                "pollInterval": "1m",
                "parameters": {"expectedStatus": "on"},
            },
        ),
        "pollInterval is longer than the action's timeout: shorten pollInterval or lengthen "
        "timeout",
    ),
    (
        "poll interval longer than the default timeout",
        "OperationRule",
        lambda: with_main(OperationCode.UPGRADE, {"name": "WaitBringUp", "pollInterval": "20m"}),
        "WaitBringUp 15m/30s",
    ),
    (
        "timeout shorter than the default poll interval",
        "OperationRule",
        lambda: with_main(OperationCode.UPGRADE, {"name": "FirmwareControl", "timeout": "1m"}),
        "pollInterval is longer than the action's timeout",
    ),
    (
        "poll interval longer than legacy pollTimeout",
        "OperationRule",
        lambda: with_main(
            OperationCode.UPGRADE,
            {"name": "FirmwareControl", "pollInterval": "5m", "parameters": {"pollTimeout": "1m"}},
        ),
        "pollInterval is longer than the action's timeout",
    ),
    (
        "firmware update in a power rule",
        "OperationRule",
        lambda: with_step(
            OperationCode.POWER_ON, preOperation=[{"name": "FirmwareControl", "timeout": "30m"}]
        ),
        "FirmwareControl updates firmware and does not belong in a power operation rule: remove "
        "it, or put it in a rule for upgrade, downgrade or rollback",
    ),
    (
        "firmware update as a power rule's main action",
        "OperationRule",
        lambda: with_main(OperationCode.RESTART, {"name": "FirmwareControl"}),
        "FirmwareControl updates firmware and does not belong in a power operation rule",
    ),
    (
        "sleep given expectedStatus",
        "OperationRule",
        lambda: with_step(
            OperationCode.POWER_ON,
            postOperation=[
                {"name": "Sleep", "parameters": {"duration": "1s", "expectedStatus": "on"}}
            ],
        ),
        "parameters.expectedStatus applies only to VerifyPowerStatus: remove it",
    ),
    (
        "power control given componentTypes",
        "OperationRule",
        lambda: with_main(
            OperationCode.POWER_ON,
            {"name": "PowerControl", "parameters": {"componentTypes": ["compute"]}},
        ),
        "parameters.componentTypes applies only to VerifyReachability: remove it",
    ),
    (
        "pollTimeout on a verification",
        "OperationRule",
        lambda: with_step(
            OperationCode.POWER_ON,
            postOperation=[
                {
                    "name": "VerifyPowerStatus",
                    "parameters": {"expectedStatus": "on", "pollTimeout": "5m"},
                }
            ],
        ),
        "parameters.pollTimeout applies only to FirmwareControl: remove it",
    ),
    (
        "sleep with timeout",
        "OperationRule",
        lambda: with_step(
            OperationCode.POWER_ON,
            postOperation=[{"name": "Sleep", "timeout": "5s", "parameters": {"duration": "1s"}}],
        ),
        "Sleep takes parameters.duration, not timeout: remove timeout",
    ),
    (
        "inherited power_on with forceAfter",
        "OperationRule",
        lambda: with_main(
            OperationCode.POWER_ON, {"name": "PowerControl", "parameters": {"forceAfter": "5m"}}
        ),
        "a PowerControl action without parameters.operation sends the rule's own operation, and "
        "parameters.forceAfter only escalates power_off",
    ),
    (
        # DST seed 201877: the shelves' restart, unverified, then the trays' power-off
        "power command after an unverified shelf restart",
        "OperationRule",
        lambda: cycle_rule(verified=False),
        "a restart or reset (restart, force_restart, warm_reset, cold_reset) needs a "
        "VerifyPowerStatus (expectedStatus: on) in its step's postOperation",
    ),
    (
        "zero retry interval",
        "OperationRule",
        lambda: with_step(
            OperationCode.POWER_ON,
            retry={"maxAttempts": 3, "initialInterval": "0s", "backoffCoefficient": 2.0},
        ),
        "retry.initialInterval must be greater than 0",
    ),
    (
        "task rule with a sleep timeout",
        "Task",
        lambda: task_with_main(
            {"name": "Sleep", "timeout": "5s", "parameters": {"duration": "1s"}}
        ),
        "Sleep takes parameters.duration, not timeout",
    ),
    (
        "task rule with a zero poll interval",
        "Task",
        lambda: task_with_main({"name": "WaitBringUp", "pollInterval": "0ms"}),
        "pollInterval must be greater than 0",
    ),
    (
        "task rule with a timeout past Go's durations",
        "Task",
        lambda: task_with_main({"name": "PowerControl", "timeout": "10000000000000ms"}),
        "duration is too long: at most 2540400h",
    ),
    (
        "rule with a timeout past Go's durations",
        "OperationRule",
        lambda: with_main(OperationCode.POWER_ON, {"name": "PowerControl", "timeout": "2540401h"}),
        "duration is too long: at most 2540400h",
    ),
    (
        # the requested-by mutation runs before the schema: it must not turn
        # a malformed spec into its own error
        "taskspec with targets of the wrong type",
        "TaskSpec",
        lambda: task_spec_spec(targets=[]),
        'spec.targets: Invalid value: "array": spec.targets in body must be of type object',
    ),
    ("rack with duplicate component name", "Rack", dup_component, "Duplicate value"),
    (
        "rack with duplicate serial",
        "Rack",
        dup_serial,
        "component serial numbers must be unique within the rack",
    ),
    ("rack with bad MAC", "Rack", bad_mac, "macAddress: Invalid value"),
    (
        "task without rule",
        "Task",
        lambda: {k: v for k, v in task_run_spec().items() if k != "rule"},
        "spec.rule: Required value",
    ),
    (
        "task without components",
        "Task",
        lambda: task_run_spec(components=[]),
        "should have at least 1 items",
    ),
]


@pytest.mark.parametrize(
    ("kind", "spec", "expected"),
    [(k, s, e) for _, k, s, e in INVALID],
    ids=[n for n, _, _, _ in INVALID],
)
def test_invalid_object_is_rejected_with_a_clear_message(
    control_plane: ControlPlane, namespace: str, kind: str, spec: Callable[[], Obj], expected: str
) -> None:
    result = create(control_plane, obj(kind, f"bad-{namespace}", spec(), namespace), check=False)
    assert result.returncode != 0, result.stdout
    assert expected in result.stderr


def test_rack_name_must_fit_a_label_value(control_plane: ControlPlane) -> None:
    result = create(control_plane, obj("Rack", "r" * 64, rack_spec()), check=False)
    assert result.returncode != 0
    assert "rack names are used as label values" in result.stderr


# -- updates -------------------------------------------------------------------------------


def test_task_spec_is_immutable_except_cancel(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    create(cp, obj("Task", "t1", task_run_spec(), namespace))
    for change in (
        {"rack": "gb200-a02"},
        {"operation": "force_restart"},
        {"components": [{"type": "compute", "ids": [{"name": "compute-09"}]}]},
        {
            "rule": {
                "name": "other",
                "source": "explicit",
                "definition": builtin_rule(OperationCode.RESTART).to_crd(),
            }
        },
        {"options": {"overrideReadinessCheck": True}},
        {"queueTimeoutSeconds": 60},
    ):
        result = patch(cp, "Task", "t1", namespace, {"spec": change}, check=False)
        assert result.returncode != 0, change
        assert "a Task's spec is immutable except spec.cancel" in result.stderr

    patch(cp, "Task", "t1", namespace, {"spec": {"cancel": True}})
    assert get(cp, "Task", "t1", namespace)["spec"]["cancel"] is True
    undo = patch(cp, "Task", "t1", namespace, {"spec": {"cancel": False}}, check=False)
    assert undo.returncode != 0
    assert "cancel cannot be unset once true" in undo.stderr
    assert get(cp, "Task", "t1", namespace)["spec"]["cancel"] is True


def test_task_spec_request_is_fixed_but_rollout_knobs_move(
    control_plane: ControlPlane, namespace: str
) -> None:
    cp = control_plane
    create(cp, obj("TaskSpec", "ts1", task_spec_spec(), namespace))
    for change in (
        {"operation": "power_off"},
        {"targets": {"racks": ["gb200-a02"]}},
        {"conflictStrategy": "Queue"},
        {"ruleRef": {"name": "mine"}},
    ):
        result = patch(cp, "TaskSpec", "ts1", namespace, {"spec": change}, check=False)
        assert result.returncode != 0, change
        assert "cannot change after creation (create a new TaskSpec)" in result.stderr
    knobs = {"suspend": True, "maxParallelRacks": 3, "maxFailedRacks": 1, "description": "later"}
    patch(cp, "TaskSpec", "ts1", namespace, {"spec": knobs})
    stored = get(cp, "TaskSpec", "ts1", namespace)["spec"]
    assert {k: stored[k] for k in knobs} == knobs
    patch(cp, "TaskSpec", "ts1", namespace, {"spec": {"cancel": True}})
    undo = patch(cp, "TaskSpec", "ts1", namespace, {"spec": {"cancel": False}}, check=False)
    assert "cancel cannot be unset once true" in undo.stderr


def test_schedule_template_can_be_edited(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    create(cp, obj("TaskSchedule", "s1", schedule_spec({"cron": "0 3 * * *"}), namespace))
    template = {"spec": {"operation": "power_off", "targets": {"racks": ["gb200-a02"]}}}
    patch(cp, "TaskSchedule", "s1", namespace, {"spec": {"taskSpecTemplate": template}})
    stored = get(cp, "TaskSchedule", "s1", namespace)["spec"]["taskSpecTemplate"]["spec"]
    assert (stored["operation"], stored["targets"]) == ("power_off", {"racks": ["gb200-a02"]})


def test_defaults_are_applied_by_the_apiserver(control_plane: ControlPlane, namespace: str) -> None:
    create(control_plane, obj("TaskSpec", "d1", task_spec_spec(), namespace))
    spec = get(control_plane, "TaskSpec", "d1", namespace)["spec"]
    assert spec["conflictStrategy"] == "Reject"
    assert spec["queueTimeoutSeconds"] == 3600
    assert (spec["suspend"], spec["cancel"], spec["maxParallelRacks"]) == (False, False, 0)


# -- statuses keep every declared field ------------------------------------------------------

T = "2026-03-01T12:00:00Z"
COND = {
    "type": "Ready",
    "status": "True",
    "observedGeneration": 1,
    "lastTransitionTime": T,
    "reason": "Synced",
    "message": "in sync with NICo Core",
}

RACK_STATUS: Obj = {
    "observedGeneration": 1,
    "componentCounts": {
        "total": 35,
        "compute": 18,
        "nvswitch": 9,
        "powershelf": 8,
        "torswitch": 0,
        "ums": 0,
        "cdu": 0,
    },
    "power": {"state": "Mixed", "on": 30, "off": 4, "unknown": 1, "observedTime": T},
    "firmware": [{"type": "compute", "versions": [{"version": "1.3.2", "count": 18}]}],
    "drift": {"missing": 1, "unexpected": 0, "mismatch": 2, "checkedTime": T},
    "activeTask": {
        "name": "t1",
        "namespace": "default",
        "uid": "u-1",
        "operation": "restart",
        "phase": "Running",
    },
    "leak": {"state": "Detected", "components": ["compute-03"], "detectedTime": T},
    "conditions": [COND],
}
RULE_STATUS: Obj = {
    "observedGeneration": 1,
    "operationType": "power_control",
    "conditions": [dict(COND, type="Valid", reason="Validated")],
}
TASK_SPEC_STATUS: Obj = {
    "observedGeneration": 2,
    "phase": "Running",
    "message": "2 of 3 racks done",
    "racks": 3,
    "pending": 0,
    "waiting": 1,
    "running": 0,
    "succeeded": 1,
    "failed": 1,
    "cancelled": 0,
    "startTime": T,
    "completionTime": T,
    "resolutionErrors": [{"target": "racks[2]", "message": "rack gb200-z99 not found"}],
    "tasks": [{"name": "ts1-gb200-a01", "rack": "gb200-a01", "phase": "Succeeded"}],
    "tasksTruncated": False,
    "conditions": [dict(COND, type="Resolved", reason="RacksResolved")],
}
SCHEDULE_STATUS: Obj = {
    "observedGeneration": 1,
    "lastScheduleTime": T,
    "nextScheduleTime": T,
    "lastSuccessfulTime": T,
    "active": [{"name": "nightly-1", "namespace": "default", "uid": "u"}],
    "conditions": [COND],
}


def full_task_status() -> Obj:
    intent = {
        "key": "uid/1/compute/0/1",
        "action": "PowerControl/power_off",
        "componentIds": ["fm100ht0001"],
        "issuedAt": T,
    }
    step = {
        "componentType": "compute",
        "phase": "Running",
        "total": 2,
        "succeeded": 1,
        "failed": 0,
        "batch": 1,
        "batches": 2,
        "action": 1,
        "actionName": "VerifyPowerStatus",
        "attempt": 2,
        "startedAt": T,
        "batchStartedAt": T,
        "actionStartedAt": T,
        "mainIssuedAt": T,
        "escalated": True,
        "nextAt": T,
        "polls": 3,
        "issued": ["fm100ht0001"],
        "done": ["fm100ht0002"],
        "finishedAt": T,
        "intent": intent,
        "error": "timeout",
        "components": [
            {
                "id": "fm100ht0001",
                "name": "compute-01",
                "phase": "Failed",
                "attempts": 2,
                "commanded": True,
                "error": "BMC unreachable",
            }
        ],
    }
    status = {
        "phase": "Running",
        "message": "stage 1 of 6",
        "observedGeneration": 1,
        "queuedAt": T,
        "queueExpiresAt": T,
        "queuePosition": 0,
        "startTime": T,
        "completionTime": T,
        "currentStage": 1,
        "stageCount": 6,
        "appliedRule": {"name": "builtin-restart", "source": "builtin", "reason": "none matched"},
        "stages": [
            {
                "number": 1,
                "phase": "Running",
                "startedAt": T,
                "finishedAt": T,
                "error": "x",
                "steps": [step],
            }
        ],
        "commanded": ["fm100ht0001"],
        "releases": [{"id": "fm100ht0001", "leftover": "host-update"}],
        "releaseAttempts": 1,
        "releaseAt": T,
        "conditions": [dict(COND, type="Progressing", reason="StageRunning")],
    }
    # every field of the engine's model is set here, so nothing can be pruned unseen
    model = TaskStatus.model_validate(status)
    missing = set(TaskStatus.model_fields) - model.model_fields_set
    assert not missing, f"extend full_task_status with {missing}"
    return status


@pytest.mark.parametrize(
    ("kind", "spec", "status"),
    [
        ("Rack", rack_spec, lambda: RACK_STATUS),
        ("OperationRule", rule_spec, lambda: RULE_STATUS),
        ("TaskSpec", task_spec_spec, lambda: TASK_SPEC_STATUS),
        ("Task", task_run_spec, full_task_status),
        ("TaskSchedule", lambda: schedule_spec({"interval": "1h"}), lambda: SCHEDULE_STATUS),
    ],
    ids=["Rack", "OperationRule", "TaskSpec", "Task", "TaskSchedule"],
)
def test_status_keeps_every_field(
    control_plane: ControlPlane,
    namespace: str,
    kind: str,
    spec: Callable[[], Obj],
    status: Callable[[], Obj],
) -> None:
    name = f"st-{namespace}"
    create(control_plane, obj(kind, name, spec(), namespace))
    patch(control_plane, kind, name, namespace, {"status": status()}, status=True)
    stored = get(control_plane, kind, name, namespace)
    assert stored["status"] == status()  # nothing pruned, nothing defaulted
    # the status subresource leaves spec alone, and spec writes leave status alone
    patch(control_plane, kind, name, namespace, {"spec": {}, "status": {"observedGeneration": 9}})
    assert get(control_plane, kind, name, namespace)["status"] == status()


# -- kubectl ------------------------------------------------------------------------------


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def test_kubectl_get_tasks_shows_rack_operation_phase_stage(
    control_plane: ControlPlane, namespace: str
) -> None:
    cp = control_plane
    create(cp, obj("Task", "restart-a01", task_run_spec(), namespace))
    create(cp, obj("Task", "restart-a02", task_run_spec(rack="gb200-a02"), namespace))
    patch(
        cp,
        "Task",
        "restart-a01",
        namespace,
        {
            "status": {
                "phase": "Running",
                "currentStage": 2,
                "stageCount": 6,
                "message": "stage 2: nvswitch power_off",
            }
        },
        status=True,
    )
    rows = table(cp.kubectl("get", "tasks", "-n", namespace).stdout)
    assert rows[0] == ["NAME", "RACK", "OPERATION", "PHASE", "STAGE", "AGE"]
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["restart-a01"][1:5] == ["gb200-a01", "restart", "Running", "2"]
    assert by_name["restart-a02"][1:3] == ["gb200-a02", "restart"]  # no status yet: blanks
    assert len(by_name["restart-a02"]) == 4  # name, rack, operation, age

    wide = cp.kubectl("get", "ftask", "restart-a01", "-n", namespace, "-o", "wide").stdout
    header, row = wide.strip().splitlines()
    assert header.split() == [
        "NAME",
        "RACK",
        "OPERATION",
        "PHASE",
        "STAGE",
        "AGE",
        "STAGES",
        "TASKSPEC",
        "REQUESTED-BY",
        "MESSAGE",
    ]
    assert row.split()[6:8] == ["6", "restart-row-a"]
    assert row.endswith("stage 2: nvswitch power_off")


def test_kubectl_get_flow_lists_every_kind(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    for doc in example_objects():
        body = copy.deepcopy(doc)
        if body["kind"] not in CLUSTER_KINDS:
            body["metadata"]["namespace"] = namespace
        cp.kubectl("apply", "-f", "-", input=json.dumps(body))
    create(cp, obj("Task", "t-flow", task_run_spec(), namespace))
    # a fresh discovery cache: categories are read from discovery, which kubectl caches
    out = cp.kubectl("get", "flow", "-n", namespace, f"--cache-dir={tmp_path}").stdout
    for resource in ("rack", "operationrule", "taskspec", "task", "taskschedule"):
        assert f"{resource}.flow.nico.io/" in out, resource
    short = cp.kubectl(
        "get", "rk,oprule,ts,ftask,tsched", "-n", namespace, "-o", "name", f"--cache-dir={tmp_path}"
    ).stdout
    assert "task.flow.nico.io/t-flow" in short
    assert "rack.flow.nico.io/gb200-a01" in short


def test_kubectl_explain_reads_the_schema(control_plane: ControlPlane, tmp_path: Path) -> None:
    out = control_plane.kubectl("explain", "tasks.spec.cancel", f"--cache-dir={tmp_path}").stdout
    assert "Cannot be undone" in out


def test_rack_printer_columns(control_plane: ControlPlane, namespace: str) -> None:
    name = f"cols-{namespace}"
    create(control_plane, obj("Rack", name, rack_spec(f"COLS-{namespace}")))
    patch(
        control_plane,
        "Rack",
        name,
        None,
        {"status": {"componentCounts": {"total": 2}, "power": {"state": "On", "on": 2}}},
        status=True,
    )
    rows = table(control_plane.kubectl("get", "rack", name).stdout)
    assert rows[0] == ["NAME", "MANUFACTURER", "MODEL", "COMPONENTS", "POWER", "AGE"]
    assert rows[1][:6] == [name, "NVIDIA", "GB200", "NVL72", "2", "On"]


def test_timestamps_stay_rfc3339(control_plane: ControlPlane, namespace: str) -> None:
    create(control_plane, obj("TaskSchedule", "ts-at", schedule_spec({"at": T}), namespace))
    stored = get(control_plane, "TaskSchedule", "ts-at", namespace)["spec"]["schedule"]["at"]
    assert datetime.fromisoformat(stored) == datetime(2026, 3, 1, 12, tzinfo=UTC)
