"""Timings and Core-behaviour switches of one simulator instance."""

from __future__ import annotations

from dataclasses import dataclass, field

from nicoflow import __version__
from nicoflow.domain.types import ComponentType


@dataclass(frozen=True)
class SimSettings:
    # Graceful power transitions (boot, shutdown) of trays and switches.
    power_latency: float = 2.0
    # Forced off / the "off" half of a forced restart (0 = immediate).
    force_power_latency: float = 0.0
    # An accepted power command leaves the power state unchanged this long
    # before its transition shows (real BMCs take a moment to act), so a read
    # right after a command cannot tell it from one that never arrived.
    command_lag: float = 0.0
    # Power shelves; None = same as power_latency.
    shelf_power_latency: float | None = None
    # Whole life of a firmware job, queued to completed.
    firmware_latency: float = 30.0
    # From permission (or discovery, when not paused) to machine created.
    ingestion_latency: float = 5.0
    # From an expected-inventory entry to the BMC being explored.
    discovery_latency: float = 2.0
    # DPU reprovisioning after the host reboot that starts it.
    dpu_reprovision_latency: float = 10.0
    # Core's `<type>_use_state_controller` flags: with a flag on and no
    # bypass, Core refuses power control of shelves and compute trays
    # (UNIMPLEMENTED) and shelf firmware, and wants a JSON target for trays.
    state_controller: frozenset[ComponentType] = field(default_factory=frozenset)
    # Core's direct compute firmware path keys results by BMC IP.
    firmware_results_by_bmc_ip: bool = False
    # Real Core wants a BMC IP in BmcEndpointRequest.ip_address; by default the
    # simulator also accepts a machine ID there (Flow's original passes one).
    strict_bmc_endpoints: bool = False
    initial_machine_state: str = "Ready"
    # Core's power manager drives a host towards its desired power state: a
    # host whose desired state has differed from its settled state this long
    # is switched by Core itself (None = never, as before this was modelled).
    power_manager_delay: float | None = 30.0
    build_version: str = f"nico-core-simulator-{__version__}"

    def __post_init__(self) -> None:
        for name in (
            "power_latency",
            "force_power_latency",
            "command_lag",
            "firmware_latency",
            "ingestion_latency",
            "discovery_latency",
            "dpu_reprovision_latency",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.shelf_power_latency is not None and self.shelf_power_latency < 0:
            raise ValueError("shelf_power_latency must not be negative")
