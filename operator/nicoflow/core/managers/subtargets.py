"""Firmware sub-target names users write (e.g. `bmc`, `cpld`, `dpu`) and the
Core enum values they select, per component type.

Names are trimmed and case-insensitive; an unknown name is an error that lists
the allowed ones. For compute, `dpu` selects the DPU reprovisioning path and is
never implied by an empty list."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nicoflow._proto.nico import forge_pb2
from nicoflow.core.managers.base import ManagerError
from nicoflow.domain.types import ComponentType

DPU = "dpu"

NVSWITCH_COMPONENTS: dict[str, int] = {
    "bmc": forge_pb2.NV_SWITCH_COMPONENT_BMC,
    "cpld": forge_pb2.NV_SWITCH_COMPONENT_CPLD,
    "bios": forge_pb2.NV_SWITCH_COMPONENT_BIOS,
    "nvos": forge_pb2.NV_SWITCH_COMPONENT_NVOS,
}

POWERSHELF_COMPONENTS: dict[str, int] = {
    "pmc": forge_pb2.POWER_SHELF_COMPONENT_PMC,
    "psu": forge_pb2.POWER_SHELF_COMPONENT_PSU,
}

COMPUTE_COMPONENTS: dict[str, int] = {
    "bmc": forge_pb2.COMPUTE_TRAY_COMPONENT_BMC,
    "bios": forge_pb2.COMPUTE_TRAY_COMPONENT_BIOS,
    "cec": forge_pb2.COMPUTE_TRAY_COMPONENT_CEC,
    "nic": forge_pb2.COMPUTE_TRAY_COMPONENT_NIC,
    "cpld_mb": forge_pb2.COMPUTE_TRAY_COMPONENT_CPLD_MB,
    "cpld_pdb": forge_pb2.COMPUTE_TRAY_COMPONENT_CPLD_PDB,
    "hgx_bmc": forge_pb2.COMPUTE_TRAY_COMPONENT_HGX_BMC,
    "combined_bmc_uefi": forge_pb2.COMPUTE_TRAY_COMPONENT_COMBINED_BMC_UEFI,
    "gpu": forge_pb2.COMPUTE_TRAY_COMPONENT_GPU,
    "cx7": forge_pb2.COMPUTE_TRAY_COMPONENT_CX7,
}

_TABLES: dict[ComponentType, dict[str, int]] = {
    ComponentType.NVSWITCH: NVSWITCH_COMPONENTS,
    ComponentType.POWERSHELF: POWERSHELF_COMPONENTS,
    ComponentType.COMPUTE: COMPUTE_COMPONENTS,
}


class SubTargetError(ManagerError, ValueError):
    """A firmware sub-target name is not valid for the component type (a
    ManagerError, so callers that turn manager errors into results see it)."""


@dataclass(frozen=True)
class SubTargets:
    """Parsed selection. An empty `components` means the whole bundle, except
    that `dpu_only` compute selections update no tray firmware at all."""

    components: tuple[int, ...]
    dpu: bool = False
    # Compute only: the list named `dpu` and nothing else.
    dpu_only: bool = False

    @property
    def tray_update(self) -> bool:
        return not self.dpu_only


def allowed_names(component_type: ComponentType) -> list[str]:
    table = _TABLES.get(component_type)
    if table is None:
        return []
    names = list(table)
    if component_type == ComponentType.COMPUTE:
        names.append(DPU)
    return names


def parse_subtargets(component_type: ComponentType, names: Iterable[str]) -> SubTargets:
    table = _TABLES.get(component_type)
    given = [n.strip().lower() for n in names if n.strip()]
    if table is None:
        if given:
            raise SubTargetError(
                f"{component_type.value} components have no firmware sub-targets; got {given}"
            )
        return SubTargets(())
    unknown = [n for n in given if n not in table and not (n == DPU and _has_dpu(component_type))]
    if unknown:
        raise SubTargetError(
            f"unknown {component_type.value} firmware sub-target(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed_names(component_type))}"
        )
    dpu = DPU in given
    components = tuple(dict.fromkeys(table[n] for n in given if n != DPU))
    if not given and component_type == ComponentType.POWERSHELF:
        # Historical default: an unqualified shelf update means the PMC only.
        components = (POWERSHELF_COMPONENTS["pmc"],)
    return SubTargets(components, dpu=dpu, dpu_only=dpu and not components)


def _has_dpu(component_type: ComponentType) -> bool:
    return component_type == ComponentType.COMPUTE
