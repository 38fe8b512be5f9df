"""What must hold after every simulated run, judged from the simulator's
physical ledger (commands as delivered to each component, whatever request id
they came under) and the Task's final status.

- Each component receives only commands its rule plans, in the rule's order,
  and none twice: a command counts once per planned action (slot); a second
  delivery in the same slot is allowed only where Core reported the earlier
  one failed (a firmware job that failed: Core refusing a command means it was
  never counted).
- The Task ends (Succeeded, Failed or Cancelled) within the simulation bounds.
- A Task that succeeded left its components in the state the rule ends in,
  where the rule verifies that state.
- A Task that failed names the component and the cause.
- No maintenance override of Flow's power path stays on a tray.
- Every component of every step that ran has its result, in the Task's status
  or in the task archive, and the two agree with the step's counts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dst.harness import Run
from nicoflow.core.managers.dpu_reprovision import HOST_UPDATE_SOURCE
from nicoflow.core.managers.nicolegacy_compute import POWER_OVERRIDE_SOURCE
from nicoflow.domain.rules import ActionName, RuleStep, effective_power_operation
from nicoflow.domain.types import ComponentType, OperationCode, TaskPhase
from nicoflow.engine.steps import actions_of
from nicoflow.simulator.ledger import Delivery
from nicoflow.simulator.power import Power

Op = OperationCode
POWER_COMMAND = {
    Op.POWER_ON: "on",
    Op.FORCE_POWER_ON: "on",
    Op.POWER_OFF: "graceful_shutdown",
    Op.FORCE_POWER_OFF: "force_off",
    Op.RESTART: "graceful_restart",
    Op.WARM_RESET: "graceful_restart",
    Op.FORCE_RESTART: "force_restart",
    Op.COLD_RESET: "ac_powercycle",
}
FINAL_POWER = {
    "on": Power.ON,
    "graceful_shutdown": Power.OFF,
    "force_off": Power.OFF,
    "graceful_restart": Power.ON,
    "force_restart": Power.ON,
    "ac_powercycle": Power.ON,
}
_SLOT = re.compile(r"\.s(\d+)\.([a-z]+)\.b\d+\.a(\d+)\.t\d+")

Slot = tuple[int, int]  # (stage, action index within the step)


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def _steps(run: Run, ctype: ComponentType) -> dict[int, RuleStep]:
    return {s.stage: s for s in run.scenario.rule.steps if s.component_type is ctype}


def planned(run: Run, ctype: ComponentType) -> dict[Slot, frozenset[str]]:
    """Physical commands each planned action may deliver to a component of `ctype`."""
    out: dict[Slot, frozenset[str]] = {}
    legacy = ctype is ComponentType.COMPUTE and run.scenario.compute_manager == "nicolegacy"
    for stage, step in _steps(run, ctype).items():
        main = step.main_operation
        escalates = (
            effective_power_operation(main, run.scenario.operation) is Op.POWER_OFF
            and main.params.force_after is not None
        )
        for index, action in enumerate(actions_of(step)):
            allowed: set[str] = set()
            if (
                escalates
                and action.name is ActionName.VERIFY_POWER_STATUS
                and action.params.expected_status == "off"
            ):
                # graceful→forced escalation goes out while the verify waits
                allowed.add("force_off")
            if action.name is ActionName.POWER_CONTROL:
                op = effective_power_operation(action, run.scenario.operation)
                if op is not None:
                    allowed.add(POWER_COMMAND[op])
                    if legacy:  # the power manager's desired state goes first
                        off = op in (Op.POWER_OFF, Op.FORCE_POWER_OFF)
                        allowed.add("desired_off" if off else "desired_on")
            elif action.name is ActionName.FIRMWARE_CONTROL:
                if legacy:  # Core updates the host itself inside the window
                    allowed |= {"set_firmware_window", "autoupdate_enable"}
                else:
                    allowed.add("update_firmware")
                if "dpu" in run.scenario.sub_targets and ctype is ComponentType.COMPUTE:
                    allowed |= {"dpu_reprovision_set", "instance_power_reset", "ac_powercycle"}
            elif action.name is ActionName.BRING_UP_CONTROL:
                allowed.add("allow_ingestion")
            out[(stage, index)] = frozenset(allowed)
    return out


def slot_of(d: Delivery) -> tuple[Slot, str] | None:
    m = _SLOT.search(d.request_id or "")
    if m is None:
        return None
    return (int(m.group(1)), int(m.group(3))), m.group(2)


def _failed_between(run: Run, cid: str, earlier: Delivery, later: Delivery) -> bool:
    """Core reported the earlier command failed: a firmware job that started
    (from it) between the two deliveries failed; a retry is then legitimate."""
    assert run.sim is not None
    jobs = run.sim.world.jobs_started.get(cid, [])
    return any(fails and earlier.time <= at <= later.time for at, fails in jobs)


def check_deliveries(run: Run) -> list[Violation]:
    assert run.sim is not None
    found: list[Violation] = []
    delivered = run.sim.ledger.delivered()
    for ctype, nodes in run.targets.items():
        plan = planned(run, ctype)
        # a host's DPUs get its DPU commands: judged by the host's plan
        for node in [n for host in nodes for n in (host, *host.dpus)]:
            last: Slot = (0, 0)
            seen: dict[tuple[Slot, str], Delivery] = {}
            for d in delivered.get(node.id, []):
                if not d.counted:
                    continue
                where = slot_of(d)
                label = f"{node.component.name} got {d.command} (seq {d.seq}, {d.request_id})"
                if where is None or where[1] != ctype.value:
                    found.append(Violation("unplanned", label))
                    continue
                slot = where[0]
                if d.command not in plan.get(slot, frozenset()):
                    found.append(Violation("unplanned", f"{label}: not what stage/action plans"))
                    continue
                if slot < last:
                    found.append(Violation("out-of-order", label))
                last = max(last, slot)
                earlier = seen.get((slot, d.command))
                if earlier is not None and not _failed_between(run, node.id, earlier, d):
                    found.append(
                        Violation(
                            "repeated",
                            f"{label}; already delivered as seq {earlier.seq} "
                            f"({earlier.request_id}, reply {earlier.reply})",
                        )
                    )
                seen[(slot, d.command)] = d
    return found


def _last_power(run: Run, ctype: ComponentType) -> str | None:
    """The last power command the rule sends to `ctype`, when the rule then
    verifies the power state: without a verification, success only means
    Core accepted the commands."""
    last = None
    verified = False
    for _, step in sorted(_steps(run, ctype).items()):
        for action in actions_of(step):
            op = effective_power_operation(action, run.scenario.operation)
            if action.name is ActionName.POWER_CONTROL and op is not None:
                last, verified = POWER_COMMAND[op], False
            elif action.name is ActionName.VERIFY_POWER_STATUS:
                verified = True
            elif action.name is ActionName.FIRMWARE_CONTROL and "dpu" in run.scenario.sub_targets:
                last = None  # a DPU update reboots the host: its end state is Core's
    return last if verified else None


def check_gates(run: Run) -> list[Violation]:
    """A Task the readiness gate held sent nothing; one it let through did so
    only with no tray in use where it matters, or with the override."""
    assert run.sim is not None
    world = run.sim.world
    rack = world.racks[world.site.racks[0].core_id]
    in_use = [h for h in rack.hosts if world.machine_state(h).startswith("Assigned")]
    if run.held:
        sent = [d for ds in run.sim.ledger.delivered().values() for d in ds if d.counted]
        return [
            Violation("gate-skipped", f"held, yet {d.command} reached {d.component_id}")
            for d in sent
        ]
    types = {t for t, nodes in run.targets.items() if nodes}
    behind = bool(types & {ComponentType.NVSWITCH, ComponentType.POWERSHELF})
    targeted = {n.id for n in run.targets.get(ComponentType.COMPUTE, [])}
    exposed = [h for h in in_use if behind or h.id in targeted]
    if exposed and not run.scenario.override_readiness:
        names = ", ".join(h.component.name for h in exposed)
        return [Violation("gate-skipped", f"started with {names} in use and no override")]
    return []


def check_outcome(run: Run) -> list[Violation]:
    assert run.sim is not None
    found: list[Violation] = []
    final = run.final
    if run.held:
        return found
    if final is None or not final.phase.finished:
        return [Violation("not-finished", f"the Task ended the run as {final and final.phase}")]
    world = run.sim.world
    run.clock.advance(3600.0)  # let every transition settle
    if final.phase is TaskPhase.SUCCEEDED:
        # a component whose reads lie can pass a verification it should not:
        # Flow can only go by what Core reports
        flapping = run.sim.faults.flapping
        for ctype, nodes in run.targets.items():
            last = _last_power(run, ctype)
            if last is None:
                continue
            want = FINAL_POWER[last]
            for node in nodes:
                if node.id in flapping:
                    continue
                got = world.power(node)
                if got is not want:
                    found.append(
                        Violation(
                            "wrong-final-state",
                            f"{node.component.name} is {got.value}, the rule ends in {want.value}",
                        )
                    )
    if final.phase is TaskPhase.FAILED:
        text = final.message + " " + " ".join(s.error for s in final.stages)
        names = [n.component.name for ns in run.targets.values() for n in ns]
        ids = [n.id for ns in run.targets.values() for n in ns]
        reason = next((c.reason for c in final.conditions if c.type == "Failed"), "")
        if reason != "NothingToDo" and not any(x in text for x in names + ids):
            found.append(Violation("unnamed-failure", f"{final.message!r} names no component"))
    waiting = {d.id for d, _ in world.waiting_for_reprovisioning()}
    for node in run.targets.get(ComponentType.COMPUTE, []):
        if POWER_OVERRIDE_SOURCE in node.overrides:
            found.append(
                Violation("override-left", f"{node.component.name} keeps {POWER_OVERRIDE_SOURCE}")
            )
        busy = any(d.id in waiting for d in node.dpus)
        if HOST_UPDATE_SOURCE in node.overrides and not busy:
            # the report keeps tenants off the host: only while its DPUs update
            found.append(
                Violation("override-left", f"{node.component.name} keeps {HOST_UPDATE_SOURCE}")
            )
    return found


def check_results(run: Run) -> list[Violation]:
    """Nothing the Task did is lost by keeping its status small."""
    found: list[Violation] = []
    final = run.final
    if final is None:
        return found
    for stage in final.stages:
        for step in stage.steps:
            if not step.phase.finished or step.started_at is None:
                continue
            where = f"stage {stage.number} {step.component_type.value}"
            kept = {c.id: c for c in step.components}
            if not step.archived:
                results = list(kept.values())
            else:
                archived = {
                    cid: r
                    for (n, t, cid), r in run.archive.items()
                    if n == stage.number and t is step.component_type
                }
                results = list(archived.values())
                missing = set(kept) - set(archived)
                if missing or any(c.phase.value != "Failed" for c in kept.values()):
                    found.append(
                        Violation("results-lost", f"{where}: status keeps {sorted(kept)} as well")
                    )
            if len(results) != step.total:
                found.append(
                    Violation("results-lost", f"{where}: {len(results)} of {step.total} results")
                )
            ok = sum(r.phase.value == "Succeeded" for r in results)
            if ok != step.succeeded:
                found.append(
                    Violation("results-lost", f"{where}: {ok} succeeded, counted {step.succeeded}")
                )
    return found


def check(run: Run) -> list[Violation]:
    return check_gates(run) + check_deliveries(run) + check_outcome(run) + check_results(run)
