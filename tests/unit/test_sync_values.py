"""Values inventory sync writes: the start of a leak incident and NVOS addresses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nicoflow.domain.observations import ObservedComponent
from nicoflow.domain.types import ComponentType
from nicoflow.inventory.models import LeakStatus
from nicoflow.inventory.sync import ip_or_none, leak_since

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)
CORE_SINCE = NOW - timedelta(minutes=5)


def tray(leaking: bool | None, since: datetime | None = None) -> ObservedComponent:
    return ObservedComponent(ComponentType.COMPUTE, "m-1", leaking=leaking, leak_since=since)


def test_leak_start_comes_from_core_else_sticks_to_the_first_sighting() -> None:
    detected, clear = LeakStatus.DETECTED, LeakStatus.NOT_DETECTED
    # Core's alert time wins, also over a start recorded earlier (a new alert).
    assert leak_since(clear, None, tray(True, CORE_SINCE), NOW) == CORE_SINCE
    assert leak_since(detected, EARLIER, tray(True, CORE_SINCE), NOW) == CORE_SINCE
    # Without it: first seen now, and an incident under way keeps its start.
    assert leak_since(clear, None, tray(True), NOW) == NOW
    assert leak_since(detected, EARLIER, tray(True), NOW) == EARLIER
    # A status that says detected without a start (rows from before the column) starts now.
    assert leak_since(detected, None, tray(True), NOW) == NOW
    # No leak (or no sensor data): no incident.
    assert leak_since(detected, EARLIER, tray(False, CORE_SINCE), NOW) is None
    assert leak_since(detected, EARLIER, tray(None), NOW) is None


def test_only_valid_addresses_reach_the_inet_column() -> None:
    assert ip_or_none("10.0.0.7") == "10.0.0.7"
    assert ip_or_none(" fd00::0001 ") == "fd00::1"
    assert ip_or_none("") is None
    assert ip_or_none(None) is None
    assert ip_or_none("nvos-01.example") is None
    assert ip_or_none("10.0.0.300") is None
