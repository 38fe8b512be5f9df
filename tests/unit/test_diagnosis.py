"""`kubectl flow why`: each cause a Task can be held by, read from the status
the operator writes, with the facts and the commands it recommends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nicoflow.api.task import TaskRunSpec
from nicoflow.api.taskstatus import TaskStatus
from nicoflow.cli.kubectl_plugin import diagnose_task, why_json, why_text
from nicoflow.domain import default_rules
from nicoflow.domain.types import OperationCode
from nicoflow.engine.diagnosis import Cause, OtherTask, TaskRef, diagnose

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
REF = TaskRef("off-a01", "ops", "off")


def _spec() -> TaskRunSpec:
    return TaskRunSpec.model_validate(
        {
            "taskSpecName": "off",
            "rack": "rack-a01",
            "operation": "power_off",
            "components": [{"type": "compute", "ids": [{"name": "compute-01", "coreId": "m1"}]}],
            "rule": {
                "name": "builtin-power_off",
                "source": "builtin",
                "definition": default_rules.builtin_rule(OperationCode.POWER_OFF).model_dump(
                    mode="json", by_alias=True, exclude_none=True
                ),
            },
        }
    )


def _status(**fields: Any) -> TaskStatus:
    return TaskStatus.model_validate(fields)


def _held(reason: str, message: str) -> TaskStatus:
    return _status(
        phase="Pending",
        message=message,
        conditions=[
            {
                "type": "Held",
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": NOW.isoformat(),
            }
        ],
    )


def _running_step(**step: Any) -> TaskStatus:
    return _status(
        phase="Running",
        startTime=(NOW - timedelta(minutes=3)).isoformat(),
        currentStage=1,
        stageCount=3,
        stages=[
            {
                "number": 1,
                "phase": "Running",
                "steps": [
                    {
                        "componentType": "compute",
                        "phase": "Running",
                        "total": 1,
                        "actionName": "VerifyPowerStatus",
                        **step,
                    }
                ],
            },
            {"number": 2, "steps": [{"componentType": "nvswitch"}]},
            {"number": 3, "steps": [{"componentType": "powershelf"}]},
        ],
    )


def test_queued_names_the_task_ahead_and_how_to_move_past_it() -> None:
    st = _status(
        phase="Waiting",
        message="queued behind fw-a01 (position 1)",
        queuePosition=1,
        queueExpiresAt=(NOW + timedelta(minutes=30)).isoformat(),
    )
    ahead = OtherTask("fw-a01", "Running", "stage 1/2: compute 3/18")
    d = diagnose(REF, _spec(), st, NOW, rack_tasks=[ahead, OtherTask("old-a01", "Succeeded")])
    assert d.cause is Cause.QUEUED
    assert not d.stuck
    assert any("fw-a01" in f and "Running" in f for f in d.facts)
    assert any("in 30m00s" in f for f in d.facts)
    commands = [a.command for a in d.actions]
    assert commands == [
        "wait",
        "kubectl flow cancel task/fw-a01 -n ops",
        "kubectl flow cancel task/off-a01 -n ops",
    ]


@pytest.mark.parametrize(
    ("reason", "cause", "command"),
    [
        (
            "Suspended",
            Cause.SUSPENDED,
            "kubectl patch taskspec/off -n ops --type merge "
            """-p '{"spec":{"suspend":false}}'""",
        ),
        (
            "MaxParallelRacks",
            Cause.MAX_PARALLEL,
            "kubectl patch taskspec/off -n ops --type merge "
            """-p '{"spec":{"maxParallelRacks":N}}'""",
        ),
        ("MaxFailedRacks", Cause.MAX_FAILED, "kubectl flow status taskspec/off -n ops"),
        ("NotReady", Cause.NOT_READY, "wait"),
        ("OperatorLimit", Cause.OPERATOR_LIMIT, "wait"),
        ("Preempting", Cause.PREEMPTING, "wait"),
    ],
)
def test_each_hold_gets_its_cause_and_remedy(reason: str, cause: Cause, command: str) -> None:
    d = diagnose(REF, _spec(), _held(reason, f"held: {reason}"), NOW)
    assert d.cause is cause
    assert d.summary == f"held: {reason}"
    assert command in [a.command for a in d.actions]
    assert d.actions[-1].command == "kubectl flow cancel task/off-a01 -n ops"
    assert d.stuck == (cause is Cause.MAX_FAILED)  # only that one needs a person to go on


def test_a_pending_task_no_operator_touched_is_stuck() -> None:
    fresh = diagnose(REF, _spec(), _status(), NOW, created=NOW - timedelta(seconds=5))
    assert fresh.cause is Cause.RUNNING
    assert not fresh.stuck
    old = diagnose(REF, _spec(), _status(), NOW, created=NOW - timedelta(minutes=10))
    assert old.cause is Cause.NOT_ADMITTED
    assert old.stuck
    assert "kubectl get pods" in old.actions[0].command


def test_a_call_core_did_not_answer_says_nothing_is_sent_twice() -> None:
    st = _running_step(
        actionName="PowerControl",
        batchStartedAt=(NOW - timedelta(minutes=2)).isoformat(),
        intent={
            "key": "k1",
            "action": "force_power_off",
            "componentIds": ["m1"],
            "issuedAt": (NOW - timedelta(minutes=2)).isoformat(),
            "unknownSince": (NOW - timedelta(seconds=90)).isoformat(),
            "lostError": "UNAVAILABLE: connection refused",
        },
    )
    d = diagnose(REF, _spec(), st, NOW)
    assert d.cause is Cause.CORE_UNANSWERED
    assert "90s ago" in d.summary
    assert any("UNAVAILABLE" in f for f in d.facts)
    assert any("before it sends anything again" in f for f in d.facts)


def test_polling_hardware_and_retrying_are_told_apart() -> None:
    later = (NOW + timedelta(seconds=10)).isoformat()
    started = (NOW - timedelta(minutes=1)).isoformat()
    polling = diagnose(
        REF, _spec(), _running_step(nextAt=later, polls=4, batchStartedAt=started), NOW
    )
    assert polling.cause is Cause.WAITING_ON_HARDWARE
    assert "4 reads" in polling.summary
    assert any("stage 1/3, compute step: VerifyPowerStatus" in f for f in polling.facts)
    retrying = diagnose(
        REF,
        _spec(),
        _running_step(nextAt=later, attempt=2, error="BMC timeout", batchStartedAt=started),
        NOW,
    )
    assert retrying.cause is Cause.RETRYING
    assert "last error: BMC timeout" in retrying.facts


def test_a_step_long_past_its_budget_is_overdue() -> None:
    # the built-in power_off gives the compute step 20 minutes per attempt
    st = _running_step(batchStartedAt=(NOW - timedelta(minutes=30)).isoformat())
    d = diagnose(REF, _spec(), st, NOW)
    assert d.cause is Cause.OVERDUE
    assert d.stuck
    assert "10m00s past its time budget" in d.summary


def test_a_failed_task_lists_its_failed_components() -> None:
    st = _status(
        phase="Failed",
        message="stage 1 failed",
        completionTime=(NOW - timedelta(minutes=5)).isoformat(),
        stages=[
            {
                "number": 1,
                "phase": "Failed",
                "steps": [
                    {
                        "componentType": "compute",
                        "phase": "Failed",
                        "components": [
                            {"id": "m1", "name": "compute-01", "phase": "Failed", "error": "boom"}
                        ],
                    }
                ],
            }
        ],
    )
    d = diagnose(REF, _spec(), st, NOW)
    assert d.cause is Cause.FAILED
    assert "compute-01: boom" in d.facts
    assert d.actions[0].command == "kubectl flow status task/off-a01 -n ops"


def test_rendering_from_a_task_body() -> None:
    body = {
        "metadata": {
            "name": "off-a01",
            "namespace": "ops",
            "labels": {"flow.nico.io/taskspec": "off"},
            "creationTimestamp": "2030-01-01T11:00:00Z",
        },
        "spec": _spec().model_dump(mode="json", by_alias=True, exclude_none=True),
        "status": _held("Suspended", "suspended: the TaskSpec is suspended").model_dump(
            mode="json", by_alias=True, exclude_none=True
        ),
    }
    d = diagnose_task(body, [], NOW)
    assert d.cause is Cause.SUSPENDED
    text = why_text(body, d).plain
    assert "task/off-a01 (power_off on rack rack-a01): Pending — Suspended" in text
    assert "1. kubectl patch taskspec/off -n ops" in text
    out = why_json(body, d)
    assert out["cause"] == "Suspended"
    assert out["stuck"] is False
    assert out["actions"][0]["effect"].startswith("resumes the TaskSpec")
