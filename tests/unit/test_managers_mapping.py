"""Pure translations used by the component managers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nicoflow._proto.nico import common_pb2 as c
from nicoflow._proto.nico import forge_pb2 as f
from nicoflow._proto.nico import site_explorer_pb2 as se
from nicoflow.core.managers.base import ManagerError, Target
from nicoflow.core.managers.expectations import build_expected
from nicoflow.core.managers.mapping import (
    aggregate_firmware,
    component_outcomes,
    consistency_report,
    ingestion_state,
    inventory_power_reading,
    legacy_admin_action,
    legacy_desired_state,
    legacy_firmware_reading,
    legacy_power_status,
    matches_any,
    nico_power_action,
    report_versions,
    versions_match,
)
from nicoflow.core.managers.nicolegacy_compute import firmware_window, parse_target_version
from nicoflow.core.managers.outcomes import merge
from nicoflow.core.managers.results import (
    MISSING_FROM_CORE,
    BringUpState,
    FirmwareReading,
    FirmwareState,
    Outcome,
    PowerReading,
    PowerStatus,
    complete_bring_up,
    complete_firmware,
    complete_power,
    complete_results,
)
from nicoflow.domain.types import ComponentType as CT
from nicoflow.domain.types import OperationCode as Op

OK = f.COMPONENT_MANAGER_STATUS_CODE_SUCCESS
NOT_FOUND = f.COMPONENT_MANAGER_STATUS_CODE_NOT_FOUND
INTERNAL = f.COMPONENT_MANAGER_STATUS_CODE_INTERNAL_ERROR
FS = FirmwareState
BU = BringUpState


def result(cid: str, status: int = OK, error: str = "") -> f.ComponentResult:
    return f.ComponentResult(component_id=cid, status=status, error=error)  # type: ignore[arg-type]


# --- power actions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "action"),
    [
        (Op.POWER_ON, c.SYSTEM_POWER_CONTROL_ON),
        (Op.FORCE_POWER_ON, c.SYSTEM_POWER_CONTROL_ON),
        (Op.POWER_OFF, c.SYSTEM_POWER_CONTROL_GRACEFUL_SHUTDOWN),
        (Op.FORCE_POWER_OFF, c.SYSTEM_POWER_CONTROL_FORCE_OFF),
        (Op.RESTART, c.SYSTEM_POWER_CONTROL_GRACEFUL_RESTART),
        (Op.WARM_RESET, c.SYSTEM_POWER_CONTROL_GRACEFUL_RESTART),
        (Op.FORCE_RESTART, c.SYSTEM_POWER_CONTROL_FORCE_RESTART),
        (Op.COLD_RESET, c.SYSTEM_POWER_CONTROL_AC_POWERCYCLE),
    ],
)
def test_compute_nico_power_actions(op: Op, action: int) -> None:
    assert nico_power_action(CT.COMPUTE, op) == action


def test_switch_and_shelf_unsupported_resets() -> None:
    assert nico_power_action(CT.NVSWITCH, Op.WARM_RESET) == c.SYSTEM_POWER_CONTROL_GRACEFUL_RESTART
    with pytest.raises(ManagerError, match="cold_reset is not supported for nvswitch"):
        nico_power_action(CT.NVSWITCH, Op.COLD_RESET)
    for op in (Op.WARM_RESET, Op.COLD_RESET):
        with pytest.raises(ManagerError, match="not supported for powershelf"):
            nico_power_action(CT.POWERSHELF, op)
    assert (
        nico_power_action(CT.POWERSHELF, Op.FORCE_RESTART) == c.SYSTEM_POWER_CONTROL_FORCE_RESTART
    )
    with pytest.raises(ManagerError):
        nico_power_action(CT.COMPUTE, Op.UPGRADE)


def test_legacy_power_actions_and_desired_state() -> None:
    A = f.AdminPowerControlRequest
    assert legacy_admin_action(Op.POWER_ON) == A.On
    assert legacy_admin_action(Op.POWER_OFF) == A.GracefulShutdown
    assert legacy_admin_action(Op.FORCE_POWER_OFF) == A.ForceOff
    assert legacy_admin_action(Op.WARM_RESET) == A.GracefulRestart
    assert legacy_admin_action(Op.FORCE_RESTART) == A.ForceRestart
    assert legacy_admin_action(Op.COLD_RESET) == A.ACPowercycle
    assert legacy_desired_state(Op.POWER_OFF) == f.Off
    assert legacy_desired_state(Op.FORCE_POWER_OFF) == f.Off
    for op in (Op.POWER_ON, Op.RESTART, Op.COLD_RESET, Op.FORCE_RESTART):
        assert legacy_desired_state(op) == f.On
    with pytest.raises(ManagerError):
        legacy_desired_state(Op.UPGRADE)


# --- power states ----------------------------------------------------------------------


def test_legacy_power_status() -> None:
    assert legacy_power_status(f.On) == PowerStatus.ON
    assert legacy_power_status(f.Off) == PowerStatus.OFF
    assert legacy_power_status(f.PowerManagerDisabled) == PowerStatus.OFF
    assert legacy_power_status(99) == PowerStatus.UNKNOWN
    # the desired state tells a transition under way from a settled state
    assert legacy_power_status(f.On, f.Off) == PowerStatus.POWERING_OFF
    assert legacy_power_status(f.Off, f.On) == PowerStatus.POWERING_ON
    assert legacy_power_status(f.On, f.On) == PowerStatus.ON


def _entry(
    cid: str, *states: int, status: int = OK, report: bool = True
) -> f.ComponentInventoryEntry:
    e = f.ComponentInventoryEntry(result=result(cid, status, "boom" if status != OK else ""))
    if report:
        e.report.CopyFrom(
            se.EndpointExplorationReport(systems=[se.ComputerSystem(power_state=s) for s in states])  # type: ignore[arg-type]
        )
    return e


def test_inventory_power_reading_uses_first_system() -> None:
    assert inventory_power_reading(_entry("a", se.On, se.Off)).state == PowerStatus.ON
    assert inventory_power_reading(_entry("a", se.Off)).state == PowerStatus.OFF
    assert inventory_power_reading(_entry("a", se.PoweringOn)).state == PowerStatus.POWERING_ON
    assert inventory_power_reading(_entry("a", se.PoweringOff)).state == PowerStatus.POWERING_OFF
    for other in (se.Paused, se.Unknown):
        assert inventory_power_reading(_entry("a", other)).state == PowerStatus.UNKNOWN


def test_inventory_power_reading_errors() -> None:
    failed = inventory_power_reading(_entry("a", se.On, status=NOT_FOUND))
    assert failed == PowerReading(PowerStatus.UNKNOWN, "not found: boom")
    assert inventory_power_reading(_entry("a", report=False)).error
    assert inventory_power_reading(_entry("a")).error  # report without systems


def test_power_map_always_has_every_requested_id() -> None:
    got = {"a": PowerReading(PowerStatus.ON), "stray": PowerReading(PowerStatus.OFF)}
    full = complete_power(["a", "b"], got)
    assert list(full) == ["a", "b"]
    assert full["b"] == PowerReading(PowerStatus.UNKNOWN, MISSING_FROM_CORE)
    # An empty answer is never success.
    assert all(r.state == PowerStatus.UNKNOWN for r in complete_power(["x", "y"], {}).values())


# --- command results -------------------------------------------------------------------


def test_component_outcomes() -> None:
    out = component_outcomes(
        [
            result("a"),
            result("b", INTERNAL, "bmc timeout"),
            result("c", NOT_FOUND),
            result("a", f.COMPONENT_MANAGER_STATUS_CODE_UNAVAILABLE, "later part failed"),
        ]
    )
    assert out["b"] == Outcome.failure("internal error: bmc timeout")
    assert out["c"] == Outcome.failure("not found")
    # Any failing part fails the component even if another part succeeded.
    assert out["a"] == Outcome.failure("unavailable: later part failed")


def test_complete_results_policy_is_explicit() -> None:
    full = complete_results(["a", "b"], {"a": Outcome.failure("x")}, missing=Outcome.success())
    assert full == {"a": Outcome.failure("x"), "b": Outcome.success()}


def test_merge_outcomes() -> None:
    merged = merge(
        {"a": Outcome.success(), "b": Outcome.failure("tray")},
        {"a": Outcome.failure("dpu"), "b": Outcome.failure("dpu"), "c": Outcome.success()},
    )
    assert merged == {
        "a": Outcome.failure("dpu"),
        "b": Outcome.failure("tray; dpu"),
        "c": Outcome.success(),
    }


# --- firmware --------------------------------------------------------------------------


def fw(cid: str, state: int, status: int = OK, error: str = "") -> f.FirmwareUpdateStatus:
    return f.FirmwareUpdateStatus(result=result(cid, status, error), state=state)  # type: ignore[arg-type]


def test_firmware_aggregation_per_component() -> None:
    agg = aggregate_firmware(
        [
            fw("done", f.FW_STATE_COMPLETED),
            fw("done", f.FW_STATE_COMPLETED),
            fw("mixed", f.FW_STATE_COMPLETED),
            fw("mixed", f.FW_STATE_VERIFYING),
            fw("mixed", f.FW_STATE_IN_PROGRESS),
            fw("early", f.FW_STATE_QUEUED),
            fw("early", f.FW_STATE_VERIFYING),
            fw("bad", f.FW_STATE_COMPLETED),
            fw("bad", f.FW_STATE_FAILED, error="cpld flash failed"),
            fw("bad", f.FW_STATE_FAILED, error="bios flash failed"),
            fw("cancelled", f.FW_STATE_CANCELLED),
            fw(
                "gone",
                f.FW_STATE_UNKNOWN,
                NOT_FOUND,
                "no such switch",
            ),
            fw(
                "broken",
                f.FW_STATE_UNKNOWN,
                INTERNAL,
                "nsm down",
            ),
        ]
    )
    assert agg["done"] == FirmwareReading(FS.COMPLETED)
    assert agg["mixed"].state == FS.IN_PROGRESS
    assert agg["early"].state == FS.QUEUED
    assert agg["bad"] == FirmwareReading(FS.FAILED, "cpld flash failed; bios flash failed")
    assert agg["cancelled"] == FirmwareReading(FS.FAILED, "firmware update was cancelled")
    assert agg["gone"] == FirmwareReading(FS.UNKNOWN, "not found: no such switch")
    assert agg["broken"] == FirmwareReading(FS.FAILED, "internal error: nsm down")


def test_firmware_map_never_counts_missing_as_done() -> None:
    full = complete_firmware(["a", "b"], {"a": FirmwareReading(FS.COMPLETED)})
    assert full["b"] == FirmwareReading(FS.UNKNOWN, MISSING_FROM_CORE)
    assert not full["b"].state.finished
    assert complete_firmware(["a"], {})["a"].state == FS.UNKNOWN


def test_versions_match_is_a_non_empty_subset_match() -> None:
    actual = {"bmc": "1.0", "uefi": "2.0", "hgxbmc": "3"}
    assert versions_match(actual, {"bmc": "1.0"})
    assert versions_match(actual, {"bmc": "1.0", "uefi": "2.0"})
    assert not versions_match(actual, {"bmc": "1.1"})
    assert not versions_match(actual, {"cec": "1"})
    assert not versions_match(actual, {})
    assert matches_any(actual, [{"bmc": "9"}, {"uefi": "2.0"}])
    assert not matches_any(actual, [])


DESIRED = [{"bmc": "2.0", "uefi": "5"}]


@pytest.mark.parametrize(
    ("found", "state", "complete", "actual", "expected"),
    [
        (False, "", False, {}, FS.UNKNOWN),
        (True, "Ready", False, {"bmc": "2.0", "uefi": "5"}, FS.COMPLETED),
        (
            True,
            "HostReprovision/CheckingFirmware",
            False,
            {"bmc": "2.0", "uefi": "5"},
            FS.VERIFYING,
        ),
        (True, "Ready", True, {"bmc": "1.0"}, FS.COMPLETED),
        (
            True,
            "HostReprovision/FailedFirmwareUpgrade",
            False,
            {"bmc": "1.0"},
            FS.FAILED,
        ),
        (True, "HostReprovision/WaitingForFirmwareUpgrade", False, {}, FS.VERIFYING),
        (True, "Ready", False, {"bmc": "1.0"}, FS.QUEUED),
    ],
)
def test_legacy_firmware_reading(
    found: bool, state: str, complete: bool, actual: dict[str, str], expected: FirmwareState
) -> None:
    reading = legacy_firmware_reading(
        found=found,
        state=state,
        update_complete=complete,
        actual_versions=actual,
        desired_entries=DESIRED,
    )
    assert reading.state == expected
    if expected in (FS.FAILED, FS.UNKNOWN):
        assert reading.error


def test_report_versions_prefers_parsed_map() -> None:
    parsed = se.EndpointExplorationReport(firmware_versions={"bmc": "1"})
    parsed.service.add(id="s", inventories=[se.Inventory(id="BMC_Firmware", version="x")])
    assert report_versions(parsed) == {"bmc": "1"}
    raw = se.EndpointExplorationReport()
    raw.service.add(
        id="UpdateService",
        inventories=[
            se.Inventory(id="BMC_Firmware", description="BMC image", version="88.0002.1"),
            se.Inventory(id="CPLD_0", version="0.2.1"),
            se.Inventory(id="NoVersion"),
        ],
    )
    assert report_versions(raw) == {"BMC_Firmware": "88.0002.1", "CPLD_0": "0.2.1"}


def test_consistency_report() -> None:
    same = consistency_report({"s1": {"bmc": "1"}, "s2": {"bmc": "1"}})
    assert same.consistent
    assert same.problems == ()
    differ = consistency_report(
        {"s1": {"bmc": "1", "cpld": "2"}, "s2": {"bmc": "1", "cpld": "3"}, "s3": {}}
    )
    assert not differ.consistent
    assert "s3: no firmware version data" in differ.problems
    assert "s2: differs from s1 in cpld" in differ.problems


def test_consistency_report_names_the_odd_one_out() -> None:
    # The differing switch sorts first; the majority's versions are the reference.
    report = consistency_report(
        {"a": {"bmc": "2"}, "b": {"bmc": "1"}, "c": {"bmc": "1"}, "d": {"bmc": "1"}}
    )
    assert report.problems == ("a: differs from b in bmc",)


def test_ingestion_states() -> None:
    assert ingestion_state(f.NotDiscovered) == BU.NOT_DISCOVERED
    assert ingestion_state(f.WaitingForIngestion) == BU.WAITING_FOR_INGESTION
    assert ingestion_state(f.IngestionMachineNotCreated) == BU.INGESTION_MACHINE_NOT_CREATED
    assert ingestion_state(f.IngestionMachineCreated) == BU.INGESTION_MACHINE_CREATED
    assert ingestion_state(42) == BU.UNKNOWN
    assert complete_bring_up(["m"], {})["m"].state == BU.UNKNOWN


# --- nicolegacy firmware inputs ----------------------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_firmware_window() -> None:
    assert firmware_window(None, None, NOW) == (NOW, NOW + timedelta(hours=24))
    later = NOW + timedelta(hours=2)
    assert firmware_window(NOW, later, NOW) == (NOW, later)
    with pytest.raises(ManagerError, match="both start and end"):
        firmware_window(NOW, None, NOW)
    with pytest.raises(ManagerError, match="not before end"):
        firmware_window(later, NOW, NOW)


def test_parse_target_version() -> None:
    assert parse_target_version('{"bmc": "2.0"}') == {"bmc": "2.0"}
    with pytest.raises(ManagerError, match="JSON object"):
        parse_target_version("2.0.1")
    with pytest.raises(ManagerError, match="JSON object"):
        parse_target_version('{"bmc": 2}')


# --- expectations ------------------------------------------------------------------------


def test_expected_machine_payload() -> None:
    msg = build_expected(
        CT.COMPUTE,
        {
            "bmc_mac_address": "aa:bb",
            "chassis_serial_number": "SN1",
            "fallback_dpu_serial_numbers": ["D1", "D2"],
            "rack_id": "a12",
            "default_pause_ingestion_and_poweron": True,
        },
    )
    assert isinstance(msg, f.ExpectedMachine)
    assert msg.rack_id.id == "a12"
    assert list(msg.fallback_dpu_serial_numbers) == ["D1", "D2"]
    assert msg.default_pause_ingestion_and_poweron


def test_expected_power_shelf_ip_alias_and_switch() -> None:
    shelf = build_expected(CT.POWERSHELF, {"bmc_mac_address": "m", "ip_address": "10.0.0.5"})
    assert isinstance(shelf, f.ExpectedPowerShelf)
    assert shelf.bmc_ip_address == "10.0.0.5"
    switch = build_expected(CT.NVSWITCH, {"bmc_mac_address": "m", "nvos_username": "admin"})
    assert isinstance(switch, f.ExpectedSwitch)
    assert switch.nvos_username == "admin"


def test_expectation_payload_errors() -> None:
    with pytest.raises(ManagerError, match="serial_numbr"):
        build_expected(CT.COMPUTE, {"bmc_mac_address": "m", "serial_numbr": "x"})
    with pytest.raises(ManagerError, match="needs bmc_mac_address"):
        build_expected(CT.NVSWITCH, {"switch_serial_number": "x"})
    with pytest.raises(ManagerError, match="cannot be injected"):
        build_expected(CT.CDU, {"bmc_mac_address": "m"})


def test_target_deduplicates_ids() -> None:
    assert Target(CT.COMPUTE, ("a", "b", "a")).component_ids == ("a", "b")
