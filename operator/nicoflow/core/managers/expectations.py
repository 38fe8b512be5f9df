"""InjectExpectation payloads: JSON objects using the field names of Core's
ExpectedMachine / ExpectedSwitch / ExpectedPowerShelf messages, validated
strictly (an unknown field is an error, not silently dropped)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import json_format

from nicoflow._proto.nico import forge_pb2
from nicoflow.core.client import CoreClient, CoreError
from nicoflow.core.managers.base import ExpectationInfo, ManagerError
from nicoflow.core.managers.ids import sub_key
from nicoflow.core.managers.results import ComponentResults, Outcome
from nicoflow.domain.types import ComponentType

log = logging.getLogger(__name__)

Expected = forge_pb2.ExpectedMachine | forge_pb2.ExpectedSwitch | forge_pb2.ExpectedPowerShelf

_MESSAGES: dict[ComponentType, type[Expected]] = {
    ComponentType.COMPUTE: forge_pb2.ExpectedMachine,
    ComponentType.NVSWITCH: forge_pb2.ExpectedSwitch,
    ComponentType.POWERSHELF: forge_pb2.ExpectedPowerShelf,
}

# Wrapper-message fields that people naturally write as plain strings.
_ID_FIELDS = {"rack_id": "id", "id": "value", "expected_switch_id": "value",
              "expected_power_shelf_id": "value"}  # fmt: skip


def _normalize(ctype: ComponentType, entry: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(entry)
    if ctype == ComponentType.POWERSHELF and "ip_address" in data:
        # The original payload names the shelf's BMC address `ip_address`.
        if "bmc_ip_address" in data:
            raise ManagerError("give either ip_address or bmc_ip_address, not both")
        data["bmc_ip_address"] = data.pop("ip_address")
    for name, inner in _ID_FIELDS.items():
        if isinstance(data.get(name), str):
            data[name] = {inner: data[name]}
    return data


def build_expected(ctype: ComponentType, entry: Mapping[str, Any]) -> Expected:
    cls = _MESSAGES.get(ctype)
    if cls is None:
        raise ManagerError(f"{ctype.value} components cannot be injected into NICo Core")
    msg = cls()
    try:
        json_format.ParseDict(_normalize(ctype, entry), msg, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise ManagerError(f"invalid {cls.__name__} expectation: {exc}") from exc
    if not msg.bmc_mac_address:
        raise ManagerError(f"{cls.__name__} expectation needs bmc_mac_address")
    return msg


async def inject(core: CoreClient, ctype: ComponentType, info: ExpectationInfo) -> ComponentResults:
    """Add each expectation; results are keyed by BMC MAC address. A component
    Core already expects counts as done, so the call can be repeated."""
    messages = [build_expected(ctype, e) for e in info.entries]  # validate all first
    results: ComponentResults = {}
    for msg in messages:
        mac: str = msg.bmc_mac_address
        key = sub_key(info.idempotency_key, mac)
        try:
            if isinstance(msg, forge_pb2.ExpectedMachine):
                await core.add_expected_machine(msg, idempotency_key=key)
            elif isinstance(msg, forge_pb2.ExpectedSwitch):
                await core.add_expected_switch(msg, idempotency_key=key)
            elif isinstance(msg, forge_pb2.ExpectedPowerShelf):
                await core.add_expected_power_shelf(msg, idempotency_key=key)
            results[mac] = Outcome.success()
        except CoreError as exc:
            if exc.code == grpc.StatusCode.ALREADY_EXISTS:
                log.info("expected %s %s already known to Core", ctype.value, mac)
                results[mac] = Outcome.success()
            else:
                results[mac] = Outcome.from_error(exc)
    return results
