"""A seeded scenario for one deterministic simulation run: the operation and its
rule, the components targeted, the simulated hardware's timings, what goes
wrong (faults per RPC, failing and flapping components, stuck or failing
firmware jobs) and when the operator is killed. The same seed always draws the
same scenario."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

from nicoflow.domain.default_rules import BUILTIN_RULES, builtin_rule, builtin_rule_name
from nicoflow.domain.rules import (
    CYCLES,
    ActionConfig,
    ActionName,
    ActionParameters,
    RetryPolicy,
    RuleDefinition,
    RuleStep,
    rule_problems_for_operation,
)
from nicoflow.domain.types import ComponentType, OperationCode, OperationType
from nicoflow.simulator.faults import ErrorRule, FaultPlan
from nicoflow.simulator.settings import SimSettings

C, NVS, PS = ComponentType.COMPUTE, ComponentType.NVSWITCH, ComponentType.POWERSHELF
Op = OperationCode

# RPCs that change state, and those the engine reads through.
WRITES = (
    "ComponentPowerControl",
    "UpdatePowerOption",
    "AdminPowerControl",
    "UpdateComponentFirmware",
    "SetFirmwareUpdateTimeWindow",
    "MachineSetAutoUpdate",
    "InsertHealthReportOverride",
    "RemoveHealthReportOverride",
    "AddExpectedMachine",
    "AddExpectedSwitch",
    "AddExpectedPowerShelf",
)
READS = (
    "GetComponentInventory",
    "GetPowerOptions",
    "GetComponentFirmwareStatus",
    "FindMachinesByIds",
    "GetDesiredFirmwareVersions",
    "FindExploredEndpointsByIds",
)
# A lost reply: Core applied the call, the caller hears one of these.
LOST_REPLY_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED", "DEADLINE_EXCEEDED")
REFUSAL_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "ABORTED", "DEADLINE_EXCEEDED", "INTERNAL")


@dataclass(frozen=True)
class Crash:
    """The operator dies: at its n-th status write (before or after the
    write lands), or around its n-th Core call (before it is sent, or right
    after it returned: the call did whatever it did and the operator never
    learns of it). With `method`, only calls of that RPC are counted."""

    point: Literal["persist", "call"]
    at: int
    after: bool = True
    method: str | None = None

    def describe(self) -> str:
        when = "after" if self.after else "before"
        what = f"{self.method} call" if self.method else self.point
        return f"crash {when} {what} #{self.at}"


@dataclass(frozen=True)
class Scenario:
    seed: int
    operation: OperationCode
    rule: RuleDefinition
    rule_name: str
    compute_manager: str
    picks: dict[ComponentType, int]
    initial_power: str  # "on", "off" or "mixed"
    settings: SimSettings
    faults: FaultPlan
    crashes: tuple[Crash, ...] = ()
    target_version: str = ""
    sub_targets: tuple[str, ...] = ()
    cancel_at_turn: int | None = None
    # targeted components already run the desired firmware
    firmware_current: bool = False
    # compute trays of the rack a tenant is using, and whether the Task overrides the gate
    in_use: int = 0
    override_readiness: bool = False
    # components (by index among the targeted ones of their type) made to fail
    failing: dict[ComponentType, tuple[int, ...]] = field(default_factory=dict)
    flapping: dict[ComponentType, tuple[int, ...]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "operation": self.operation.value,
            "rule": self.rule_name,
            "compute_manager": self.compute_manager,
            "picks": {t.value: n for t, n in self.picks.items()},
            "initial_power": self.initial_power,
            "command_lag": self.settings.command_lag,
            "power_latency": self.settings.power_latency,
            "errors": [e.to_dict() for e in self.faults.errors],
            "crashes": [c.describe() for c in self.crashes],
            "failing": {t.value: list(i) for t, i in self.failing.items()},
            "flapping": {t.value: list(i) for t, i in self.flapping.items()},
            "stuck_firmware_rate": self.faults.stuck_firmware_rate,
            "firmware_failure_rate": self.faults.firmware_failure_rate,
            "cancel_at_turn": self.cancel_at_turn,
            "sub_targets": list(self.sub_targets),
            "firmware_current": self.firmware_current,
            "in_use": self.in_use,
            "override_readiness": self.override_readiness,
        }

    @property
    def fault_kinds(self) -> set[str]:
        """The kinds of trouble in this scenario (for the corpus's fault mix)."""
        kinds: set[str] = set()
        for e in self.faults.errors:
            role = "write" if e.method in WRITES else "read"
            kinds.add(f"{role}-{'lost-reply' if e.when == 'after' else 'refused'}-{e.code}")
        kinds.update(c.point + "-crash" for c in self.crashes)
        if self.failing:
            kinds.add("failing-component")
        if self.flapping:
            kinds.add("flapping-reads")
        if self.faults.stuck_firmware_rate:
            kinds.add("stuck-firmware")
        if self.faults.firmware_failure_rate:
            kinds.add("failing-firmware")
        if self.settings.command_lag:
            kinds.add("command-lag")
        if self.cancel_at_turn is not None:
            kinds.add("cancel")
        if "dpu" in self.sub_targets:
            kinds.add("dpu-firmware")
        if self.firmware_current:
            kinds.add("firmware-already-current")
        if self.in_use:
            kinds.add("trays-in-use" + ("-overridden" if self.override_readiness else ""))
        return kinds


# --- random rules ---------------------------------------------------------------------

_POWER_OPS = [c for c in OperationCode if c.operation_type is OperationType.POWER_CONTROL]
_UNSUPPORTED = {NVS: {Op.COLD_RESET}, PS: {Op.WARM_RESET, Op.COLD_RESET}}


def _duration(rng: random.Random, choices: tuple[str, ...]) -> str:
    return rng.choice(choices)


def _power_action(rng: random.Random, ctype: ComponentType) -> ActionConfig:
    op = rng.choice([o for o in _POWER_OPS if o not in _UNSUPPORTED.get(ctype, set())])
    params: dict[str, Any] = {"operation": op}
    if op is Op.POWER_OFF and rng.random() < 0.3:
        params["force_after"] = _duration(rng, ("5s", "30s", "2m"))
    return ActionConfig(name=ActionName.POWER_CONTROL, parameters=ActionParameters(**params))


def _verify(rng: random.Random, status: str) -> ActionConfig:
    return ActionConfig(
        name=ActionName.VERIFY_POWER_STATUS,
        timeout=_duration(rng, ("1m", "5m", "10m")),
        poll_interval=_duration(rng, ("1s", "5s", "15s")),
        parameters=ActionParameters.model_validate({"expected_status": status}),
    )


def _sleep(rng: random.Random) -> ActionConfig:
    return ActionConfig(
        name=ActionName.SLEEP,
        parameters=ActionParameters(duration=_duration(rng, ("1s", "10s", "30s"))),
    )


def _after_power(op: OperationCode) -> str | None:
    if op in (Op.POWER_OFF, Op.FORCE_POWER_OFF):
        return "off"
    if op in (Op.POWER_ON, Op.FORCE_POWER_ON):
        return "on"
    return None


def _power_step(rng: random.Random, ctype: ComponentType, stage: int) -> RuleStep:
    main = _power_action(rng, ctype)
    post: list[ActionConfig] = []
    assert main.params.operation is not None
    expect = _after_power(main.params.operation)
    if rng.random() < 0.3:
        post.append(_sleep(rng))
    if expect is not None and rng.random() < 0.8:
        post.append(_verify(rng, expect))
    elif expect is None and rng.random() < 0.5:
        post.append(_verify(rng, "on"))
    pre: list[ActionConfig] = []
    if rng.random() < 0.15:
        pre.append(ActionConfig(name=ActionName.GET_POWER_STATUS))
    return RuleStep(
        component_type=ctype,
        stage=stage,
        max_parallel=rng.choice((0, 0, 1, 2)),
        timeout=_duration(rng, ("5m", "20m", "1h")),
        retry=RetryPolicy(
            max_attempts=rng.choice((1, 2, 3)),
            initial_interval=_duration(rng, ("1s", "5s", "30s")),
            backoff_coefficient=rng.choice((1.0, 2.0)),
        ),
        pre_operation=pre,
        main_operation=main,
        post_operation=post,
    )


def _firmware_step(rng: random.Random, ctype: ComponentType, stage: int) -> RuleStep:
    return RuleStep(
        component_type=ctype,
        stage=stage,
        max_parallel=rng.choice((0, 0, 1, 2)),
        timeout=_duration(rng, ("30m", "1h")),
        retry=RetryPolicy(max_attempts=rng.choice((1, 2, 3)), initial_interval="10s"),
        main_operation=ActionConfig(
            name=ActionName.FIRMWARE_CONTROL,
            timeout=_duration(rng, ("10m", "30m")),
            poll_interval=_duration(rng, ("10s", "1m")),
        ),
    )


def _verify_cycles(steps: list[RuleStep]) -> list[RuleStep]:
    """Rules refuse a power command after an unverified restart or reset of the
    same type (CYCLES): such a restart step gets its verification (no draw
    from the generator, so other seeds keep their rules)."""
    out = []
    for i, step in enumerate(steps):
        op = step.main_operation.params.operation
        reach = None if step.component_type is PS else step.component_type  # shelves: all
        later = any(
            reach in (None, s.component_type)
            and s.stage > step.stage
            and s.main_operation.name is ActionName.POWER_CONTROL
            for s in steps[i + 1 :]
        )
        verified = any(a.name is ActionName.VERIFY_POWER_STATUS for a in step.post_operation)
        if op in CYCLES and later and not verified:
            check = ActionConfig(
                name=ActionName.VERIFY_POWER_STATUS,
                timeout="5m",
                poll_interval="5s",
                parameters=ActionParameters.model_validate({"expected_status": "on"}),
            )
            step = step.model_copy(update={"post_operation": [*step.post_operation, check]})
        out.append(step)
    return out


def random_rule(rng: random.Random, operation: OperationCode) -> RuleDefinition:
    """A valid rule for `operation`: power steps for power operations, firmware
    steps (optionally between power steps) for firmware operations."""
    types = [C, NVS, PS]
    steps: list[RuleStep] = []
    stage = 1
    for _ in range(rng.randint(1, 4)):
        chosen = rng.sample(types, rng.randint(1, 3))
        for ctype in chosen:
            firmware = operation.operation_type is OperationType.FIRMWARE_CONTROL
            if firmware and ctype is not PS and rng.random() < 0.7:
                steps.append(_firmware_step(rng, ctype, stage))
            else:
                steps.append(_power_step(rng, ctype, stage))
        stage += rng.choice((1, 1, 2))
    rule = RuleDefinition(steps=_verify_cycles(steps))
    assert not rule_problems_for_operation(rule, operation), rule_problems_for_operation(
        rule, operation
    )
    return rule


# --- faults ----------------------------------------------------------------------------


def _error_rules(rng: random.Random) -> tuple[ErrorRule, ...]:
    rules: list[ErrorRule] = []
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        write = rng.random() < 0.7
        method = rng.choice(WRITES if write else READS)
        after = write and rng.random() < 0.6
        code = rng.choice(LOST_REPLY_CODES if after else REFUSAL_CODES)
        rules.append(
            ErrorRule(
                method=method,
                rate=rng.choice((0.1, 0.3, 0.6, 1.0)),
                code=code,
                message="injected by the simulation",
                when="after" if after else "before",
                times=rng.choice((1, 2, 3, 5)),
            )
        )
    return tuple(rules)


def _indices(
    rng: random.Random, picks: dict[ComponentType, int], p: float
) -> dict[ComponentType, tuple[int, ...]]:
    out: dict[ComponentType, tuple[int, ...]] = {}
    for ctype, n in picks.items():
        if n and rng.random() < p:
            out[ctype] = (rng.randrange(n),)
    return out


def draw(seed: int) -> Scenario:
    rng = random.Random(seed)
    operation = rng.choice(list(BUILTIN_RULES))
    # bring-up and ingest have one meaningful shape: their built-in rules
    if operation in (Op.BRING_UP, Op.INGEST) or rng.random() < 0.6:
        rule, rule_name = builtin_rule(operation), builtin_rule_name(operation)
    else:
        rule, rule_name = random_rule(rng, operation), f"random-{seed}"
    picks = {C: rng.randint(1, 4), NVS: rng.randint(1, 3), PS: rng.randint(1, 3)}
    firmware = operation.operation_type is OperationType.FIRMWARE_CONTROL
    sub_targets: tuple[str, ...] = ()
    if firmware and rng.random() < 0.3:
        # DPU updates through Core's reprovisioning; only compute trays have DPUs
        sub_targets = rng.choice((("dpu",), ("dpu", "bmc")))
        picks = {C: picks[C], NVS: 0, PS: 0}
    settings = SimSettings(
        power_latency=rng.choice((0.0, 2.0, 10.0, 30.0)),
        force_power_latency=rng.choice((0.0, 0.0, 1.0)),
        command_lag=rng.choice((0.0, 0.0, 1.0, 5.0, 15.0)),
        firmware_latency=rng.choice((10.0, 60.0, 300.0)),
        ingestion_latency=5.0,
        discovery_latency=2.0,
        dpu_reprovision_latency=30.0,
        power_manager_delay=rng.choice((None, 30.0)),
    )
    crashes: list[Crash] = []
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        point: Literal["persist", "call"] = rng.choice(("persist", "call"))
        crashes.append(Crash(point, rng.randint(1, 30), after=rng.random() < 0.7))
    faults = FaultPlan(
        errors=_error_rules(rng),
        stuck_firmware_rate=rng.choice((0.0, 0.0, 0.0, 0.2)),
        firmware_failure_rate=rng.choice((0.0, 0.0, 0.2, 0.5)),
        flap_rate=0.3,
        seed=seed,
    )
    return Scenario(
        seed=seed,
        operation=operation,
        rule=rule,
        rule_name=rule_name,
        compute_manager=rng.choice(("nicolegacy", "nico")),
        picks=picks,
        initial_power=rng.choice(("on", "on", "off", "mixed")),
        settings=settings,
        faults=faults,
        crashes=tuple(crashes),
        target_version="",
        sub_targets=sub_targets,
        firmware_current=firmware and rng.random() < 0.2,
        in_use=rng.choice((0, 0, 0, 0, 0, 0, 0, 0, 1, 2)),
        override_readiness=rng.random() < 0.3,
        cancel_at_turn=rng.randint(3, 60) if rng.random() < 0.08 else None,
        failing=_indices(rng, picks, 0.1),
        flapping=_indices(rng, picks, 0.05),
    )
