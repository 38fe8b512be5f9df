"""Static facts the simulator builds GB200 NVL72 racks from: models, the
firmware parts of each kind of device and the versions shipped on them."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final

from nicoflow.domain.types import ComponentType

MANUFACTURER: Final = "NVIDIA"
RACK_MODEL: Final = "GB200 NVL72"
RACK_PROFILE: Final = "gb200-nvl72"

COMPUTE_TRAYS_PER_RACK: Final = 18
SWITCH_TRAYS_PER_RACK: Final = 9
POWER_SHELVES_PER_RACK: Final = 8
DPUS_PER_TRAY: Final = 2


class Family(StrEnum):
    """A kind of device with its own firmware bundle. DPUs are machines in
    Core but not rack components in Flow, hence a separate vocabulary."""

    COMPUTE = "compute"
    NVSWITCH = "nvswitch"
    POWERSHELF = "powershelf"
    DPU = "dpu"


MODELS: Final = MappingProxyType(
    {
        Family.COMPUTE: "GB200 NVL72 Compute Tray",
        Family.NVSWITCH: "GB200 NVL72 NVLink Switch Tray",
        Family.POWERSHELF: "GB200 NVL72 Power Shelf",
        Family.DPU: "BlueField-3 DPU",
    }
)

FAMILY_OF_TYPE: Final = MappingProxyType(
    {
        ComponentType.COMPUTE: Family.COMPUTE,
        ComponentType.NVSWITCH: Family.NVSWITCH,
        ComponentType.POWERSHELF: Family.POWERSHELF,
    }
)

# Firmware parts per family, in the order Core's inventory lists them. Part
# names follow Flow's sub-target names so a request maps onto them directly.
PARTS: Final = MappingProxyType(
    {
        Family.COMPUTE: (
            "bmc",
            "bios",
            "cec",
            "nic",
            "cpld_mb",
            "cpld_pdb",
            "hgx_bmc",
            "gpu",
            "cx7",
        ),
        Family.NVSWITCH: ("bmc", "cpld", "bios", "nvos"),
        Family.POWERSHELF: ("pmc", "psu"),
        Family.DPU: ("bmc", "uefi", "nic"),
    }
)

# The part whose version Core's Redfish inventory describes as "BMC image"
# (the management controller of the device).
BMC_PART: Final = MappingProxyType(
    {
        Family.COMPUTE: "bmc",
        Family.NVSWITCH: "bmc",
        Family.POWERSHELF: "pmc",
        Family.DPU: "bmc",
    }
)

PART_DESCRIPTIONS: Final = MappingProxyType(
    {
        "bmc": "BMC image",
        "pmc": "BMC image",
        "bios": "BIOS image",
        "uefi": "UEFI image",
        "cec": "CEC image",
        "nic": "NIC firmware",
        "cpld": "CPLD image",
        "cpld_mb": "Motherboard CPLD image",
        "cpld_pdb": "Power distribution board CPLD image",
        "hgx_bmc": "HGX BMC image",
        "gpu": "GPU firmware",
        "cx7": "ConnectX-7 firmware",
        "nvos": "NVOS image",
        "psu": "PSU firmware",
    }
)

SHIPPED_FIRMWARE: Final = MappingProxyType(
    {
        Family.COMPUTE: MappingProxyType(
            {
                "bmc": "25.01.1",
                "bios": "1.2.0",
                "cec": "1.13.0",
                "nic": "28.42.1000",
                "cpld_mb": "0.2.1.3",
                "cpld_pdb": "0.1.0.5",
                "hgx_bmc": "25.01.1",
                "gpu": "97.00.52.00.01",
                "cx7": "28.42.1000",
            }
        ),
        Family.NVSWITCH: MappingProxyType(
            {"bmc": "88.0002.0915", "cpld": "0.1.2", "bios": "0.9.1", "nvos": "25.02.2080"}
        ),
        Family.POWERSHELF: MappingProxyType({"pmc": "1.3.2", "psu": "2.1.0"}),
        Family.DPU: MappingProxyType({"bmc": "24.10-3", "uefi": "4.9.1", "nic": "32.43.1014"}),
    }
)

DESIRED_FIRMWARE: Final = MappingProxyType(
    {
        Family.COMPUTE: MappingProxyType(
            {
                "bmc": "25.04.2",
                "bios": "1.3.1",
                "cec": "1.14.2",
                "nic": "28.43.1014",
                "cpld_mb": "0.2.1.9",
                "cpld_pdb": "0.1.0.8",
                "hgx_bmc": "25.04.2",
                "gpu": "97.00.82.00.0F",
                "cx7": "28.43.1014",
            }
        ),
        Family.NVSWITCH: MappingProxyType(
            {"bmc": "88.0002.1008", "cpld": "0.1.4", "bios": "0.9.3", "nvos": "25.02.2553"}
        ),
        Family.POWERSHELF: MappingProxyType({"pmc": "1.4.0", "psu": "2.2.1"}),
        Family.DPU: MappingProxyType({"bmc": "25.01-1", "uefi": "4.10.0", "nic": "32.44.1036"}),
    }
)

LEAK_ALERT_ID: Final = "hardware-health.tray-leak-detection"
