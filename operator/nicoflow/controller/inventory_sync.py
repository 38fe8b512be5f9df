"""The living inventory: every `interval` seconds, ask NICo Core what the hardware
looks like, write it into PostgreSQL and refresh Rack status. Leaks it sees are
recorded (Rack status, the inventory); the response to them runs on its own
loop (controller.leak_watch), which needs neither this pass nor PostgreSQL.

Optionally (`mirror_expected_racks`), racks Core expects and Flow has no Rack
object for are created as Rack objects labelled `flow.nico.io/source: core`;
existing Racks are never changed or deleted by this.

Run it only in the active operator instance (the leader)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nicoflow.controller.alerts import Alert, AlertRouter, Severity
from nicoflow.controller.racks import summary_status
from nicoflow.controller.resources import RACKS
from nicoflow.core.client import CoreClient, CoreError
from nicoflow.core.expected import (
    ExpectedInventory,
    MirroredRack,
    expected_rack_objects,
    read_expected_inventory,
)
from nicoflow.core.observe import observe_site
from nicoflow.domain.observations import SiteObservation
from nicoflow.domain.types import ComponentType
from nicoflow.inventory import mirror as inventory_mirror
from nicoflow.inventory.sync import SyncResult, apply_observation
from nicoflow.kube.client import ApiError, Conflict, KubeClient

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0

Clock = Callable[[], datetime]
Observer = Callable[[CoreClient], Awaitable[SiteObservation]]
ExpectedReader = Callable[[CoreClient], Awaitable[ExpectedInventory]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


_VOLATILE = frozenset({"lastTransitionTime", "observedTime", "checkedTime"})


def _stable(value: Any) -> Any:
    """The status without timestamps: what decides whether a patch is worth it."""
    if isinstance(value, Mapping):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


class InventorySyncer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        core_client: CoreClient,
        kube: KubeClient,
        alerts: AlertRouter,
        clock: Clock = _utcnow,
        interval: float = DEFAULT_INTERVAL,
        *,
        namespace: str = "default",
        observe: Observer = observe_site,
        mirror_expected_racks: bool = False,
        read_expected: ExpectedReader = read_expected_inventory,
    ) -> None:
        if interval <= 0:
            raise ValueError("inventory sync interval must be greater than zero")
        self.sessions = sessions
        self.core = core_client
        self.kube = kube
        self.alerts = alerts
        self.clock = clock
        self.interval = interval
        self.namespace = namespace
        self.mirror_expected_racks = mirror_expected_racks
        self._observe = observe
        self._read_expected = read_expected
        self._failing: dict[ComponentType, str] = {}
        self.last_result: SyncResult | None = None
        self.last_mirrored: tuple[str, ...] = ()

    async def run(self, stop: asyncio.Event) -> None:
        """Sync every `interval` seconds until `stop` is set. A failed pass is
        logged and the next one runs on schedule."""
        while not stop.is_set():
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inventory sync pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def sync_once(self) -> SyncResult:
        # Taken before asking Core: what Core says is at least this recent, which
        # is what the leak decision compares with a power-off's finish time.
        now = self.clock()
        obs = await self._observe(self.core)
        async with self.sessions() as session, session.begin():
            result = await apply_observation(session, obs, now)
        self.last_result = result
        racks = await self._racks()
        if self.mirror_expected_racks:
            self.last_mirrored = await self._mirror_expected(obs, racks)
        await self._report_core_errors(result)
        await self._refresh_racks(racks or {}, result)
        log.info(
            "inventory sync: %s; %d drift rows; %d leaking (%d new)%s",
            ", ".join(f"{t.value} {c.matched}/{c.observed}" for t, c in result.types.items())
            or "nothing observed",
            result.drift_total,
            len(result.leaks),
            len(result.new_leaks),
            f"; errors: {dict(result.errors)}" if result.errors else "",
        )
        return result

    async def _racks(self) -> dict[str, dict[str, Any]] | None:
        """Rack objects by name; None when they cannot be listed."""
        try:
            return {r["metadata"]["name"]: r for r in await self.kube.list(RACKS)}
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("inventory sync: cannot list Racks: %s", exc)
            return None

    # --- Racks Core expects ------------------------------------------------------------

    async def _mirror_expected(
        self, obs: SiteObservation, racks: Mapping[str, dict[str, Any]] | None
    ) -> tuple[str, ...]:
        """Create Rack objects for racks Core expects and Flow lacks; the names created."""
        if racks is None:
            return ()  # without the list every rack would look missing
        try:
            inventory = await self._read_expected(self.core)
        except CoreError as exc:
            log.warning("expected-inventory mirror: cannot read Core: %s", exc)
            return ()
        plan = expected_rack_objects(inventory, racks.values(), obs)
        for skipped in plan.skipped:
            log.info("expected-inventory mirror: %s", skipped)
        created: list[str] = []
        for rack in plan.create:
            if await self._create_rack(rack):
                created.append(rack.name)
        return tuple(created)

    async def _create_rack(self, rack: MirroredRack) -> bool:
        try:
            await self.kube.create(RACKS, rack.body)
        except Conflict:
            return False  # someone created it meanwhile: theirs wins
        except (ApiError, httpx.HTTPError) as exc:
            log.warning("expected-inventory mirror: cannot create Rack %s: %s", rack.name, exc)
            return False
        log.info(
            "expected-inventory mirror: created Rack %s (Core rack %s, %d components)",
            rack.name,
            rack.core_id,
            rack.components,
        )
        return True

    async def _report_core_errors(self, result: SyncResult) -> None:
        """Alert once when a type stops being observable and once when it recovers."""
        for ctype, error in result.errors.items():
            if ctype not in self._failing:
                await self.alerts.send(
                    Alert(
                        Severity.WARNING,
                        f"Inventory sync cannot observe {ctype.value} components in NICo Core",
                        details={"error": error},
                    )
                )
        for ctype in list(self._failing):
            if ctype in result.types:
                await self.alerts.send(
                    Alert(Severity.INFO, f"Inventory sync observes {ctype.value} components again")
                )
        self._failing = dict(result.errors)

    async def _refresh_racks(self, racks: Mapping[str, dict[str, Any]], result: SyncResult) -> None:
        core_error = (
            "; ".join(f"{t.value}: {e}" for t, e in sorted(result.errors.items()))
            if result.errors
            else None
        )
        for name, body in racks.items():
            async with self.sessions() as session:
                summary = await inventory_mirror.rack_summary(session, name)
            if summary is None:
                continue  # not mirrored yet; the Rack handler will write its status
            current = body.get("status") or {}
            status = summary_status(body, summary, core_error=core_error)
            # The mirror owns observedGeneration: a spec change it has not
            # handled yet must not look handled.
            if "observedGeneration" in current:
                status["observedGeneration"] = current["observedGeneration"]
            else:
                status.pop("observedGeneration", None)
            if _stable({k: current.get(k) for k in status}) == _stable(status):
                continue
            try:
                await self.kube.patch_status(RACKS, name, status)
            except (ApiError, httpx.HTTPError) as exc:
                log.warning("inventory sync: cannot update status of Rack %s: %s", name, exc)
