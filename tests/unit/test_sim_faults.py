from __future__ import annotations

import pytest

from nicoflow.simulator.faults import ErrorRule, FaultPlan, Injector, parse_latency


def test_plan_from_yaml_shaped_data() -> None:
    plan = FaultPlan.from_dict(
        {
            "errors": [{"method": "ComponentPowerControl", "rate": 0.5, "code": "unavailable"}],
            "latency": {"*": "250ms", "GetComponentInventory": 1},
            "failing": ["serial-1"],
            "stuck_firmware": "fm100htx",
            "seed": 4,
        }
    )
    assert plan.errors == (ErrorRule(method="ComponentPowerControl", rate=0.5, code="UNAVAILABLE"),)
    assert plan.latency == {"*": 0.25, "GetComponentInventory": 1.0}
    assert plan.failing == frozenset({"serial-1"})
    assert plan.stuck_firmware == frozenset({"fm100htx"})
    assert FaultPlan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bogus": 1}, "unknown fault settings: bogus"),
        ({"errors": [{"code": "NOPE"}]}, "unknown gRPC code"),
        ({"errors": [{"rate": 2}]}, "between 0 and 1"),
        ({"errors": [{"when": "during"}]}, "before"),
        ({"errors": [{"colour": "red"}]}, "unknown keys colour"),
        ({"latency": {"*": "soon"}}, "invalid duration"),
        ({"flap_rate": -0.1}, "between 0 and 1"),
    ],
)
def test_plan_rejects_bad_settings(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultPlan.from_dict(data)


def test_error_rules_match_by_method_or_wildcard() -> None:
    inj = Injector(
        FaultPlan(
            errors=(
                ErrorRule(method="Version", rate=1.0, code="INTERNAL"),
                ErrorRule(method="*", rate=0.0),
            )
        )
    )
    rule = inj.error_for("Version")
    assert rule is not None
    assert rule.code == "INTERNAL"
    assert inj.error_for("FindMachineIds") is None


def test_times_bounds_how_often_a_rule_fires() -> None:
    inj = Injector(FaultPlan(errors=(ErrorRule(method="*", rate=1.0, times=2),)))
    fired = [inj.error_for("X") is not None for _ in range(5)]
    assert fired == [True, True, False, False, False]


def test_rates_are_reproducible_for_a_seed() -> None:
    plan = FaultPlan(errors=(ErrorRule(rate=0.3),), seed=11)
    inj1, inj2 = Injector(plan), Injector(plan)
    seq1 = [inj1.error_for("M") is not None for _ in range(200)]
    seq2 = [inj2.error_for("M") is not None for _ in range(200)]
    assert seq1 == seq2
    assert 30 < sum(seq1) < 90  # about 30 %
    other = Injector(FaultPlan(errors=(ErrorRule(rate=0.3),), seed=12))
    assert [other.error_for("M") is not None for _ in range(200)] != seq1


def test_latency_per_method_overrides_the_wildcard() -> None:
    inj = Injector(FaultPlan(latency={"*": 0.1, "Version": 0.0}))
    assert inj.latency_for("FindMachineIds") == 0.1
    assert inj.latency_for("Version") == 0.0


def test_component_faults_match_id_or_serial() -> None:
    inj = Injector(
        FaultPlan(failing=frozenset({"sn-1"}), flapping=frozenset({"id-2"}), flap_rate=1.0)
    )
    assert inj.failing("id-1", "sn-1")
    assert not inj.failing("id-2", "sn-2")
    assert inj.flaps("id-2", "sn-2")
    assert not inj.flaps("id-1", "sn-1")


def test_merged_changes_only_the_given_keys() -> None:
    plan = FaultPlan(failing=frozenset({"a"}), seed=3)
    patched = plan.merged({"errors": [{"method": "Version"}]})
    assert patched.failing == frozenset({"a"})
    assert patched.seed == 3
    assert patched.errors[0].method == "Version"


def test_command_line_forms() -> None:
    assert ErrorRule.parse("*") == ErrorRule(method="*")
    assert ErrorRule.parse("Version:0.2:internal:after") == ErrorRule(
        method="Version", rate=0.2, code="INTERNAL", when="after"
    )
    with pytest.raises(ValueError, match="METHOD"):
        ErrorRule.parse(":0.1")
    with pytest.raises(ValueError, match="between 0 and 1"):
        ErrorRule.parse("X:5")
    assert parse_latency("*=50ms") == ("*", 0.05)
    with pytest.raises(ValueError, match="METHOD=DURATION"):
        parse_latency("50ms")


def test_injected_errors_are_counted_per_method_until_the_plan_changes() -> None:
    inj = Injector(FaultPlan(errors=(ErrorRule(method="*", rate=1.0, times=3),)))
    for method in ("Version", "FindMachineIds", "Version", "Version"):
        inj.error_for(method)
    assert inj.injected == {"Version": 2, "FindMachineIds": 1}
    inj.install(FaultPlan())
    assert inj.injected == {}
