"""Leak-response TaskSpecs and the Rack status summary: pure parts."""

from __future__ import annotations

from datetime import UTC, datetime

from nicoflow.api.task_spec import TaskSpecSpec
from nicoflow.controller.leak_response import (
    ANNOTATION_ROUND,
    leak_rounds,
    leak_taskspec,
    leak_taskspec_name,
    power_off_round,
)
from nicoflow.controller.racks import summary_status
from nicoflow.domain.leaks import LeakingComponent, RoundOutcome, decide
from nicoflow.domain.types import ComponentType, PowerState
from nicoflow.inventory.mirror import FirmwareVersions, RackSummary

SINCE = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_leak_names_are_deterministic_short_and_per_incident() -> None:
    long_id = "fm100ht" + "a" * 52
    name = leak_taskspec_name(long_id, SINCE)
    assert name == leak_taskspec_name(long_id, SINCE)
    assert len(name) <= 63
    assert name.startswith("leak-fm100ht")
    assert name.endswith(f"-{int(SINCE.timestamp())}")
    assert leak_taskspec_name(long_id[:-1] + "b", SINCE) != name
    later = SINCE.replace(hour=13)
    assert leak_taskspec_name(long_id, later) != name
    assert leak_taskspec_name("SW_01", SINCE) == f"leak-sw-01-{int(SINCE.timestamp())}"


def test_later_rounds_get_a_suffix_and_stay_short() -> None:
    stamp = int(SINCE.timestamp())
    assert leak_taskspec_name("m-1", SINCE, 0) == f"leak-m-1-{stamp}"
    assert leak_taskspec_name("m-1", SINCE, 1) == f"leak-m-1-{stamp}-1"
    long_id = "fm100ht" + "a" * 52
    names = {leak_taskspec_name(long_id, SINCE, n) for n in range(8)}
    assert len(names) == 8
    assert all(len(n) <= 63 for n in names)


LEAK = LeakingComponent("m-1", ComponentType.COMPUTE, "compute-03", "rack-a01", SINCE)


def test_leak_taskspec_is_a_valid_forced_power_off_of_one_component() -> None:
    body = leak_taskspec(LEAK, "flow")
    spec = TaskSpecSpec.model_validate(body["spec"])
    assert spec.operation.value == "force_power_off"
    assert spec.options is not None
    assert spec.options.override_readiness_check is True
    assert spec.conflict_strategy.value == "Queue"
    assert spec.targets.components is not None
    assert [(c.core_id, c.type) for c in spec.targets.components] == [
        ("m-1", ComponentType.COMPUTE)
    ]
    assert body["metadata"]["namespace"] == "flow"
    assert body["metadata"]["labels"]["flow.nico.io/rack"] == "rack-a01"
    assert body["metadata"]["annotations"][ANNOTATION_ROUND] == "0"
    again = leak_taskspec(LEAK, "flow", 1)
    assert again["metadata"]["name"] == leak_taskspec_name("m-1", SINCE, 1)
    assert again["metadata"]["annotations"][ANNOTATION_ROUND] == "1"
    assert "powered on again" in again["spec"]["description"]


def test_taskspec_status_becomes_a_round() -> None:
    assert power_off_round(0, {"spec": {}}).outcome is RoundOutcome.UNFINISHED
    running = {"status": {"phase": "Running"}}
    assert power_off_round(0, running).outcome is RoundOutcome.UNFINISHED
    done = power_off_round(
        2, {"status": {"phase": "Complete", "completionTime": "2025-06-01T12:03:04Z"}}
    )
    assert (done.number, done.outcome) == (2, RoundOutcome.SUCCEEDED)
    assert done.finished_at == datetime(2025, 6, 1, 12, 3, 4, tzinfo=UTC)
    failed = power_off_round(0, {"status": {"phase": "Failed", "completionTime": "bad"}})
    assert (failed.outcome, failed.finished_at, failed.finished) == (
        RoundOutcome.FAILED,
        None,
        False,
    )
    # Asking to cancel counts at once, before the Tasks have stopped, naming who.
    asked = power_off_round(
        0,
        {
            "metadata": {
                "managedFields": [
                    {"manager": "kubectl-create", "fieldsV1": {"f:spec": {"f:operation": {}}}},
                    {"manager": "kubectl-patch", "fieldsV1": {"f:spec": {"f:cancel": {}}}},
                ]
            },
            "spec": {"cancel": True},
            "status": {"phase": "Running"},
        },
    )
    assert asked.outcome is RoundOutcome.CANCELLED
    assert asked.cancelled_by == "kubectl-patch"


def test_a_round_cancelled_by_no_one_does_not_hold_the_leak_response() -> None:
    # ran out of queue time (or was pre-empted): nobody took the incident over
    timed_out = power_off_round(
        0, {"spec": {}, "status": {"phase": "Cancelled", "completionTime": "2025-06-01T12:03:04Z"}}
    )
    assert timed_out.outcome is RoundOutcome.FAILED
    later = datetime(2025, 6, 1, 12, 10, tzinfo=UTC)
    decision = decide([timed_out], PowerState.ON, later)
    assert decision.request, decision
    assert decision.round == 1


def test_rounds_are_found_by_name_for_this_incident_only() -> None:
    other_incident = leak_taskspec_name("m-1", SINCE.replace(hour=9))
    specs = {
        leak_taskspec_name("m-1", SINCE): {"status": {"phase": "Complete"}},
        leak_taskspec_name("m-1", SINCE, 1): {},
        leak_taskspec_name("m-2", SINCE): {},
        other_incident: {},
    }
    rounds = leak_rounds(LEAK, specs)
    assert [(r.number, r.outcome) for r in rounds] == [
        (0, RoundOutcome.SUCCEEDED),
        (1, RoundOutcome.UNFINISHED),
    ]
    assert (
        leak_rounds(LeakingComponent("s-9", ComponentType.NVSWITCH, "x", None, SINCE), specs) == []
    )
    assert LEAK.power is PowerState.UNKNOWN


def summary(**kw: object) -> RackSummary:
    base: dict[str, object] = {
        "name": "r",
        "source_generation": 1,
        "counts": {ComponentType.COMPUTE: 2},
        "power_on": 2,
        "power_off": 0,
        "power_unknown": 0,
        "power_observed_at": SINCE,
        "firmware": {ComponentType.COMPUTE: FirmwareVersions({"1": 2}, {"1": 1, "2": 1})},
        "drift_missing": 0,
        "drift_unexpected": 0,
        "drift_mismatch": 1,
        "drift_checked_at": SINCE,
        "leaks_detected": 1,
        "leaking_components": ("compute-02",),
        "leak_observed": 2,
    }
    base.update(kw)
    return RackSummary(**base)  # type: ignore[arg-type]


def test_summary_status_shows_when_the_leak_began() -> None:
    body = {"metadata": {"name": "r", "generation": 3}}
    status = summary_status(body, summary(leak_since=SINCE))
    assert status["leak"]["detectedTime"] == "2025-06-01T12:00:00Z"
    quiet = summary_status(body, summary(leaks_detected=0, leaking_components=(), leak_since=SINCE))
    assert "detectedTime" not in quiet["leak"]


def test_summary_status_reports_leak_drift_firmware_and_sync_state() -> None:
    body = {"metadata": {"name": "r", "generation": 3}}
    status = summary_status(body, summary())
    cond = {c["type"]: c for c in status["conditions"]}
    assert cond["LeakDetected"]["status"] == "True"
    assert "compute-02" in cond["LeakDetected"]["message"]
    assert cond["Drifted"]["status"] == "True"
    assert cond["InventorySynced"]["reason"] == "Observed"
    assert status["leak"] == {"state": "Detected", "components": ["compute-02"]}
    assert status["power"]["observedTime"] == "2025-06-01T12:00:00Z"
    assert status["firmware"] == [
        {
            "type": "compute",
            "versions": [{"version": "1", "count": 1}, {"version": "2", "count": 1}],
        }
    ]
    failed = summary_status(body, summary(), core_error="compute: UNAVAILABLE")
    assert {c["type"]: c["status"] for c in failed["conditions"]}["InventorySynced"] == "False"
    quiet = summary_status(body, summary(leaks_detected=0, leaking_components=(), leak_observed=0))
    assert quiet["leak"] == {"state": "Unknown"}
