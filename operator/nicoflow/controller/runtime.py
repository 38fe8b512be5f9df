"""Everything the operator's handlers share, created on kopf's event loop at
start-up (gRPC channels and the database pool are bound to the loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nicoflow.controller import expectations, metrics
from nicoflow.controller.actuator import Actuator
from nicoflow.controller.alerts import AlertRouter, LogSink, WebhookSink
from nicoflow.controller.inventory_sync import InventorySyncer
from nicoflow.controller.leak_response import LeakResponder
from nicoflow.controller.leak_watch import LeakWatch
from nicoflow.controller.ownership import TaskGuard
from nicoflow.controller.rack_mirror import RackController
from nicoflow.controller.retention import HistoryPruner, Retention
from nicoflow.controller.rules import RuleCache
from nicoflow.controller.schedules import ScheduleController
from nicoflow.controller.tasks import Settings, TaskManager
from nicoflow.controller.taskspecs import TaskSpecController
from nicoflow.controller.tenancy import AccessPolicies, schedule_gate
from nicoflow.core.client import CoreClient
from nicoflow.core.config import ComponentManagerConfig, load_config
from nicoflow.core.managers.registry import ManagerRegistry, core_settings
from nicoflow.core.readiness import ComponentStatus
from nicoflow.domain.targets import InventoryRack
from nicoflow.domain.types import OperationType, TaskPhase
from nicoflow.engine.compaction import ComponentRecord
from nicoflow.inventory import queries
from nicoflow.inventory.db import make_async_engine, make_async_session_factory
from nicoflow.kube.client import KubeClient

log = logging.getLogger(__name__)


@dataclass
class Options:
    kubeconfig: str | None = None
    database_url: str | None = None
    component_config: str | None = None
    core_url: str | None = None
    stage_events: bool = False
    confirm_window: float = 30.0
    # blast-radius limits (0 = none): racks running at once, Core calls a
    # second, racks a disruptive TaskSpec may take without maxParallelRacks
    max_racks_in_flight: int = 0
    core_calls_per_second: float = 0.0
    max_unthrottled_racks: int = 0
    namespaces: tuple[str, ...] = ()
    ttl_sweep_seconds: float = 30.0
    resolve_grace_seconds: float = 30.0
    inventory_interval: float = 60.0  # 0 = no inventory sync
    leak_interval: float = 60.0  # 0 = no leak watch
    leak_namespace: str = "nico-flow"
    # nico-flow's own namespace: with no RackAccessPolicy at all, only it (and
    # the leak namespace) may operate
    platform_namespace: str = "nico-flow"
    platform_grant: bool = True  # it may always operate on every rack
    mirror_expected_racks: bool = False
    alert_webhook: str | None = None
    alert_webhook_timeout: float = 5.0
    alert_webhook_retries: int = 3
    metrics_port: int | None = None  # None = no /metrics endpoint
    history: Retention = field(default_factory=Retention)
    history_prune_interval: float = 3600.0


@dataclass
class Runtime:
    kube: KubeClient
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    core: CoreClient | None
    managers: ManagerRegistry
    rules: RuleCache
    tasks: TaskManager
    taskspecs: TaskSpecController
    alerts: AlertRouter
    schedules: ScheduleController
    racks: RackController
    access: AccessPolicies
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def create(cls, opts: Options) -> Runtime:
        kube = KubeClient.from_env(opts.kubeconfig)
        engine = make_async_engine(opts.database_url, pool_size=10, max_overflow=10)
        sessions = make_async_session_factory(engine)
        config: ComponentManagerConfig = load_config(opts.component_config).config
        core: CoreClient | None = None
        if config.required_providers():
            settings = core_settings(
                config, target=opts.core_url, max_calls_per_second=opts.core_calls_per_second
            )
            core = await CoreClient.connect(
                settings,
                on_call=metrics.observe_core_call,
                on_throttle=metrics.observe_core_throttle,
            )
        managers = ManagerRegistry.build(config, core=core)
        rules = RuleCache()

        async def statuses(ids: list[str]) -> dict[str, ComponentStatus]:
            async with sessions() as session:
                found = await queries.component_statuses(session, ids)
            return {
                cid: ComponentStatus(
                    phase=str(phase),
                    blocked_operations=frozenset(OperationType(b) for b in blocked),
                )
                for cid, (phase, _reason, blocked) in found.items()
            }

        async def rack_hosts(rack: str) -> list[str]:
            async with sessions() as session:
                return await queries.rack_compute_ids(session, rack)

        async def archive(body: dict[str, Any]) -> None:
            async with sessions() as session, session.begin():
                await queries.archive_task(session, body)

        async def archive_results(task_id: str, records: list[ComponentRecord]) -> None:
            rows = [
                {
                    "stage": r.stage,
                    "component_type": r.component_type,
                    "component_id": r.id,
                    "name": r.name,
                    "phase": r.phase.value,
                    "attempts": r.attempts,
                    "commanded": r.commanded,
                    "error": r.error,
                    "finished_at": r.finished_at,
                }
                for r in records
            ]
            async with sessions() as session, session.begin():
                await queries.archive_results(session, task_id, rows)

        async def index(bodies: list[dict[str, Any]]) -> None:
            async with sessions() as session, session.begin():
                await queries.record_tasks(session, bodies)

        async def phases(
            body: dict[str, Any], phase: TaskPhase, started: datetime | None, msg: str
        ) -> None:
            async with sessions() as session, session.begin():
                # a Task its creator could not index (PostgreSQL was down) gets its row now
                await queries.record_tasks(session, [body])
                uid = str(body["metadata"]["uid"])
                await queries.record_phase(session, uid, phase, started_at=started, message=msg)

        async def load_inventory(targets: dict[str, Any]) -> Sequence[InventoryRack]:
            async with sessions() as session:
                return await queries.load_for_targets(session, targets)

        async def load_racks(names: list[str]) -> Sequence[InventoryRack]:
            return await load_inventory({"racks": names})

        access = AccessPolicies(
            kube,
            (opts.platform_namespace, opts.leak_namespace),
            platform_grant=opts.platform_grant,
        )

        tasks = TaskManager(
            kube,
            Actuator(
                managers,
                expectations.loader(sessions, kube, os.environ.get("POD_NAMESPACE") or "nico-flow"),
            ),
            namespaces=opts.namespaces,
            statuses=statuses,
            rack_hosts=rack_hosts,
            archive=archive,
            results=archive_results,
            index=index,
            phases=phases,
            settings=Settings(
                stage_events=opts.stage_events,
                confirm_window=opts.confirm_window,
                max_racks_in_flight=opts.max_racks_in_flight,
            ),
            guard=TaskGuard(kube, load_racks, access),
        )
        taskspecs = TaskSpecController(
            kube,
            tasks,
            load_inventory,
            rules.candidates,
            resolve_grace=timedelta(seconds=opts.resolve_grace_seconds),
            max_unthrottled_racks=opts.max_unthrottled_racks,
            access=access,
        )
        tasks.on_change = taskspecs.mark
        sinks: list[LogSink | WebhookSink] = [LogSink()]
        if opts.alert_webhook:
            sinks.append(
                WebhookSink(
                    opts.alert_webhook,
                    timeout=opts.alert_webhook_timeout,
                    retries=opts.alert_webhook_retries,
                )
            )
        alerts = AlertRouter(sinks)
        if opts.metrics_port is not None:
            port = metrics.serve(opts.metrics_port, lambda: list(tasks.entries.values()))
            log.info("metrics on :%d/metrics", port)
        schedules = ScheduleController(
            kube, namespaces=opts.namespaces, gate=schedule_gate(access, load_inventory)
        )
        runtime = cls(
            kube,
            engine,
            sessions,
            core,
            managers,
            rules,
            tasks,
            taskspecs,
            alerts,
            schedules,
            RackController(kube, sessions),
            access,
        )
        runtime._background.append(asyncio.ensure_future(schedules.run(runtime._stop)))
        runtime._background.append(asyncio.ensure_future(tasks.sync()))
        runtime._background.append(asyncio.ensure_future(runtime._sweep(opts.ttl_sweep_seconds)))
        if opts.history.bounded:
            pruner = HistoryPruner(sessions, opts.history, opts.history_prune_interval)
            runtime._background.append(asyncio.ensure_future(pruner.run(runtime._stop)))
        if core is not None and opts.leak_interval > 0:
            # the leak response runs on its own loop: no inventory pass, no
            # PostgreSQL needed
            watch = LeakWatch(
                core,
                kube,
                LeakResponder(kube, alerts, opts.leak_namespace),
                interval=opts.leak_interval,
            )
            runtime._background.append(asyncio.ensure_future(watch.run(runtime._stop)))
        if core is not None and opts.inventory_interval > 0:
            # Leak TaskSpecs carry their own Rack Event, so no Event sink here.
            syncer = InventorySyncer(
                sessions,
                core,
                kube,
                alerts,
                interval=opts.inventory_interval,
                namespace=opts.leak_namespace,
                mirror_expected_racks=opts.mirror_expected_racks,
            )
            runtime._background.append(asyncio.ensure_future(syncer.run(runtime._stop)))
        return runtime

    async def _sweep(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.taskspecs.expire()
            except Exception as exc:
                log.warning("TTL sweep failed: %s", exc)

    async def close(self) -> None:
        self._stop.set()
        for t in self._background:
            t.cancel()
        await self.tasks.close()
        await self.racks.close()
        for t in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.kube.close()
        if self.core is not None:
            await self.core.close()
        await self.alerts.close()
        await self.engine.dispose()
