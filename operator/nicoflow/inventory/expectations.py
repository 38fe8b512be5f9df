"""What Core must be told to expect about a component (ingest): its serial,
its own BMC, its rack's Core id and where its credentials live."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from nicoflow.domain.types import BMCType, ComponentType
from nicoflow.inventory.models import BMC, Component, Rack


@dataclass(frozen=True)
class ExpectationSource:
    key: str  # how the Task names the component: its Core id, else its BMC MAC
    type: ComponentType
    name: str
    serial: str
    bmc_mac: str
    bmc_ip: str | None
    rack_core_id: str | None
    credentials_secret_ref: str | None  # "name" or "namespace/name"


async def expectation_sources(
    session: AsyncSession, ctype: ComponentType, keys: Collection[str]
) -> dict[str, ExpectationSource]:
    """Sources by key; keys that match no component (or one without a host BMC)
    are left out, so the caller can name them."""
    wanted = set(keys)
    if not wanted:
        return {}
    macs = {k.lower() for k in wanted}
    rows = (
        await session.execute(
            select(
                Component.external_id,
                Component.name,
                Component.serial_number,
                BMC.mac_address,
                BMC.ip_address,
                BMC.credentials_secret_ref,
                Rack.external_id,
            )
            .join(BMC, BMC.component_id == Component.id)
            .outerjoin(Rack, Rack.id == Component.rack_id)
            .where(
                Component.type == ctype,
                Component.deleted_at.is_(None),
                BMC.type == BMCType.HOST,
                or_(Component.external_id.in_(wanted), BMC.mac_address.in_(macs)),
            )
            .order_by(BMC.mac_address)
        )
    ).all()
    out: dict[str, ExpectationSource] = {}
    for core_id, name, serial, mac, ip, secret, rack_core_id in rows:
        key = core_id if core_id in wanted else next((k for k in wanted if k.lower() == mac), None)
        if key is None or key in out:
            continue
        out[key] = ExpectationSource(
            key=key,
            type=ctype,
            name=name,
            serial=serial,
            bmc_mac=mac,
            bmc_ip=str(ip) if ip is not None else None,
            rack_core_id=rack_core_id,
            credentials_secret_ref=secret,
        )
    return out
