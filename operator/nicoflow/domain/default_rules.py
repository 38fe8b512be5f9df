"""Built-in rules: what each operation does when no OperationRule applies.

Every operation code has one. The power and firmware sequences follow the
original service's hard-coded defaults: power shelves before switches before
compute on the way up, the reverse on the way down, and every power change
verified by reading the power state back. warm_reset and cold_reset, which
the original left without a rule, are defined here (see their builders).

Power shelves have no step in the firmware, warm_reset and cold_reset rules:
their firmware is managed out of band, and resetting a shelf cuts power to
every tray behind it (use force_restart for that)."""

from __future__ import annotations

from collections.abc import Callable

from nicoflow.domain.rules import (
    ActionConfig,
    ActionName,
    ActionParameters,
    RetryPolicy,
    RuleDefinition,
    RuleStep,
)
from nicoflow.domain.types import ComponentType, OperationCode

PS, NVS, C = ComponentType.POWERSHELF, ComponentType.NVSWITCH, ComponentType.COMPUTE
Op = OperationCode


def _power(op: OperationCode) -> ActionConfig:
    # Built-ins always name the operation: a restart is then never sent to a BMC
    # as one composite command, and the rule reads the same wherever it is used.
    return ActionConfig(name=ActionName.POWER_CONTROL, parameters=ActionParameters(operation=op))


def _verify(status: str, timeout: str, poll: str) -> ActionConfig:
    return ActionConfig(
        name=ActionName.VERIFY_POWER_STATUS,
        timeout=timeout,
        poll_interval=poll,
        parameters=ActionParameters.model_validate({"expected_status": status}),
    )


def _sleep(duration: str) -> ActionConfig:
    return ActionConfig(name=ActionName.SLEEP, parameters=ActionParameters(duration=duration))


def _retry(attempts: int, initial: str, coefficient: float) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=attempts, initial_interval=initial, backoff_coefficient=coefficient
    )


def _step(
    component_type: ComponentType,
    stage: int,
    main: ActionConfig,
    *,
    timeout: str,
    retry: RetryPolicy,
    pre: tuple[ActionConfig, ...] = (),
    post: tuple[ActionConfig, ...] = (),
) -> RuleStep:
    return RuleStep(
        component_type=component_type,
        stage=stage,
        timeout=timeout,
        retry=retry,
        pre_operation=list(pre),
        main_operation=main,
        post_operation=list(post),
    )


def _rule(*steps: RuleStep) -> RuleDefinition:
    return RuleDefinition(steps=list(steps))


def _timeout(component_type: ComponentType) -> str:
    return "20m" if component_type is C else "15m"


def _power_retry(component_type: ComponentType) -> RetryPolicy:
    return _retry(3, "1s", 2.0) if component_type is C else _retry(3, "5s", 2.0)


def power_on() -> RuleDefinition:
    return _rule(
        *(
            _step(
                t,
                i,
                _power(Op.POWER_ON),
                post=(_verify("on", "5m", "10s"),),
                timeout=_timeout(t),
                retry=_power_retry(t),
            )
            for i, t in enumerate((PS, NVS, C), start=1)
        )
    )


def power_off() -> RuleDefinition:
    """Graceful shutdown, compute first. The compute step's PowerControl accepts
    parameters.forceAfter (graceful→forced escalation); the built-in leaves it unset
    because a graceful request should not silently turn into a forced one. A site
    that wants escalation sets it in an OperationRule for power_off."""
    return _rule(
        *(
            _step(
                t,
                i,
                _power(Op.POWER_OFF),
                post=(_verify("off", "5m", "10s"),),
                timeout=_timeout(t),
                retry=_power_retry(t),
            )
            for i, t in enumerate((C, NVS, PS), start=1)
        )
    )


def _verify_all(stage: int, status: str, poll: str) -> list[RuleStep]:
    retry = _retry(2, "5s", 1.5)
    return [
        _step(t, stage, _verify(status, "5m", poll), timeout="20m", retry=retry)
        for t in (PS, NVS, C)
    ]


def force_power_on() -> RuleDefinition:
    return _rule(
        _step(PS, 1, _power(Op.FORCE_POWER_ON), timeout="15m", retry=_power_retry(PS)),
        _step(NVS, 2, _power(Op.FORCE_POWER_ON), timeout="15m", retry=_power_retry(NVS)),
        _step(
            C,
            3,
            _power(Op.FORCE_POWER_ON),
            post=(_sleep("10s"),),
            timeout="20m",
            retry=_power_retry(C),
        ),
        *_verify_all(4, "on", "5s"),
    )


def force_power_off() -> RuleDefinition:
    return _rule(
        _step(
            C,
            1,
            _power(Op.FORCE_POWER_OFF),
            post=(_sleep("10s"),),
            timeout="20m",
            retry=_power_retry(C),
        ),
        _step(
            NVS,
            2,
            _power(Op.FORCE_POWER_OFF),
            post=(_sleep("5s"),),
            timeout="15m",
            retry=_power_retry(NVS),
        ),
        _step(
            PS,
            3,
            _power(Op.FORCE_POWER_OFF),
            post=(_sleep("5s"),),
            timeout="15m",
            retry=_power_retry(PS),
        ),
        *_verify_all(4, "off", "5s"),
    )


def restart() -> RuleDefinition:
    """Off in the down order, then on in the up order, each change verified."""
    down = [
        _step(
            t,
            i,
            _power(Op.POWER_OFF),
            post=(_verify("off", "10m", "15s"),),
            timeout=_timeout(t),
            retry=_power_retry(t),
        )
        for i, t in enumerate((C, NVS, PS), start=1)
    ]
    up = [
        _step(
            t,
            i,
            _power(Op.POWER_ON),
            post=(_verify("on", "10m", "15s"),),
            timeout=_timeout(t),
            retry=_power_retry(t),
        )
        for i, t in enumerate((PS, NVS, C), start=4)
    ]
    return _rule(*down, *up)


def force_restart() -> RuleDefinition:
    return _rule(
        _step(
            C,
            1,
            _power(Op.FORCE_POWER_OFF),
            post=(_sleep("10s"),),
            timeout="20m",
            retry=_power_retry(C),
        ),
        _step(
            NVS,
            2,
            _power(Op.FORCE_POWER_OFF),
            post=(_sleep("5s"),),
            timeout="15m",
            retry=_power_retry(NVS),
        ),
        _step(
            PS,
            3,
            _power(Op.FORCE_POWER_OFF),
            post=(_sleep("5s"),),
            timeout="15m",
            retry=_power_retry(PS),
        ),
        *_verify_all(4, "off", "15s"),
        _step(
            PS,
            5,
            _power(Op.FORCE_POWER_ON),
            post=(_sleep("10s"),),
            timeout="15m",
            retry=_power_retry(PS),
        ),
        _step(
            NVS,
            6,
            _power(Op.FORCE_POWER_ON),
            post=(_sleep("15s"),),
            timeout="15m",
            retry=_power_retry(NVS),
        ),
        _step(
            C,
            7,
            _power(Op.FORCE_POWER_ON),
            post=(_sleep("10s"),),
            timeout="20m",
            retry=_power_retry(C),
        ),
        *_verify_all(8, "on", "5s"),
    )


def warm_reset() -> RuleDefinition:
    """A reboot in place: power stays applied, so the power state is read back
    after a pause only to catch a component that did not come back on.
    Switches go first so that compute trays, reset last, train their NVLink
    links against a fabric that is already up; the other order would drop the
    links under freshly reset hosts."""
    return _rule(
        _step(
            NVS,
            1,
            _power(Op.WARM_RESET),
            post=(_sleep("30s"), _verify("on", "10m", "15s")),
            timeout="15m",
            retry=_power_retry(NVS),
        ),
        _step(
            C,
            2,
            _power(Op.WARM_RESET),
            post=(_sleep("30s"), _verify("on", "10m", "15s")),
            timeout="20m",
            retry=_power_retry(C),
        ),
    )


def cold_reset() -> RuleDefinition:
    """A full power cycle of every targeted tray. Compute trays get Core's cold
    reset (an AC power cycle). Core has no cold reset for switch trays, so they
    are forced off and on, and verified each way. Switches first, for the same
    reason as warm_reset."""
    return _rule(
        _step(
            NVS,
            1,
            _power(Op.FORCE_POWER_OFF),
            post=(_verify("off", "5m", "15s"),),
            timeout="15m",
            retry=_power_retry(NVS),
        ),
        _step(
            NVS,
            2,
            _power(Op.FORCE_POWER_ON),
            post=(_sleep("15s"), _verify("on", "10m", "15s")),
            timeout="15m",
            retry=_power_retry(NVS),
        ),
        _step(
            C,
            3,
            _power(Op.COLD_RESET),
            post=(_sleep("1m"), _verify("on", "15m", "15s")),
            timeout="25m",
            retry=_power_retry(C),
        ),
    )


def upgrade() -> RuleDefinition:
    """Compute then switches; no power recycle (the managers handle activation)."""
    firmware = ActionConfig(name=ActionName.FIRMWARE_CONTROL, timeout="45m", poll_interval="2m")
    retry = _retry(2, "30s", 1.5)
    return _rule(
        _step(C, 1, firmware, timeout="45m", retry=retry),
        _step(NVS, 2, firmware, timeout="45m", retry=retry),
    )


def bring_up() -> RuleDefinition:
    """Power up in order, bring compute firmware to the desired version, check
    the switches agree on theirs, then power-cycle compute so it boots on the
    new firmware."""
    retry = _retry(3, "10s", 2.0)
    on, off = _verify("on", "10m", "15s"), _verify("off", "5m", "15s")
    return _rule(
        _step(PS, 1, _power(Op.POWER_ON), post=(on,), timeout="15m", retry=retry),
        _step(C, 2, _power(Op.POWER_ON), post=(on,), timeout="20m", retry=retry),
        _step(
            C,
            3,
            ActionConfig(name=ActionName.FIRMWARE_CONTROL, timeout="45m", poll_interval="2m"),
            timeout="60m",
            retry=_retry(2, "30s", 2.0),
        ),
        _step(NVS, 4, _power(Op.POWER_ON), post=(on,), timeout="15m", retry=retry),
        _step(
            NVS,
            5,
            ActionConfig(name=ActionName.VERIFY_FIRMWARE_CONSISTENCY),
            timeout="10m",
            retry=retry,
        ),
        _step(
            C,
            6,
            _power(Op.POWER_ON),
            pre=(_power(Op.POWER_OFF), off, _sleep("30s")),
            post=(on,),
            timeout="20m",
            retry=retry,
        ),
    )


def ingest() -> RuleDefinition:
    """Register the rack's expected components with Core, all types side by
    side. The original left power shelves out (they were registered with a
    separate shelf manager then); Core now takes them like the others."""
    inject = ActionConfig(name=ActionName.INJECT_EXPECTATION)
    retry = _retry(3, "5s", 2.0)
    return _rule(
        _step(PS, 1, inject, timeout="10m", retry=retry),
        _step(C, 1, inject, timeout="10m", retry=retry),
        _step(NVS, 1, inject, timeout="10m", retry=retry),
    )


BUILTIN_RULES: dict[OperationCode, Callable[[], RuleDefinition]] = {
    Op.POWER_ON: power_on,
    Op.POWER_OFF: power_off,
    Op.FORCE_POWER_ON: force_power_on,
    Op.FORCE_POWER_OFF: force_power_off,
    Op.RESTART: restart,
    Op.FORCE_RESTART: force_restart,
    Op.WARM_RESET: warm_reset,
    Op.COLD_RESET: cold_reset,
    Op.UPGRADE: upgrade,
    # Downgrade and rollback run the same sequence; the version comes from the Task.
    Op.DOWNGRADE: upgrade,
    Op.ROLLBACK: upgrade,
    Op.BRING_UP: bring_up,
    Op.INGEST: ingest,
}


def builtin_rule(code: OperationCode) -> RuleDefinition:
    """The built-in rule for an operation (a fresh object each call)."""
    return BUILTIN_RULES[OperationCode(code)]()


def builtin_rule_name(code: OperationCode) -> str:
    """Name recorded on Tasks that ran a built-in rule."""
    return f"builtin-{OperationCode(code).value.replace('_', '-')}"
