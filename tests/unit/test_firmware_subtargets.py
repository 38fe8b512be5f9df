from __future__ import annotations

import pytest

from nicoflow._proto.nico import forge_pb2 as f
from nicoflow.core.managers.base import ManagerError
from nicoflow.core.managers.subtargets import SubTargetError, allowed_names, parse_subtargets
from nicoflow.domain.types import ComponentType as CT


def test_nvswitch_names_map_to_core_enum() -> None:
    sub = parse_subtargets(CT.NVSWITCH, ["bmc", "cpld", "bios", "nvos"])
    assert sub.components == (1, 2, 3, 4)
    assert sub.components == (
        f.NV_SWITCH_COMPONENT_BMC,
        f.NV_SWITCH_COMPONENT_CPLD,
        f.NV_SWITCH_COMPONENT_BIOS,
        f.NV_SWITCH_COMPONENT_NVOS,
    )
    assert not sub.dpu


def test_names_are_trimmed_case_insensitive_and_deduplicated() -> None:
    sub = parse_subtargets(CT.NVSWITCH, [" BMC", "bmc ", "NvOs", ""])
    assert sub.components == (f.NV_SWITCH_COMPONENT_BMC, f.NV_SWITCH_COMPONENT_NVOS)


def test_empty_means_whole_bundle_for_switches_and_compute() -> None:
    assert parse_subtargets(CT.NVSWITCH, []).components == ()
    compute = parse_subtargets(CT.COMPUTE, [])
    assert compute.components == ()
    # The DPU path is never implied by an empty list.
    assert not compute.dpu
    assert compute.tray_update


def test_empty_means_pmc_for_power_shelves() -> None:
    assert parse_subtargets(CT.POWERSHELF, []).components == (f.POWER_SHELF_COMPONENT_PMC,)
    assert parse_subtargets(CT.POWERSHELF, ["psu"]).components == (f.POWER_SHELF_COMPONENT_PSU,)
    assert parse_subtargets(CT.POWERSHELF, ["PMC", "psu"]).components == (1, 2)


def test_compute_names() -> None:
    names = [
        "bmc",
        "bios",
        "cec",
        "nic",
        "cpld_mb",
        "cpld_pdb",
        "hgx_bmc",
        "combined_bmc_uefi",
        "gpu",
        "cx7",
    ]
    assert parse_subtargets(CT.COMPUTE, names).components == tuple(range(1, 11))


def test_compute_dpu_selects_reprovisioning() -> None:
    dpu_only = parse_subtargets(CT.COMPUTE, ["DPU"])
    assert dpu_only.dpu
    assert dpu_only.dpu_only
    assert not dpu_only.tray_update
    both = parse_subtargets(CT.COMPUTE, ["dpu", "bmc"])
    assert both.dpu
    assert not both.dpu_only
    assert both.tray_update
    assert both.components == (f.COMPUTE_TRAY_COMPONENT_BMC,)


def test_unknown_name_lists_allowed_names() -> None:
    with pytest.raises(SubTargetError) as err:
        parse_subtargets(CT.NVSWITCH, ["bmc", "psu"])
    msg = str(err.value)
    assert "unknown nvswitch firmware sub-target(s) psu" in msg
    assert "allowed: bmc, cpld, bios, nvos" in msg


def test_dpu_is_only_a_compute_sub_target() -> None:
    with pytest.raises(SubTargetError, match="allowed: pmc, psu"):
        parse_subtargets(CT.POWERSHELF, ["dpu"])
    assert "dpu" in allowed_names(CT.COMPUTE)
    assert "dpu" not in allowed_names(CT.NVSWITCH)


def test_types_without_firmware_sub_targets() -> None:
    assert parse_subtargets(CT.CDU, []).components == ()
    with pytest.raises(SubTargetError, match="cdu components have no firmware sub-targets"):
        parse_subtargets(CT.CDU, ["bmc"])


def test_subtarget_error_is_a_manager_error() -> None:
    # Callers turn ManagerErrors into per-call results; a bad name must not escape them.
    with pytest.raises(ManagerError, match="allowed: pmc, psu"):
        parse_subtargets(CT.POWERSHELF, ["bmc"])
