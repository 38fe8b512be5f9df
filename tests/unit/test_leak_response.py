"""Leak-response TaskSpecs and the Rack status summary: pure parts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from nicoflow.api.task_spec import TaskSpecSpec
from nicoflow.controller.inventory_sync import leak_taskspec, leak_taskspec_name
from nicoflow.controller.racks import summary_status
from nicoflow.domain.types import ComponentType
from nicoflow.inventory.mirror import FirmwareVersions, RackSummary
from nicoflow.inventory.sync import NewLeak

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


def test_leak_taskspec_is_a_valid_forced_power_off_of_one_component() -> None:
    leak = NewLeak(uuid.uuid4(), "compute-03", ComponentType.COMPUTE, "m-1", "rack-a01", SINCE)
    body = leak_taskspec(leak, "flow")
    spec = TaskSpecSpec.model_validate(body["spec"])
    assert spec.operation.value == "force_power_off"
    assert spec.options is not None
    assert spec.options.override_readiness_check is True
    assert spec.conflict_strategy.value == "Queue"
    assert body["metadata"]["namespace"] == "flow"
    assert body["metadata"]["labels"]["flow.nico.io/rack"] == "rack-a01"


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
