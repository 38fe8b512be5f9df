"""Rule definitions: parsing, validation messages, durations and the built-in rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nicoflow.domain.default_rules import BUILTIN_RULES, builtin_rule, builtin_rule_name
from nicoflow.domain.durations import format_duration, parse_duration
from nicoflow.domain.rules import (
    ActionConfig,
    ActionName,
    ActionPart,
    RetryPolicy,
    RuleDefinition,
    RuleError,
    parse_rule_definition,
    rule_problems_for_operation,
    validate_rule_for_operation,
)
from nicoflow.domain.types import ComponentType, OperationCode, OperationType

C, NVS, PS = ComponentType.COMPUTE, ComponentType.NVSWITCH, ComponentType.POWERSHELF
Op = OperationCode


def power(op: str | None = None) -> dict[str, Any]:
    action: dict[str, Any] = {"name": "PowerControl"}
    if op:
        action["parameters"] = {"operation": op}
    return action


def step(component_type: str = "compute", stage: int = 1, **extra: Any) -> dict[str, Any]:
    return {"component_type": component_type, "stage": stage, "main_operation": power(), **extra}


def rule(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"version": "v1", "steps": list(steps) or [step()], **extra}


def types_by_stage(defn: RuleDefinition) -> list[list[ComponentType]]:
    return [[s.component_type for s in steps] for _, steps in defn.stages()]


def main_ops(defn: RuleDefinition) -> list[tuple[ComponentType, str | None]]:
    return [
        (s.component_type, s.main_operation.params.operation)
        for _, steps in defn.stages()
        for s in steps
        if s.main_operation.name is ActionName.POWER_CONTROL
    ]


# -- built-in rules -----------------------------------------------------------


def test_every_operation_code_has_a_builtin_rule() -> None:
    assert set(BUILTIN_RULES) == set(OperationCode)


@pytest.mark.parametrize("code", list(OperationCode))
def test_builtin_rule_validates_and_round_trips(code: OperationCode) -> None:
    defn = builtin_rule(code)
    assert defn.steps, "a built-in rule that does nothing would report success on no-ops"
    assert rule_problems_for_operation(defn, code) == []
    # both spellings: CRD (camelCase) and the original's rule JSON (snake_case)
    assert parse_rule_definition(defn.to_crd()) == defn
    assert parse_rule_definition(defn.to_json()) == defn
    assert "componentType" in str(defn.to_crd())
    assert "component_type" in defn.to_json()


@pytest.mark.parametrize("code", list(OperationCode))
def test_builtin_power_steps_name_their_operation(code: OperationCode) -> None:
    # explicit operations keep composite codes (restart) from reaching a BMC as one command
    for _, op in main_ops(builtin_rule(code)):
        assert op is not None


def test_builtin_rules_are_fresh_objects() -> None:
    first = builtin_rule(Op.POWER_ON)
    first.steps.clear()
    assert builtin_rule(Op.POWER_ON).steps


def test_power_on_goes_shelves_switches_compute_and_verifies() -> None:
    defn = builtin_rule(Op.POWER_ON)
    assert types_by_stage(defn) == [[PS], [NVS], [C]]
    for s in defn.steps:
        assert [a.params.expected_status for a in s.post_operation] == ["on"]
    assert defn.steps[0].timeout == "15m"
    assert defn.steps[2].timeout == "20m"
    assert defn.steps[2].retry_policy.initial_interval == "1s"


def test_power_off_goes_compute_switches_shelves_without_escalation() -> None:
    defn = builtin_rule(Op.POWER_OFF)
    assert types_by_stage(defn) == [[C], [NVS], [PS]]
    assert all(s.main_operation.params.force_after is None for s in defn.steps)
    assert all(s.post_operation[0].params.expected_status == "off" for s in defn.steps)


def test_force_power_on_verifies_all_types_together_last() -> None:
    defn = builtin_rule(Op.FORCE_POWER_ON)
    assert types_by_stage(defn) == [[PS], [NVS], [C], [PS, NVS, C]]
    last = defn.stages()[-1][1]
    assert {s.main_operation.name for s in last} == {ActionName.VERIFY_POWER_STATUS}
    assert last[0].retry_policy.max_attempts == 2


def test_restart_is_off_down_then_on_up() -> None:
    assert main_ops(builtin_rule(Op.RESTART)) == [
        (C, Op.POWER_OFF),
        (NVS, Op.POWER_OFF),
        (PS, Op.POWER_OFF),
        (PS, Op.POWER_ON),
        (NVS, Op.POWER_ON),
        (C, Op.POWER_ON),
    ]


def test_force_restart_has_eight_stages_with_verification_between() -> None:
    defn = builtin_rule(Op.FORCE_RESTART)
    assert len(defn.stages()) == 8
    assert types_by_stage(defn)[3] == [PS, NVS, C]
    assert types_by_stage(defn)[7] == [PS, NVS, C]
    ops = [op for _, op in main_ops(defn)]
    assert ops == [Op.FORCE_POWER_OFF] * 3 + [Op.FORCE_POWER_ON] * 3


def test_warm_reset_resets_switches_before_compute_and_leaves_shelves_alone() -> None:
    defn = builtin_rule(Op.WARM_RESET)
    assert main_ops(defn) == [(NVS, Op.WARM_RESET), (C, Op.WARM_RESET)]
    assert PS not in defn.component_types()
    for s in defn.steps:
        assert s.post_operation[-1].params.expected_status == "on"


def test_cold_reset_power_cycles_compute_and_hard_cycles_switches() -> None:
    defn = builtin_rule(Op.COLD_RESET)
    assert main_ops(defn) == [
        (NVS, Op.FORCE_POWER_OFF),
        (NVS, Op.FORCE_POWER_ON),
        (C, Op.COLD_RESET),
    ]
    assert PS not in defn.component_types()


@pytest.mark.parametrize("code", [Op.DOWNGRADE, Op.ROLLBACK])
def test_downgrade_and_rollback_reuse_upgrade(code: OperationCode) -> None:
    assert builtin_rule(code) == builtin_rule(Op.UPGRADE)


def test_upgrade_updates_compute_then_switches_not_shelves() -> None:
    defn = builtin_rule(Op.UPGRADE)
    assert types_by_stage(defn) == [[C], [NVS]]
    action = defn.steps[0].main_operation
    assert action.name is ActionName.FIRMWARE_CONTROL
    assert action.timeout_seconds() == 45 * 60
    assert action.poll_interval_seconds() == 120


def test_bring_up_sequence() -> None:
    defn = builtin_rule(Op.BRING_UP)
    assert types_by_stage(defn) == [[PS], [C], [C], [NVS], [NVS], [C]]
    names = [s.main_operation.name for s in defn.steps]
    assert names[2] is ActionName.FIRMWARE_CONTROL
    assert names[4] is ActionName.VERIFY_FIRMWARE_CONSISTENCY
    last = defn.steps[-1]
    assert [a.name for a in last.pre_operation] == [
        ActionName.POWER_CONTROL,
        ActionName.VERIFY_POWER_STATUS,
        ActionName.SLEEP,
    ]


def test_ingest_injects_every_managed_type_in_one_stage() -> None:
    defn = builtin_rule(Op.INGEST)
    assert sorted(types_by_stage(defn)[0]) == sorted([PS, C, NVS])
    assert len(types_by_stage(defn)) == 1
    assert {s.main_operation.name for s in defn.steps} == {ActionName.INJECT_EXPECTATION}


def test_builtin_rule_names() -> None:
    assert builtin_rule_name(Op.FORCE_POWER_OFF) == "builtin-force-power-off"


# -- parsing and validation ---------------------------------------------------


def test_original_rule_json_with_display_type_names_parses() -> None:
    text = """{"version": "", "steps": [{"component_type": "PowerShelf", "stage": 1,
      "max_parallel": 1, "timeout": "15m",
      "retry": {"max_attempts": 3, "initial_interval": "5s", "backoff_coefficient": 2.0,
                "max_interval": "1m"},
      "main_operation": {"name": "PowerControl"},
      "post_operation": [{"name": "VerifyPowerStatus", "timeout": "5m", "poll_interval": "10s",
                          "parameters": {"expected_status": "on"}}],
      "delay_after": 30000000000}]}"""
    defn = parse_rule_definition(text)
    s = defn.steps[0]
    assert defn.version == "v1"
    assert s.component_type is PS
    assert s.max_parallel == 1
    assert s.delay_after == "30s"  # Go's JSON for a duration: nanoseconds
    assert s.post_operation[0].poll_interval_seconds() == 10


# What the original's `flow rule create --from-yaml` sends: its loader turns the
# YAML into Go structs and marshals them, so unset durations come as "0s" (Go's
# zero value, meaning "use the default"), set ones in Go's String() form, and a
# Sleep's duration parameter as integer nanoseconds.
ORIGINAL_CLI_JSON = """{"version":"v1","steps":[
 {"delay_after":"0s","timeout":"20m0s","component_type":"Compute","stage":1,"max_parallel":0,
  "pre_operation":[{"timeout":"0s","poll_interval":"0s","name":"Sleep",
                    "parameters":{"duration":10000000000}}],
  "main_operation":{"timeout":"0s","poll_interval":"0s","name":"PowerControl"},
  "post_operation":[{"timeout":"5m0s","poll_interval":"10s","name":"VerifyPowerStatus",
                     "parameters":{"expected_status":"off"}}]},
 {"delay_after":"0s","timeout":"0s","component_type":"NVSwitch","stage":2,"max_parallel":1,
  "retry":{"initial_interval":"0s","max_interval":"0s","max_attempts":2,
           "backoff_coefficient":1.5},
  "main_operation":{"timeout":"0s","poll_interval":"0s","name":"PowerControl",
                    "parameters":{"operation":"power_off"}}}]}"""


def test_the_original_clis_rule_json_parses_with_zeros_unset_and_nanoseconds() -> None:
    defn = parse_rule_definition(ORIGINAL_CLI_JSON)
    first, second = defn.steps
    assert first.component_type is ComponentType.COMPUTE
    assert first.timeout == "20m0s"
    assert first.timeout_seconds() == 1200
    assert first.delay_after is None
    sleep = first.pre_operation[0]
    assert sleep.params.duration == "10s"
    assert (sleep.timeout, sleep.poll_interval) == (None, None)
    assert first.main_operation.timeout is None
    verify = first.post_operation[0]
    assert (verify.timeout_seconds(), verify.poll_interval_seconds()) == (300, 10)
    # "0s" step timeout is the default, not a zero budget
    assert second.timeout is None
    assert second.timeout_seconds() == 20 * 60
    assert second.retry_policy.initial_interval == "1s"
    assert second.retry_policy.max_interval == "0s"  # no bound, as in the original
    assert second.retry_policy.delay_before_attempt(2) == 1.0
    # read back, unset durations are left out
    back = json.loads(defn.to_json())
    assert "timeout" not in back["steps"][1]
    assert back["steps"][0]["pre_operation"][0] == {
        "name": "Sleep",
        "parameters": {"duration": "10s"},
    }


def test_camel_case_yaml_parses() -> None:
    text = """
version: v1
steps:
- componentType: compute
  stage: 2
  maxParallel: 4
  mainOperation: {name: PowerControl, parameters: {operation: power_off, forceAfter: 5m}}
"""
    s = parse_rule_definition(text).steps[0]
    assert s.max_parallel == 4
    assert s.main_operation.params.force_after == "5m"


BAD_RULES: list[tuple[str, dict[str, Any], str]] = [
    (
        "unknown action",
        rule(step(main_operation={"name": "Reboot"})),
        "steps[0].mainOperation.name: unknown action 'Reboot'; allowed actions: Sleep, "
        "PowerControl, VerifyPowerStatus, VerifyReachability, GetPowerStatus, FirmwareControl, "
        "BringUpControl, WaitBringUp, InjectExpectation, VerifyFirmwareConsistency",
    ),
    (
        "duplicate type in a stage",
        rule(step("compute", 1), step("nvswitch", 1), step("compute", 1)),
        "stage 1 has two steps for component type compute",
    ),
    (
        "verify without expected status",
        rule(step(post_operation=[{"name": "VerifyPowerStatus"}])),
        "steps[0].postOperation[0]: VerifyPowerStatus needs parameters.expectedStatus: on or off",
    ),
    (
        "expected status not on/off",
        rule(
            step(
                post_operation=[
                    {"name": "VerifyPowerStatus", "parameters": {"expected_status": "up"}}
                ]
            )
        ),
        "parameters.expectedStatus: Input should be 'on' or 'off'",
    ),
    (
        "sleep without duration",
        rule(step(post_operation=[{"name": "Sleep"}])),
        "Sleep needs parameters.duration, e.g. duration: 10s",
    ),
    (
        "sleep with a timeout",
        rule(
            step(pre_operation=[{"name": "Sleep", "timeout": "1m", "parameters": {"duration": 5}}])
        ),
        "Sleep takes parameters.duration, not timeout",
    ),
    (
        "bad duration",
        rule(step(timeout="5 minutes")),
        "steps[0].timeout: invalid duration '5 minutes': use a Go-style duration such as 30s, "
        "5m or 1h30m",
    ),
    (
        "stage zero",
        rule(step(stage=0)),
        "steps[0].stage: Input should be greater than or equal to 1",
    ),
    (
        "negative max_parallel",
        rule(step(max_parallel=-1)),
        "steps[0].maxParallel: Input should be greater than or equal to 0",
    ),
    (
        "version 2",
        rule(version="v2"),
        "unsupported rule version 'v2'; this release reads version v1",
    ),
    ("no steps", {"version": "v1", "steps": []}, "steps: List should have at least 1 item"),
    (
        "unknown component type",
        rule(step("gpu")),
        "unknown component type 'gpu'; expected one of: compute, nvswitch",
    ),
    (
        "parameter of another action",
        rule(
            step(
                post_operation=[
                    {"name": "Sleep", "parameters": {"duration": "5s", "expected_status": "on"}}
                ]
            )
        ),
        "Sleep does not take parameters.expectedStatus",
    ),
    (
        "non-power operation on PowerControl",
        rule(step(main_operation=power("upgrade"))),
        "PowerControl operation 'upgrade' is not a power operation",
    ),
    (
        "poll interval on an action that does not poll",
        rule(step(main_operation={"name": "PowerControl", "poll_interval": "5s"})),
        "PowerControl does not poll; remove pollInterval",
    ),
    (
        "poll interval longer than timeout",
        rule(
            step(
                post_operation=[
                    {
                        "name": "VerifyPowerStatus",
                        "timeout": "10s",
                        "poll_interval": "1m",
                        "parameters": {"expected_status": "on"},
                    }
                ]
            )
        ),
        "VerifyPowerStatus pollInterval is longer than its timeout",
    ),
    (
        "reachability without types",
        rule(step(pre_operation=[{"name": "VerifyReachability"}])),
        "VerifyReachability needs parameters.componentTypes",
    ),
    (
        "force_after with restart",
        rule(
            step(
                main_operation={
                    "name": "PowerControl",
                    "parameters": {"operation": "restart", "force_after": "1m"},
                }
            )
        ),
        "parameters.forceAfter escalates a graceful power_off; it cannot be used with "
        "operation restart",
    ),
    (
        "missing main operation",
        rule({"component_type": "compute", "stage": 1}),
        "steps[0].mainOperation: Field required",
    ),
    ("unknown field", rule(step(parallel=2)), "steps[0].parallel: Extra inputs are not permitted"),
    (
        "backoff below one",
        rule(step(retry={"backoff_coefficient": 0.5})),
        "steps[0].retry.backoffCoefficient: Input should be greater than or equal to 1",
    ),
    (
        "negative nanoseconds",
        rule(step(post_operation=[{"name": "Sleep", "parameters": {"duration": -5}}])),
        "duration -5 is negative",
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [(d, e) for _, d, e in BAD_RULES], ids=[n for n, _, _ in BAD_RULES]
)
def test_bad_rule_gives_specific_message(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rule_definition(data)
    assert expected in str(info.value)


def test_rule_error_lists_every_problem() -> None:
    data = rule(step(stage=0), step(main_operation={"name": "Nope"}))
    with pytest.raises(RuleError) as info:
        parse_rule_definition(data)
    assert len(info.value.problems) == 2


@pytest.mark.parametrize("text", ["[1, 2]", "steps: [", "just text"])
def test_text_that_is_not_an_object_is_rejected(text: str) -> None:
    with pytest.raises(RuleError):
        parse_rule_definition(text)


@pytest.mark.parametrize(
    ("code", "data", "expected"),
    [
        (Op.UPGRADE, rule(step()), "a upgrade rule must name parameters.operation"),
        (Op.BRING_UP, rule(step()), "a bring_up rule must name parameters.operation"),
        (
            Op.POWER_ON,
            rule(step(main_operation={"name": "FirmwareControl"})),
            "firmware updates do not belong in a power_on rule",
        ),
        (
            Op.RESTART,
            rule(
                step(main_operation={"name": "PowerControl", "parameters": {"force_after": "2m"}})
            ),
            "parameters.forceAfter only escalates power_off, not restart",
        ),
    ],
)
def test_rule_checked_against_its_operation(
    code: OperationCode, data: dict[str, Any], expected: str
) -> None:
    defn = parse_rule_definition(data)
    with pytest.raises(RuleError) as info:
        validate_rule_for_operation(defn, code)
    assert expected in str(info.value)


def test_power_rule_may_inherit_the_task_operation() -> None:
    defn = parse_rule_definition(rule(step()))
    for code in OperationCode:
        problems = rule_problems_for_operation(defn, code)
        assert (problems == []) == (code.operation_type is OperationType.POWER_CONTROL)


def test_stages_group_steps_in_ascending_order() -> None:
    defn = parse_rule_definition(
        rule(step("compute", 3), step("powershelf", 1), step("nvswitch", 3), step("compute", 1))
    )
    assert [(n, [s.component_type for s in steps]) for n, steps in defn.stages()] == [
        (1, [PS, C]),
        (3, [C, NVS]),
    ]


def test_actions_run_pre_main_post() -> None:
    s = builtin_rule(Op.BRING_UP).steps[-1]
    parts = [(part, i) for part, i, _ in s.actions()]
    assert parts == [
        (ActionPart.PRE, 0),
        (ActionPart.PRE, 1),
        (ActionPart.PRE, 2),
        (ActionPart.MAIN, 0),
        (ActionPart.POST, 0),
    ]


def test_action_defaults() -> None:
    verify = ActionConfig.model_validate(
        {"name": "VerifyPowerStatus", "parameters": {"expectedStatus": "off"}}
    )
    assert verify.timeout_seconds() == 300
    assert verify.poll_interval_seconds() == 10
    assert ActionConfig(name=ActionName.POWER_CONTROL).timeout_seconds() is None
    legacy = ActionConfig.model_validate(
        {"name": "FirmwareControl", "parameters": {"poll_timeout": "40m"}}
    )
    assert legacy.timeout_seconds() == 2400
    assert parse_rule_definition(rule(step())).steps[0].timeout_seconds() == 20 * 60


def test_action_names_are_case_insensitive() -> None:
    assert ActionConfig.model_validate({"name": "powercontrol"}).name is ActionName.POWER_CONTROL


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        (RetryPolicy(), [0.0, 1.0, 2.0, 4.0, 8.0]),
        (RetryPolicy(initial_interval="30s", backoff_coefficient=1.5), [0.0, 30.0, 45.0, 60.0]),
        (RetryPolicy(initial_interval="10s", max_interval="0"), [0.0, 10.0, 20.0, 40.0, 80.0]),
    ],
)
def test_retry_delays(policy: RetryPolicy, delays: list[float]) -> None:
    assert [policy.delay_before_attempt(n) for n in range(1, len(delays) + 1)] == delays


# -- durations ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("2m30s", 150.0),
        ("100us", 0.0001),
        ("3µs", 0.000003),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "-1s", "5 m", "1d", "m5", "1h30", "5min"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="Go-style duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (10, "10s"), (60, "1m"), (5400, "1h30m"), (3601, "1h1s"), (0.25, "250ms")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


def test_durations_longer_than_the_apiserver_can_parse_are_refused() -> None:
    # CEL's duration() (the CRD's checks) ends at about 292 years
    assert parse_duration("2540400h") == 2540400 * 3600.0
    with pytest.raises(ValueError, match="too long"):
        parse_duration("9999999999h")


VERIFY_ON = {"name": "VerifyPowerStatus", "parameters": {"expectedStatus": "on"}}


@pytest.mark.parametrize(
    ("first", "later", "refused"),
    [
        # seed 201877 of the DST: the shelves' restart, unverified, then the trays' power-off
        (step("powershelf", 1, main_operation=power("restart")), step("compute", 2), True),
        (step("compute", 1, main_operation=power("warm_reset")), step("compute", 2), True),
        (step("compute", 1, main_operation=power("cold_reset")), step("nvswitch", 2), False),
        (
            step("powershelf", 1, main_operation=power("restart"), post_operation=[VERIFY_ON]),
            step("compute", 2),
            False,
        ),
        (step("compute", 1, main_operation=power("power_on")), step("compute", 2), False),
        # side by side in one stage: not "later"
        (step("powershelf", 1, main_operation=power("restart")), step("compute", 1), False),
    ],
)
def test_a_power_command_after_an_unverified_cycle_is_refused(
    first: dict[str, Any], later: dict[str, Any], refused: bool
) -> None:
    defn = parse_rule_definition(rule(first, later))
    problems = rule_problems_for_operation(defn, OperationCode.POWER_OFF)
    assert bool(problems) == refused, problems
    if refused:
        assert problems[0].startswith("stage 2 ")
        assert "add a VerifyPowerStatus (expectedStatus: on)" in problems[0]
