"""Deterministic simulation of one Task: the real engine loop (controller.runner),
actuator, component managers and NICo Core client, against the simulator over
real gRPC on loopback, all on one fake clock.

Everything that could make two runs of a seed differ is pinned: calls run one
at a time in an order drawn from the seed, the simulator's fault decisions are
drawn from the seed in that order, the client's backoff jitter is seeded, and
time moves only when the loop waits. An operator crash is a `Crash` raised out
of the loop; the next incarnation starts from the status last persisted, as a
restarted operator reads it back from the apiserver."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dst.scenario import Scenario
from nicoflow.api.taskstatus import AppliedRule, TaskStatus
from nicoflow.controller.actuator import Actuator
from nicoflow.controller.expectations import Payload, payload
from nicoflow.controller.plans import status_of, status_patch
from nicoflow.controller.runner import drive
from nicoflow.core.client import CoreClient, CoreClientSettings, RetryPolicy
from nicoflow.core.config import parse_config
from nicoflow.core.managers.registry import ManagerRegistry
from nicoflow.core.readiness import (
    ComponentStatus,
    check_readiness,
    gated_components,
    gated_operation,
    needs_rack_hosts,
)
from nicoflow.domain.observations import compute_status
from nicoflow.domain.types import ComponentType
from nicoflow.engine.compaction import ComponentRecord
from nicoflow.engine.plan import Call, Component, Options, Outcome, Plan
from nicoflow.engine.task import Decision
from nicoflow.inventory.expectations import ExpectationSource
from nicoflow.simulator.clock import FakeClock
from nicoflow.simulator.faults import FaultPlan
from nicoflow.simulator.power import Power
from nicoflow.simulator.server import Simulator
from nicoflow.simulator.site import generate_site
from nicoflow.simulator.world import Node, NodeKind

TASK_UID = "0d5e7a1c-dst0-4000-8000-000000000000"
MAX_TURNS = 20_000
MAX_SIM_SECONDS = 3 * 24 * 3600.0
MAX_INCARNATIONS = 12


class Crash(BaseException):
    """The operator process dies (a BaseException: nothing on the way up may
    catch it and carry on, as nothing runs after a SIGKILL)."""


class Stuck(Exception):
    """The run did not finish within the simulation's bounds."""


@dataclass
class Trace:
    """What happened, for the report of a failing seed."""

    turns: int = 0
    persists: int = 0
    calls: int = 0
    crashes: list[str] = field(default_factory=list)
    incarnations: int = 0
    lines: list[str] = field(default_factory=list)

    def note(self, clock: FakeClock, text: str) -> None:
        if len(self.lines) < 4000:
            self.lines.append(f"t={clock.now() - START:9.1f} {text}")


START = 1_750_000_000.0


class GuardedCore(CoreClient):
    """The Core client of one operator process: dead after a crash, and able
    to crash right after the n-th call returned."""

    run: Run

    async def _invoke(self, method: str, request: Any, response_cls: Any, **kw: Any) -> Any:
        run = self.run
        if run.dead:
            raise Crash(f"{method} after the crash")
        run.trace.calls += 1
        n = run.trace.calls
        run.per_method[method] += 1
        nth = run.per_method[method]
        if run.crash_due("call", n, after=False, method=method, nth=nth):
            run.die(f"crash before call #{n} ({method} #{nth})")
        try:
            return await super()._invoke(method, request, response_cls, **kw)
        finally:
            if run.crash_due("call", n, after=True, method=method, nth=nth):
                run.die(f"crash after call #{n} ({method} #{nth})")


class Run:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.clock = FakeClock(START)
        self.trace = Trace()
        self.dead = False
        self.per_method: Counter[str] = Counter()
        self.persisted: dict[str, Any] | None = None
        self.rng = random.Random(scenario.seed * 7919 + 1)
        self._pending = list(scenario.crashes)
        self.cancelled = False
        self.held = False  # the readiness gate kept the Task from starting
        self.final: TaskStatus | None = None
        # the task archive's per-component results: (stage, type, id) -> record
        self.archive: dict[tuple[int, ComponentType, str], ComponentRecord] = {}
        self.sim: Simulator | None = None
        self.plan: Plan | None = None
        self.targets: dict[ComponentType, list[Node]] = {}

    # -- crashes ---------------------------------------------------------------------

    def crash_due(
        self, point: str, n: int, *, after: bool, method: str | None = None, nth: int = 0
    ) -> bool:
        """`n`: the count of this point; `nth`: of calls of `method` alone."""
        for c in self._pending:
            if c.point != point or c.after != after:
                continue
            if (c.method is None and c.at == n) or (c.method == method and c.at == nth):
                self._pending.remove(c)
                return True
        return False

    def die(self, why: str) -> None:
        self.dead = True
        self.trace.crashes.append(why)
        self.trace.note(self.clock, why)
        raise Crash(why)

    # -- the world ------------------------------------------------------------------

    def _pick(self, sim: Simulator) -> dict[ComponentType, list[Node]]:
        rack = sim.world.racks[sim.world.site.racks[0].core_id]
        pools = {
            ComponentType.COMPUTE: rack.hosts,
            ComponentType.NVSWITCH: rack.switches,
            ComponentType.POWERSHELF: rack.shelves,
        }
        out: dict[ComponentType, list[Node]] = {}
        for ctype, n in self.scenario.picks.items():
            if not n:
                continue
            pool = list(pools[ctype])
            out[ctype] = sorted(self.rng.sample(pool, min(n, len(pool))), key=lambda x: x.id)
        return out

    def _faults(self, targets: dict[ComponentType, list[Node]]) -> FaultPlan:
        s = self.scenario

        def ids(chosen: dict[ComponentType, tuple[int, ...]]) -> frozenset[str]:
            return frozenset(targets[t][i].id for t, idx in chosen.items() for i in idx)

        return dataclasses.replace(
            s.faults, failing=ids(s.failing), flapping=ids(s.flapping), seed=s.seed
        )

    def _initial_power(self, sim: Simulator, targets: dict[ComponentType, list[Node]]) -> None:
        mode = self.scenario.initial_power
        if mode == "on":
            return
        world = sim.world
        nodes = [n for ns in targets.values() for n in ns]
        for node in nodes:
            off = mode == "off" or self.rng.random() < 0.5
            if off and node.kind is not NodeKind.SHELF:
                world.set_power(node, Power.OFF)
                if node.kind is NodeKind.HOST:
                    world.note_desired_power(node, False)

    def _plan(self) -> Plan:
        s = self.scenario
        components = {
            t: tuple(Component(n.id, n.component.name) for n in nodes)
            for t, nodes in self.targets.items()
        }
        return Plan(
            task_uid=TASK_UID,
            operation=s.operation,
            components=components,
            rule=s.rule,
            options=Options(
                target_version=s.target_version,
                sub_targets=s.sub_targets,
                override_readiness=s.override_readiness,
            ),
            adaptive_polling=s.rule_name.startswith("builtin-"),
        )

    async def _expectations(
        self, ctype: ComponentType, keys: Sequence[str]
    ) -> tuple[dict[str, Payload], dict[str, str]]:
        assert self.sim is not None
        out: dict[str, Payload] = {}
        problems: dict[str, str] = {}
        for key in keys:
            node = self.sim.world.nodes.get(key)
            if node is None:
                problems[key] = f"{key} is not in the inventory"
                continue
            src = ExpectationSource(
                key=key,
                type=ctype,
                name=node.component.name,
                serial=node.serial,
                bmc_mac=node.bmc.mac,
                bmc_ip=node.bmc.ip,
                rack_core_id=node.rack.rack.core_id,
                credentials_secret_ref=None,
            )
            out[key] = payload(src, None)
        return out, problems

    # -- the run ---------------------------------------------------------------------

    async def execute_and_check(self, report: object) -> None:
        """Run the scenario, then check the invariants while the simulator
        still holds the world (they read its ledger and state)."""
        from dst.invariants import check

        async def after() -> None:
            report.violations.extend(check(self))  # type: ignore[attr-defined]

        await self.execute(after)

    async def execute(self, after: object = None) -> None:
        s = self.scenario
        site = generate_site(1, seed=s.seed % 97)
        async with Simulator(site, settings=s.settings, clock=self.clock, control_port=None) as sim:
            self.sim = sim
            self.targets = self._pick(sim)
            self._initial_power(sim, self.targets)
            for host in self.targets.get(ComponentType.COMPUTE, []):
                if self.rng.random() < 0.3:
                    sim.world.assign_instance(host)  # a tenant's: reboots go through it
            rack = sim.world.racks[sim.world.site.racks[0].core_id]
            for host in self.rng.sample(rack.hosts, s.in_use):
                sim.world.set_controller_state(host, "Assigned/Ready")  # a tenant's
            if s.firmware_current:
                for nodes in self.targets.values():
                    for node in nodes:
                        sim.world.set_firmware(node, sim.world.desired.get(node.family, {}))
            sim.set_faults(self._faults(self.targets))
            self.plan = self._plan()
            settings = CoreClientSettings(
                target=sim.address,
                tls=None,
                allow_insecure=True,
                timeout=10.0,
                retry=RetryPolicy(max_attempts=3, initial_backoff=0.5, max_backoff=2.0),
            )
            core = await GuardedCore.connect(settings, sleep=self._sleep, rng=random.Random(s.seed))
            assert isinstance(core, GuardedCore)
            core.run = self
            try:
                if self._gate_open(sim):
                    await self._incarnations(core)
            finally:
                await core.close()
            if after is not None:
                await after()  # type: ignore[operator]

    def _gate_open(self, sim: Simulator) -> bool:
        """The readiness gate, as the operator's admission applies it (same
        functions), on Core's machine states; a held Task never starts."""
        s = self.scenario
        rack = sim.world.racks[sim.world.site.racks[0].core_id]
        targets = {t: [n.id for n in nodes] for t, nodes in self.targets.items()}
        types = [t for t, ids in targets.items() if ids]
        hosts = [h.id for h in rack.hosts] if needs_rack_hosts(types) else []
        ids = gated_components(targets, "rack", hosts)
        statuses = {}
        for cid in ids:
            node = sim.world.nodes[cid]
            if node.kind is NodeKind.HOST:
                seen = compute_status(sim.world.machine_state(node))
                statuses[cid] = ComponentStatus(seen.phase.value, seen.blocked)
        verdict = check_readiness(
            ids,
            statuses,
            gated_operation(s.operation.operation_type),
            override=s.override_readiness,
        )
        self.held = not verdict.ready
        return verdict.ready

    async def _sleep(self, seconds: float) -> None:
        # the client's backoff and the legacy manager's spacing pass in fake time
        if seconds > 0:
            self.clock.advance(seconds)

    async def _incarnations(self, core: GuardedCore) -> None:
        manager = self.scenario.compute_manager
        text = f"component_managers: {{compute: {manager}, nvswitch: nico, powershelf: nico}}\n"
        if manager == "nicolegacy":
            text += "manager_configs: {compute: {nicolegacy: {compute_power_delay: 500ms}}}\n"
        config = parse_config(text, "simulation")
        while True:
            self.trace.incarnations += 1
            if self.trace.incarnations > MAX_INCARNATIONS:
                raise Stuck("too many operator restarts")
            self.dead = False
            registry = ManagerRegistry.build(
                config,
                core=core,
                sleep=self._sleep,
                now=lambda: datetime.fromtimestamp(self.clock.now(), UTC),
            )
            actuator = Actuator(registry, expectations=self._expectations)
            status = (
                status_of({"status": self.persisted})
                if self.persisted is not None
                else TaskStatus(
                    applied_rule=AppliedRule(name=self.scenario.rule_name, source="builtin")
                )
            )
            try:
                final = await drive(_SimHost(self, actuator), status)
            except Crash:
                continue
            assert final is not None
            self.final = final
            return


class _SimHost:
    def __init__(self, run: Run, actuator: Actuator) -> None:
        self.run = run
        self.actuator = actuator

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.run.clock.now(), UTC)

    def generation(self) -> int | None:
        return 1

    def plan(self) -> Plan:
        run = self.run
        assert run.plan is not None
        at = run.scenario.cancel_at_turn
        if at is not None and run.trace.turns >= at:
            run.cancelled = True
            return dataclasses.replace(run.plan, cancel=True)
        return run.plan

    async def archive(self, records: list[ComponentRecord]) -> bool:
        # the archive is a row per (stage, type, component): a replay rewrites it
        for r in records:
            self.run.archive[(r.stage, r.component_type, r.id)] = r
        return True

    async def persist(self, decision: Decision) -> bool:
        run = self.run
        run.trace.persists += 1
        n = run.trace.persists
        if run.crash_due("persist", n, after=False):
            run.die(f"crash before persist #{n}")
        # what the apiserver keeps: the status as JSON, read back
        run.persisted = json.loads(json.dumps(status_patch(decision.status)))
        run.persisted = {k: v for k, v in run.persisted.items() if v is not None}
        if run.crash_due("persist", n, after=True):
            run.die(f"crash after persist #{n}")
        return True

    async def observe(self, before: TaskStatus, decision: Decision) -> None:
        run = self.run
        run.trace.turns += 1
        if run.trace.turns > MAX_TURNS:
            raise Stuck(f"no end after {MAX_TURNS} engine turns")
        for ev in decision.events:
            run.trace.note(run.clock, f"event {ev.type} {ev.reason}: {ev.message}")

    async def act(self, calls: list[Call], options: Options) -> list[Outcome]:
        run = self.run
        order = list(range(len(calls)))
        run.rng.shuffle(order)  # an interleaving drawn from the seed
        out: list[Outcome | None] = [None] * len(calls)
        for i in order:
            call = calls[i]
            outcome = await self.actuator.run(call, options)
            run.trace.note(
                run.clock,
                f"{call.kind.value} {call.addressed_type.value} x{len(call.ids)}"
                f"{' recovery' if call.recovery else ''} key={call.key} -> "
                + (outcome.error[:120] if outcome.error else _summary(outcome)),
            )
            out[i] = outcome
        return [o for o in out if o is not None]

    async def wait(self, until: datetime | None) -> None:
        run = self.run
        now = run.clock.now()
        target = until.timestamp() if until is not None else now + 60.0
        run.clock.advance(max(0.0, target - now))
        if run.clock.now() - START > MAX_SIM_SECONDS:
            raise Stuck("the Task ran past the simulation's time bound")


def _summary(outcome: Outcome) -> str:
    states: dict[str, int] = {}
    for r in outcome.results.values():
        label = r.state.value + (f"({r.error[:60]})" if r.error else "")
        states[label] = states.get(label, 0) + 1
    return ", ".join(f"{k}x{v}" for k, v in sorted(states.items()))
