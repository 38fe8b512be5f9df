"""InjectExpectation payloads for ingest, built from the inventory and the
credentials Secret a Rack names.

Credentials are read when the call is made and passed straight to Core: they
are never written to a Task, a log line or PostgreSQL. Secret keys:
`username` and `password` (the kubernetes.io/basic-auth layout), plus
`nvosUsername` and `nvosPassword` for switch trays. Only Secrets labelled
flow.nico.io/bmc-credentials=true are used: someone who may edit a Rack cannot
point it at another Secret of the namespace (the database DSN, a TLS key) and
have the operator hand that to Core."""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nicoflow.domain.types import ComponentType
from nicoflow.inventory.expectations import ExpectationSource, expectation_sources
from nicoflow.kube.client import SECRETS, ApiError, KubeClient

log = logging.getLogger(__name__)

CREDENTIALS_LABEL = "flow.nico.io/bmc-credentials"

Payload = Mapping[str, object]
ExpectationLoader = Callable[
    [ComponentType, Sequence[str]], Awaitable[tuple[dict[str, Payload], dict[str, str]]]
]

_SERIAL_FIELD = {
    ComponentType.COMPUTE: "chassis_serial_number",
    ComponentType.NVSWITCH: "switch_serial_number",
    ComponentType.POWERSHELF: "shelf_serial_number",
}


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    nvos_username: str = ""
    nvos_password: str = ""


def payload(src: ExpectationSource, creds: Credentials | None) -> dict[str, object]:
    """The expectation in the field names of Core's ExpectedMachine,
    ExpectedSwitch or ExpectedPowerShelf."""
    serial_field = _SERIAL_FIELD.get(src.type)
    if serial_field is None:
        raise ValueError(f"{src.type.value} components cannot be injected into NICo Core")
    out: dict[str, object] = {
        "bmc_mac_address": src.bmc_mac,
        serial_field: src.serial,
        "metadata": {"name": src.name},
    }
    if src.bmc_ip:
        out["bmc_ip_address"] = src.bmc_ip
    if src.rack_core_id:
        out["rack_id"] = src.rack_core_id
    if creds is not None:
        out["bmc_username"] = creds.username
        out["bmc_password"] = creds.password
        if src.type is ComponentType.NVSWITCH and creds.nvos_username:
            out["nvos_username"] = creds.nvos_username
            out["nvos_password"] = creds.nvos_password
    return out


def secret_location(ref: str, default_namespace: str) -> tuple[str, str]:
    namespace, _, name = ref.rpartition("/")
    return namespace or default_namespace, name


def credentials_from(secret: Mapping[str, Any]) -> Credentials:
    data = secret.get("data") or {}

    def value(key: str) -> str:
        raw = data.get(key)
        return base64.b64decode(raw).decode() if raw else ""

    return Credentials(
        value("username"), value("password"), value("nvosUsername"), value("nvosPassword")
    )


def loader(
    sessions: async_sessionmaker[AsyncSession], kube: KubeClient, default_namespace: str
) -> ExpectationLoader:
    """Payloads by component key, and the reason for each key that has none."""

    async def load(
        ctype: ComponentType, keys: Sequence[str]
    ) -> tuple[dict[str, Payload], dict[str, str]]:
        async with sessions() as session:
            sources = await expectation_sources(session, ctype, keys)
        problems = {
            k: f"{ctype.value} {k} is not in the inventory with a host BMC"
            for k in keys
            if k not in sources
        }
        secrets: dict[str, Credentials | str] = {}
        payloads: dict[str, Payload] = {}
        for key, src in sources.items():
            creds: Credentials | None = None
            if src.credentials_secret_ref:
                ref = src.credentials_secret_ref
                if ref not in secrets:
                    secrets[ref] = await _read(kube, ref, default_namespace)
                found = secrets[ref]
                if isinstance(found, str):
                    problems[key] = found
                    continue
                creds = found
            payloads[key] = payload(src, creds)
        return payloads, problems

    return load


async def _read(kube: KubeClient, ref: str, default_namespace: str) -> Credentials | str:
    namespace, name = secret_location(ref, default_namespace)
    try:
        secret = await kube.get(SECRETS, name, namespace)
    except ApiError as exc:
        if exc.status != 404:
            return f"cannot read BMC credentials Secret {namespace}/{name}: {exc.message}"
        return (
            f"BMC credentials Secret {namespace}/{name} not found; create it with keys "
            "username and password (and nvosUsername/nvosPassword for switch trays), "
            f"labelled {CREDENTIALS_LABEL}=true"
        )
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if labels.get(CREDENTIALS_LABEL) != "true":
        return (
            f"Secret {namespace}/{name} is not labelled {CREDENTIALS_LABEL}=true: the operator "
            f"reads only Secrets marked as BMC credentials (kubectl label secret {name} -n "
            f"{namespace} {CREDENTIALS_LABEL}=true)"
        )
    return credentials_from(secret)
