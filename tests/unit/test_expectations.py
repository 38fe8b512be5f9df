"""Ingest payloads: Core's field names per component type, credentials only
when a Secret is named, and the Secret's key layout."""

from __future__ import annotations

import base64

import pytest

from nicoflow.controller.expectations import (
    Credentials,
    credentials_from,
    payload,
    secret_location,
)
from nicoflow.core.managers.expectations import build_expected
from nicoflow.domain.targets import InventoryComponent, addressable, unaddressable_reason
from nicoflow.domain.types import ComponentType, OperationCode
from nicoflow.inventory.expectations import ExpectationSource

C, NVS, PS = ComponentType.COMPUTE, ComponentType.NVSWITCH, ComponentType.POWERSHELF


def source(ctype: ComponentType, **kw: object) -> ExpectationSource:
    values: dict[str, object] = {
        "key": "02:00:00:00:00:01",
        "type": ctype,
        "name": "tray-1",
        "serial": "SN1",
        "bmc_mac": "02:00:00:00:00:01",
        "bmc_ip": "10.0.0.1",
        "rack_core_id": "a12",
        "credentials_secret_ref": None,
    }
    values.update(kw)
    return ExpectationSource(**values)  # type: ignore[arg-type]


CREDS = Credentials("admin", "pw", "nvos", "nvpw")


@pytest.mark.parametrize(
    ("ctype", "serial_field"),
    [(C, "chassis_serial_number"), (NVS, "switch_serial_number"), (PS, "shelf_serial_number")],
)
def test_payload_parses_as_cores_message(ctype: ComponentType, serial_field: str) -> None:
    msg = build_expected(ctype, payload(source(ctype), CREDS))
    assert getattr(msg, serial_field) == "SN1"
    assert msg.bmc_mac_address == "02:00:00:00:00:01"
    assert msg.rack_id.id == "a12"
    assert (msg.bmc_username, msg.bmc_password) == ("admin", "pw")
    assert msg.metadata.name == "tray-1"
    assert msg.bmc_ip_address == "10.0.0.1"


def test_nvos_credentials_only_for_switches() -> None:
    assert payload(source(NVS), CREDS)["nvos_username"] == "nvos"
    assert "nvos_username" not in payload(source(C), CREDS)


def test_no_secret_means_no_credential_fields() -> None:
    out = payload(source(C, rack_core_id=None, bmc_ip=None), None)
    assert not {"bmc_username", "bmc_password", "rack_id", "bmc_ip_address"} & set(out)


def test_unmanaged_types_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be injected"):
        payload(source(ComponentType.CDU), None)


def test_secret_reference_defaults_to_the_operator_namespace() -> None:
    assert secret_location("creds", "nico-flow") == ("nico-flow", "creds")
    assert secret_location("site-a/creds", "nico-flow") == ("site-a", "creds")


def test_credentials_from_secret_data() -> None:
    enc = {
        k: base64.b64encode(v.encode()).decode()
        for k, v in {"username": "u", "password": "p"}.items()
    }
    assert credentials_from({"data": enc}) == Credentials("u", "p", "", "")
    assert credentials_from({}) == Credentials()


def test_only_ingest_addresses_components_by_bmc() -> None:
    new = InventoryComponent("1", "c1", C, "SN", core_id=None, bmc_mac="02:00:00:00:00:01")
    bare = InventoryComponent("2", "c2", C, "SN2")
    known = InventoryComponent("3", "c3", C, "SN3", core_id="m-1")
    assert addressable(OperationCode.INGEST, new)
    assert not addressable(OperationCode.RESTART, new)
    assert not addressable(OperationCode.INGEST, bare)
    assert addressable(OperationCode.RESTART, known)
    assert "host BMC" in unaddressable_reason(OperationCode.INGEST, bare)
    assert "no NICo Core id yet" in unaddressable_reason(OperationCode.RESTART, new)
