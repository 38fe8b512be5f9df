"""Builders for Core's ID-list messages and per-call idempotency keys."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from nicoflow._proto.nico import common_pb2, forge_pb2


def machine_id_list(ids: Iterable[str]) -> common_pb2.MachineIdList:
    return common_pb2.MachineIdList(machine_ids=[common_pb2.MachineId(id=i) for i in ids])


def machine_ids(ids: Iterable[str]) -> list[common_pb2.MachineId]:
    return [common_pb2.MachineId(id=i) for i in ids]


def switch_id_list(ids: Iterable[str]) -> forge_pb2.SwitchIdList:
    return forge_pb2.SwitchIdList(ids=[common_pb2.SwitchId(id=i) for i in ids])


def power_shelf_id_list(ids: Iterable[str]) -> forge_pb2.PowerShelfIdList:
    return forge_pb2.PowerShelfIdList(ids=[common_pb2.PowerShelfId(id=i) for i in ids])


def sub_key(key: str, *parts: str) -> str:
    """Idempotency key of one Core call inside a manager call: the caller's key
    plus what distinguishes this call (component, step), so a repeated manager
    call repeats exactly the same keys."""
    return "/".join((key, *parts))


def is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
