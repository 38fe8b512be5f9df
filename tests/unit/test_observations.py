"""Core controller states → component phase and blocked operations (flow-anchor §10.2)."""

from __future__ import annotations

import pytest

from nicoflow.domain.observations import (
    ControllerStatus,
    Phase,
    canonical_mac,
    compute_status,
    shelf_status,
    switch_status,
)
from nicoflow.domain.types import OperationType

BOTH = frozenset({OperationType.POWER_CONTROL, OperationType.FIRMWARE_CONTROL})
NONE: frozenset[OperationType] = frozenset()


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("Ready", Phase.READY),
        ("StartAssignmentCycle", Phase.READY),
        ("StartAssignmentCycle/Something", Phase.READY),
        ("", Phase.UNKNOWN),
        ("Created", Phase.INITIALIZING),
        ("DPUDiscovering", Phase.INITIALIZING),
        ("DPUInitializing/WaitingForNetworkConfig", Phase.INITIALIZING),
        ("HostInitializing/Discovered", Phase.INITIALIZING),
        ("Measuring", Phase.INITIALIZING),
        ("PreAssignedMeasuring", Phase.INITIALIZING),
        ("PostAssignedMeasuring", Phase.INITIALIZING),
        ("BomValidating", Phase.INITIALIZING),
        ("SomethingCoreAddsLater", Phase.INITIALIZING),
        ("Assigned/Provisioning", Phase.IN_USE),
        ("WaitingForCleanup", Phase.IN_USE),
        ("Reprovisioning", Phase.IN_USE),
        ("HostReprovisioning/CheckingFirmware", Phase.IN_USE),
        ("Failed/Discovery", Phase.ERROR),
        ("ForceDeletion", Phase.DELETING),
    ],
)
def test_compute_states(state: str, phase: Phase) -> None:
    status = compute_status(state)
    assert status.phase is phase
    assert status.reason == state
    assert status.blocked == (NONE if phase in (Phase.READY, Phase.UNKNOWN) else BOTH)


@pytest.mark.parametrize(
    ("tag", "phase"),
    [
        ("ready", Phase.READY),
        ("Ready", Phase.READY),
        ("created", Phase.INITIALIZING),
        ("initializing", Phase.INITIALIZING),
        ("configuring", Phase.INITIALIZING),
        ("validating", Phase.INITIALIZING),
        ("bomvalidating", Phase.INITIALIZING),
        ("reprovisioning", Phase.IN_USE),
        ("error", Phase.ERROR),
        ("deleting", Phase.DELETING),
        ("maintenance", Phase.UNKNOWN),  # a shelf state, not a switch state
        ("brand-new", Phase.UNKNOWN),
    ],
)
def test_switch_states(tag: str, phase: Phase) -> None:
    raw = f'{{"state": "{tag}", "since": "x"}}'
    status = switch_status(raw)
    assert status == ControllerStatus(
        phase, raw, NONE if phase in (Phase.READY, Phase.UNKNOWN) else BOTH
    )


@pytest.mark.parametrize(
    ("tag", "phase"),
    [
        ("ready", Phase.READY),
        ("initializing", Phase.INITIALIZING),
        ("fetchingdata", Phase.INITIALIZING),
        ("configuring", Phase.INITIALIZING),
        ("maintenance", Phase.IN_USE),
        ("error", Phase.ERROR),
        ("deleting", Phase.DELETING),
        ("reprovisioning", Phase.UNKNOWN),  # a switch state, not a shelf state
    ],
)
def test_shelf_states(tag: str, phase: Phase) -> None:
    status = shelf_status(f'{{"state":"{tag}"}}')
    assert status.phase is phase
    assert status.blocked == (NONE if phase in (Phase.READY, Phase.UNKNOWN) else BOTH)


@pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", '{"state": 3}', '{"other": "ready"}'])
def test_undecodable_switch_and_shelf_states_are_unknown_and_unblocked(raw: str) -> None:
    for fn in (switch_status, shelf_status):
        status = fn(raw)
        assert status.phase is Phase.UNKNOWN
        assert status.blocked == NONE
        assert status.reason == raw


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("AA:BB:CC:DD:EE:FF", "aa:bb:cc:dd:ee:ff"),
        ("aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff"),
        ("aabb.ccdd.eeff", "aa:bb:cc:dd:ee:ff"),
        ("aabbccddeeff", "aa:bb:cc:dd:ee:ff"),
        ("", None),
        (None, None),
        ("zz:bb:cc:dd:ee:ff", None),
    ],
)
def test_canonical_mac(raw: str | None, canonical: str | None) -> None:
    assert canonical_mac(raw) == canonical
