"""Operation rules: the stages of steps an operation runs through on one rack.

A rule definition (version "v1") lists steps. Steps with the same stage number
run in parallel, stages run in ascending order, and each step drives one
component type through pre → main → post actions. Field names are snake_case
in Python and in the original's rule JSON, camelCase in CRDs; both spellings
are accepted on input."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from nicoflow.domain.durations import Duration, OptionalDuration, parse_duration, zero_is_unset
from nicoflow.domain.types import ComponentType, OperationCode, OperationType

RULE_VERSION = "v1"
MAX_STEPS = 64
MAX_STAGE = 64
MAX_ACTIONS_PER_PART = 8


class ActionName(StrEnum):
    SLEEP = "Sleep"
    POWER_CONTROL = "PowerControl"
    VERIFY_POWER_STATUS = "VerifyPowerStatus"
    VERIFY_REACHABILITY = "VerifyReachability"
    GET_POWER_STATUS = "GetPowerStatus"
    FIRMWARE_CONTROL = "FirmwareControl"
    BRING_UP_CONTROL = "BringUpControl"
    WAIT_BRING_UP = "WaitBringUp"
    INJECT_EXPECTATION = "InjectExpectation"
    VERIFY_FIRMWARE_CONSISTENCY = "VerifyFirmwareConsistency"


class ActionPart(StrEnum):
    """Where an action sits inside its step."""

    PRE = "pre"
    MAIN = "main"
    POST = "post"


class RuleSource(StrEnum):
    """How a Task's rule was chosen, strongest first."""

    EXPLICIT = "explicit"  # the TaskSpec named it (ruleRef)
    SELECTOR = "selector"  # an OperationRule whose rackSelector matched the rack
    DEFAULT = "default"  # the OperationRule marked isDefault for the operation
    BUILTIN = "builtin"  # the built-in default shipped with Flow


POWER_CODES: tuple[OperationCode, ...] = tuple(
    c for c in OperationCode if c.operation_type is OperationType.POWER_CONTROL
)

# Actions that wait for a condition by polling; only they take poll_interval.
POLLING_ACTIONS = frozenset(
    {
        ActionName.VERIFY_POWER_STATUS,
        ActionName.VERIFY_REACHABILITY,
        ActionName.FIRMWARE_CONTROL,
        ActionName.WAIT_BRING_UP,
    }
)

# (timeout, poll_interval) an action uses when the rule leaves them out.
ACTION_DEFAULTS: dict[ActionName, tuple[str | None, str | None]] = {
    ActionName.SLEEP: (None, None),
    ActionName.POWER_CONTROL: (None, None),
    ActionName.VERIFY_POWER_STATUS: ("5m", "10s"),
    ActionName.VERIFY_REACHABILITY: ("5m", "10s"),
    ActionName.GET_POWER_STATUS: ("1m", None),
    ActionName.FIRMWARE_CONTROL: ("30m", "2m"),
    ActionName.BRING_UP_CONTROL: (None, None),
    ActionName.WAIT_BRING_UP: ("15m", "30s"),
    ActionName.INJECT_EXPECTATION: (None, None),
    ActionName.VERIFY_FIRMWARE_CONSISTENCY: (None, None),
}

# parameters each action reads (python names); anything else is a mistake worth reporting
ACTION_PARAMETERS: dict[ActionName, frozenset[str]] = {
    ActionName.SLEEP: frozenset({"duration"}),
    ActionName.POWER_CONTROL: frozenset({"operation", "force_after"}),
    ActionName.VERIFY_POWER_STATUS: frozenset({"expected_status"}),
    ActionName.VERIFY_REACHABILITY: frozenset({"component_types", "require_all"}),
    ActionName.GET_POWER_STATUS: frozenset(),
    ActionName.FIRMWARE_CONTROL: frozenset({"poll_timeout"}),
    ActionName.BRING_UP_CONTROL: frozenset(),
    ActionName.WAIT_BRING_UP: frozenset(),
    ActionName.INJECT_EXPECTATION: frozenset(),
    ActionName.VERIFY_FIRMWARE_CONSISTENCY: frozenset(),
}

DEFAULT_STEP_TIMEOUT = "20m"


def _parse_action_name(value: object) -> object:
    if isinstance(value, ActionName):
        return value
    if isinstance(value, str):
        for member in ActionName:
            if member.value.lower() == value.strip().lower():
                return member
    allowed = ", ".join(m.value for m in ActionName)
    # pre-formatted: the template syntax of PydanticCustomError has no repr conversion
    raise PydanticCustomError(
        "unknown_action", f"unknown action {value!r}; allowed actions: {allowed}"
    )


def _parse_component_type(value: object) -> object:
    if isinstance(value, str) and not isinstance(value, ComponentType):
        try:
            return ComponentType.parse(value)
        except ValueError as exc:
            raise PydanticCustomError("unknown_component_type", str(exc)) from None
    return value


def _check_power_code(value: OperationCode) -> OperationCode:
    if value not in POWER_CODES:
        allowed = ", ".join(POWER_CODES)
        raise ValueError(
            f"PowerControl operation {value.value!r} is not a power operation; "
            f"use one of: {allowed}"
        )
    return value


ActionNameField = Annotated[ActionName, BeforeValidator(_parse_action_name)]
ComponentTypeField = Annotated[ComponentType, BeforeValidator(_parse_component_type)]
PowerCode = Annotated[
    OperationCode,
    AfterValidator(_check_power_code),
    WithJsonSchema({"type": "string", "enum": [c.value for c in POWER_CODES]}),
]


class _RuleModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class ActionParameters(_RuleModel):
    """Action-specific settings. Each action reads only its own; others are rejected."""

    operation: PowerCode | None = Field(
        None,
        description="PowerControl: the power operation to send. Without it the step sends the "
        "Task's own operation, which only a power operation rule can do.",
    )
    force_after: OptionalDuration = Field(
        None,
        description="PowerControl with power_off: graceful→forced escalation. When the "
        "components are not off this long after the graceful shutdown, send force_power_off "
        "to the ones still on. Unset: never escalate.",
    )
    expected_status: Literal["on", "off"] | None = Field(
        None, description="VerifyPowerStatus: the power state every component must report."
    )
    duration: Duration | None = Field(None, description="Sleep: how long to wait.")
    component_types: list[ComponentTypeField] | None = Field(
        None,
        max_length=6,
        description="VerifyReachability: the component types whose BMCs must answer.",
    )
    require_all: bool | None = Field(
        None,
        description="VerifyReachability: every targeted component must answer, not just the "
        "status call succeed.",
    )
    poll_timeout: OptionalDuration = Field(
        None,
        description="FirmwareControl: how long to wait for the update (same as the action's "
        "timeout; kept for rules written for the original service).",
    )


class ActionConfig(_RuleModel):
    """One action of a step."""

    name: ActionNameField = Field(description="The action to run.")
    timeout: OptionalDuration = Field(
        None, description="How long the action may take; each action has its own default."
    )
    poll_interval: OptionalDuration = Field(
        None, description="Polling actions: time between status checks."
    )
    parameters: ActionParameters | None = None

    @property
    def params(self) -> ActionParameters:
        return self.parameters or _NO_PARAMETERS

    @model_validator(mode="after")
    def _check_parameters(self) -> ActionConfig:
        problems = action_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def timeout_seconds(self) -> float | None:
        """Effective time budget of the action; None = bounded only by the step timeout."""
        text = self.timeout or self.params.poll_timeout or ACTION_DEFAULTS[self.name][0]
        return parse_duration(text) if text else None

    def poll_interval_seconds(self) -> float | None:
        text = self.poll_interval or ACTION_DEFAULTS[self.name][1]
        return parse_duration(text) if text else None


_NO_PARAMETERS = ActionParameters()


def _camel(name: str) -> str:
    return to_camel(name)


def action_problems(action: ActionConfig) -> list[str]:
    """What is wrong with one action on its own (not knowing the rule's operation)."""
    problems: list[str] = []
    name = action.name
    params = action.params
    given = {field for field, value in params if value is not None}
    for extra in sorted(given - ACTION_PARAMETERS[name]):
        problems.append(f"{name.value} does not take parameters.{_camel(extra)}")
    if name is ActionName.SLEEP:
        if params.duration is None:
            problems.append("Sleep needs parameters.duration, e.g. duration: 10s")
        if action.timeout is not None:
            problems.append("Sleep takes parameters.duration, not timeout")
    if name is ActionName.VERIFY_POWER_STATUS and params.expected_status is None:
        problems.append("VerifyPowerStatus needs parameters.expectedStatus: on or off")
    if name is ActionName.VERIFY_REACHABILITY and not params.component_types:
        problems.append(
            "VerifyReachability needs parameters.componentTypes, e.g. [compute, nvswitch]"
        )
    if action.poll_interval is not None and name not in POLLING_ACTIONS:
        problems.append(f"{name.value} does not poll; remove pollInterval")
    if (
        params.force_after is not None
        and params.operation is not None
        and params.operation is not OperationCode.POWER_OFF
    ):
        problems.append(
            "parameters.forceAfter escalates a graceful power_off; "
            f"it cannot be used with operation {params.operation.value}"
        )
    timeout = action.timeout_seconds()
    interval = action.poll_interval_seconds()
    if name in POLLING_ACTIONS and timeout is not None and interval is not None:
        if interval <= 0:
            problems.append(f"{name.value} pollInterval must be greater than 0")
        elif interval > timeout:
            problems.append(f"{name.value} pollInterval is longer than its timeout")
    if timeout is not None and timeout <= 0:
        problems.append(f"{name.value} timeout must be greater than 0")
    return problems


def _default_interval(value: object) -> object:
    # the original's engine used 1s for an initial interval of 0 ("0s")
    return "1s" if zero_is_unset(value) is None else value


class RetryPolicy(_RuleModel):
    """How a failed action of the step is retried; the delay grows by the coefficient."""

    max_attempts: int = Field(3, ge=1, le=20, description="Attempts in total, the first included.")
    initial_interval: Annotated[Duration, BeforeValidator(_default_interval)] = Field(
        "1s", description="Delay before the second attempt; 0 means the default, 1s."
    )
    backoff_coefficient: float = Field(
        2.0, ge=1.0, le=10.0, description="Factor applied to the delay after each attempt."
    )
    max_interval: Duration = Field("1m", description="Upper bound of the delay; 0 = no bound.")

    @model_validator(mode="after")
    def _check(self) -> RetryPolicy:
        if parse_duration(self.initial_interval) <= 0:
            raise ValueError("retry.initialInterval must be greater than 0")
        return self

    def delay_before_attempt(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (2 = first retry)."""
        if attempt <= 1:
            return 0.0
        delay = parse_duration(self.initial_interval) * self.backoff_coefficient ** (attempt - 2)
        cap = parse_duration(self.max_interval)
        return min(delay, cap) if cap > 0 else delay


DEFAULT_RETRY = RetryPolicy()


class RuleStep(_RuleModel):
    """One component type's work within a stage."""

    component_type: ComponentTypeField = Field(description="The component type this step drives.")
    stage: int = Field(ge=1, le=MAX_STAGE, description="Stages run in ascending order.")
    max_parallel: int = Field(
        0,
        ge=0,
        le=1024,
        description="Components commanded at once; 0 = all together, 1 = one by one.",
    )
    timeout: OptionalDuration = Field(
        None, description=f"Budget of one attempt of the step (default {DEFAULT_STEP_TIMEOUT})."
    )
    retry: RetryPolicy | None = Field(None, description="Default: 3 attempts, 1s, x2, up to 1m.")
    pre_operation: list[ActionConfig] = Field(
        default_factory=list, max_length=MAX_ACTIONS_PER_PART, description="Actions run first."
    )
    main_operation: ActionConfig = Field(description="The step's main action.")
    post_operation: list[ActionConfig] = Field(
        default_factory=list,
        max_length=MAX_ACTIONS_PER_PART,
        description="Actions run after the main action, typically verifications.",
    )
    delay_after: OptionalDuration = Field(
        None, description="Deprecated: sleep after the step; prefer a Sleep post action."
    )

    def actions(self) -> Iterator[tuple[ActionPart, int, ActionConfig]]:
        """Actions in execution order with their part and index inside the part."""
        for i, action in enumerate(self.pre_operation):
            yield ActionPart.PRE, i, action
        yield ActionPart.MAIN, 0, self.main_operation
        for i, action in enumerate(self.post_operation):
            yield ActionPart.POST, i, action

    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout or DEFAULT_STEP_TIMEOUT)

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.retry or DEFAULT_RETRY


def _parse_version(value: object) -> object:
    if value in (None, ""):
        return RULE_VERSION
    if value != RULE_VERSION:
        raise PydanticCustomError(
            "unsupported_version",
            f"unsupported rule version {value!r}; this release reads version v1",
        )
    return value


class RuleDefinition(_RuleModel):
    """Stages of steps that carry out one operation on one rack."""

    version: Annotated[Literal["v1"], BeforeValidator(_parse_version)] = Field(
        "v1", description="Schema version of the definition."
    )
    steps: list[RuleStep] = Field(
        min_length=1, max_length=MAX_STEPS, description="The steps; same stage = in parallel."
    )

    @model_validator(mode="after")
    def _unique_type_per_stage(self) -> RuleDefinition:
        seen: set[tuple[int, ComponentType]] = set()
        for step in self.steps:
            key = (step.stage, step.component_type)
            if key in seen:
                raise ValueError(
                    f"stage {step.stage} has two steps for component type "
                    f"{step.component_type.value}; steps of one stage run in parallel, so give "
                    "each component type one step per stage"
                )
            seen.add(key)
        return self

    def stages(self) -> list[tuple[int, list[RuleStep]]]:
        """(stage number, steps in rule order), ascending by stage number."""
        grouped: dict[int, list[RuleStep]] = {}
        for step in self.steps:
            grouped.setdefault(step.stage, []).append(step)
        return sorted(grouped.items())

    def component_types(self) -> frozenset[ComponentType]:
        return frozenset(s.component_type for s in self.steps)

    def to_crd(self) -> dict[str, Any]:
        """camelCase form for CRDs."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_json(self) -> str:
        """snake_case JSON, the original service's rule_definition_json."""
        return json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True)


class RuleError(ValueError):
    """A rule definition that cannot be used, with one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid rule: " + "; ".join(problems))


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + _camel(part)
    return text


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One readable line per pydantic error: 'steps[0].mainOperation: <message>'."""
    lines = []
    for err in exc.errors():
        message = str(err["msg"]).removeprefix("Value error, ")
        where = _location(tuple(err["loc"]))
        lines.append(f"{where}: {message}" if where else message)
    return lines


def parse_rule_definition(data: Mapping[str, Any] | str) -> RuleDefinition:
    """Read a definition from a mapping, or from JSON / YAML text; RuleError when invalid."""
    if isinstance(data, str):
        try:
            loaded = yaml.safe_load(data)  # YAML is a superset of JSON
        except yaml.YAMLError as exc:
            raise RuleError([f"not valid JSON or YAML: {exc}"]) from None
        if not isinstance(loaded, dict):
            raise RuleError(["a rule definition must be an object with version and steps"])
        data = loaded
    try:
        return RuleDefinition.model_validate(dict(data))
    except ValidationError as exc:
        raise RuleError(describe_validation_error(exc)) from None


def effective_power_operation(action: ActionConfig, code: OperationCode) -> OperationCode | None:
    """The power operation a PowerControl action sends within a rule for `code`."""
    if action.name is not ActionName.POWER_CONTROL:
        return None
    if action.params.operation is not None:
        return action.params.operation
    return code if code.operation_type is OperationType.POWER_CONTROL else None


def rule_problems_for_operation(definition: RuleDefinition, code: OperationCode) -> list[str]:
    """What stops `definition` from serving operation `code` (empty when it can)."""
    problems: list[str] = []
    for step in definition.steps:
        where = f"stage {step.stage} {step.component_type.value}"
        for part, index, action in step.actions():
            label = f"{where} {part.value}[{index}] {action.name.value}"
            if action.name is ActionName.POWER_CONTROL:
                op = effective_power_operation(action, code)
                if op is None:
                    problems.append(
                        f"{label}: a {code.value} rule must name parameters.operation "
                        "(only power operation rules send the Task's own operation)"
                    )
                elif action.params.force_after is not None and op is not OperationCode.POWER_OFF:
                    problems.append(
                        f"{label}: parameters.forceAfter only escalates power_off, not {op.value}"
                    )
            if action.name is ActionName.FIRMWARE_CONTROL and code.operation_type is (
                OperationType.POWER_CONTROL
            ):
                problems.append(f"{label}: firmware updates do not belong in a {code.value} rule")
    return problems + _unverified_cycles(definition, code)


# Power operations that go off and come back on by themselves: a read taken
# while one is under way may still show "on" before the BMC has begun, so
# nothing but a verification tells that it is over.
CYCLES = frozenset(
    {
        OperationCode.RESTART,
        OperationCode.FORCE_RESTART,
        OperationCode.WARM_RESET,
        OperationCode.COLD_RESET,
    }
)


def _unverified_cycles(definition: RuleDefinition, code: OperationCode) -> list[str]:
    """A restart or reset (CYCLES) must be verified in its own step when a later
    stage sends a power command to the same component type, or to any type
    after the power shelves' cycle (they feed the whole rack): else the cycle's
    power-on could land after that command and undo it. The CRD's CEL rule
    (api.rule_schema.cycles_verified) says the same."""
    problems: list[str] = []
    for s in definition.steps:
        cycles = [
            op
            for _, _, a in s.actions()
            if (op := effective_power_operation(a, code)) is not None and op in CYCLES
        ]
        verified = any(a.name is ActionName.VERIFY_POWER_STATUS for a in s.post_operation)
        if not cycles or verified:
            continue
        for t in definition.steps:
            reached = t.component_type is s.component_type or (
                s.component_type is ComponentType.POWERSHELF
            )
            sends = any(a.name is ActionName.POWER_CONTROL for _, _, a in t.actions())
            if t.stage > s.stage and reached and sends:
                problems.append(
                    f"stage {t.stage} {t.component_type.value} sends a power command after the "
                    f"unverified {cycles[-1].value} of stage {s.stage} {s.component_type.value}, "
                    "whose power-on could land after it: add a VerifyPowerStatus "
                    f"(expectedStatus: on) to the postOperation of that "
                    f"{s.component_type.value} step"
                )
    return problems


def validate_rule_for_operation(definition: RuleDefinition, code: OperationCode) -> None:
    problems = rule_problems_for_operation(definition, code)
    if problems:
        raise RuleError(problems)
