"""Fault injection: what goes wrong, and the decisions drawn from it.

A FaultPlan is plain data (from flags, a YAML file or the control API); the
Injector holds the plan with a seeded random source and per-rule budgets, and
answers "does this call fail / how long does it wait / is this component
broken". Decisions are reproducible for a given seed and call order."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from nicoflow.domain.durations import parse_duration

# gRPC status code names a rule may use (grpc.StatusCode members).
GRPC_CODES = frozenset(
    {
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    }
)

When = Literal["before", "after"]


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{what}: must not be negative")
        return float(value)
    return parse_duration(str(value))


def _rate(value: Any, what: str) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{what}: a rate is between 0 and 1, got {value!r}")
    return rate


@dataclass(frozen=True)
class ErrorRule:
    """Fail calls of `method` ("*" = any) with probability `rate`.
    `when`: "before" fails without touching state; "after" applies the call
    and then fails it (a lost reply — the case that makes clients retry
    something that already happened). `times`: at most this many failures."""

    method: str = "*"
    rate: float = 1.0
    code: str = "UNAVAILABLE"
    message: str = "injected fault"
    when: When = "before"
    times: int | None = None

    def __post_init__(self) -> None:
        if self.code not in GRPC_CODES:
            raise ValueError(f"unknown gRPC code {self.code!r}; use one of {sorted(GRPC_CODES)}")
        if self.when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        _rate(self.rate, f"errors[{self.method}].rate")
        if self.times is not None and self.times < 0:
            raise ValueError("times must not be negative")

    @classmethod
    def parse(cls, spec: str) -> ErrorRule:
        """From the command-line form METHOD[:RATE[:CODE[:WHEN]]], e.g.
        "ComponentPowerControl:0.1:UNAVAILABLE" or "*:0.05"."""
        parts = spec.split(":")
        if not parts[0] or len(parts) > 4:
            raise ValueError(f"invalid error rule {spec!r}: use METHOD[:RATE[:CODE[:WHEN]]]")
        rule: dict[str, Any] = {"method": parts[0]}
        if len(parts) > 1:
            rule["rate"] = _rate(parts[1], spec)
        if len(parts) > 2:
            rule["code"] = parts[2].upper()
        if len(parts) > 3:
            rule["when"] = parts[3]
        return cls(**rule)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "rate": self.rate,
            "code": self.code,
            "message": self.message,
            "when": self.when,
        }
        if self.times is not None:
            out["times"] = self.times
        return out


@dataclass(frozen=True)
class FaultPlan:
    errors: tuple[ErrorRule, ...] = ()
    # Added latency in seconds per method; "*" applies to every method.
    latency: Mapping[str, float] = field(default_factory=dict)
    # Components (Core ID or serial) whose every operation fails.
    failing: frozenset[str] = frozenset()
    # Components whose firmware jobs never finish installing.
    stuck_firmware: frozenset[str] = frozenset()
    stuck_firmware_rate: float = 0.0
    firmware_failure_rate: float = 0.0
    # The first this many firmware jobs fail (whatever the rate says).
    firmware_failures: int = 0
    # Components whose power reads flap (wrong state with `flap_rate`).
    flapping: frozenset[str] = frozenset()
    flap_rate: float = 0.5
    # Components that report a leak (applied when the plan is installed).
    leaks: frozenset[str] = frozenset()
    seed: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> FaultPlan:
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        errors = []
        for i, raw in enumerate(data.get("errors") or []):
            if not isinstance(raw, Mapping):
                raise ValueError(f"errors[{i}] must be a mapping")
            extra = set(raw) - set(ErrorRule.__dataclass_fields__)
            if extra:
                raise ValueError(f"errors[{i}]: unknown keys {', '.join(sorted(extra))}")
            rule = dict(raw)
            if "code" in rule:
                rule["code"] = str(rule["code"]).upper()
            if "rate" in rule:
                rule["rate"] = _rate(rule["rate"], f"errors[{i}].rate")
            errors.append(ErrorRule(**rule))
        latency = {
            str(k): _seconds(v, f"latency.{k}") for k, v in (data.get("latency") or {}).items()
        }
        return cls(
            errors=tuple(errors),
            latency=latency,
            failing=_ids(data.get("failing")),
            stuck_firmware=_ids(data.get("stuck_firmware")),
            stuck_firmware_rate=_rate(data.get("stuck_firmware_rate", 0.0), "stuck_firmware_rate"),
            firmware_failure_rate=_rate(
                data.get("firmware_failure_rate", 0.0), "firmware_failure_rate"
            ),
            firmware_failures=int(data.get("firmware_failures", 0)),
            flapping=_ids(data.get("flapping")),
            flap_rate=_rate(data.get("flap_rate", 0.5), "flap_rate"),
            leaks=_ids(data.get("leaks")),
            seed=int(data.get("seed", 0)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "errors": [e.to_dict() for e in self.errors],
            "latency": dict(self.latency),
            "failing": sorted(self.failing),
            "stuck_firmware": sorted(self.stuck_firmware),
            "stuck_firmware_rate": self.stuck_firmware_rate,
            "firmware_failure_rate": self.firmware_failure_rate,
            "firmware_failures": self.firmware_failures,
            "flapping": sorted(self.flapping),
            "flap_rate": self.flap_rate,
            "leaks": sorted(self.leaks),
            "seed": self.seed,
        }

    def merged(self, patch: Mapping[str, Any]) -> FaultPlan:
        """This plan with the keys of `patch` replaced."""
        base = self.to_dict()
        base.update(patch)
        return FaultPlan.from_dict(base)

    def with_errors(self, *rules: ErrorRule) -> FaultPlan:
        return replace(self, errors=(*self.errors, *rules))


def parse_latency(spec: str) -> tuple[str, float]:
    """METHOD=DURATION from the command line, e.g. "*=50ms"."""
    method, sep, duration = spec.partition("=")
    if not sep or not method:
        raise ValueError(f"invalid latency {spec!r}: use METHOD=DURATION, e.g. '*=50ms'")
    return method, _seconds(duration, spec)


def _ids(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset({value})
    if not isinstance(value, Iterable):
        raise ValueError(f"expected a list of component IDs or serials, got {value!r}")
    return frozenset(str(v) for v in value)


class Injector:
    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.install(plan or FaultPlan())

    def install(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self._used: dict[int, int] = {}
        self._firmware_failures_left = plan.firmware_failures
        # errors injected per method under this plan: reads leave no ledger
        # entry, so this is how a test proves its faults reached them
        self.injected: Counter[str] = Counter()

    def chance(self, rate: float) -> bool:
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        return self.rng.random() < rate

    def error_for(self, method: str) -> ErrorRule | None:
        for i, rule in enumerate(self.plan.errors):
            if rule.method not in ("*", method):
                continue
            if rule.times is not None and self._used.get(i, 0) >= rule.times:
                continue
            if self.chance(rule.rate):
                self._used[i] = self._used.get(i, 0) + 1
                self.injected[method] += 1
                return rule
        return None

    def latency_for(self, method: str) -> float:
        lat = self.plan.latency
        return lat.get(method, lat.get("*", 0.0))

    @staticmethod
    def _listed(names: frozenset[str], *keys: str) -> bool:
        return any(k in names for k in keys)

    def failing(self, *keys: str) -> bool:
        return self._listed(self.plan.failing, *keys)

    def stuck(self, *keys: str) -> bool:
        return self._listed(self.plan.stuck_firmware, *keys) or self.chance(
            self.plan.stuck_firmware_rate
        )

    def firmware_fails(self, *keys: str) -> bool:
        if self._firmware_failures_left > 0:
            self._firmware_failures_left -= 1
            return True
        return self.failing(*keys) or self.chance(self.plan.firmware_failure_rate)

    def flaps(self, *keys: str) -> bool:
        return self._listed(self.plan.flapping, *keys) and self.chance(self.plan.flap_rate)
