"""The CRD models in Python: samples parse, validation matches the CEL rules' intent,
selectors match labels, and objects serialise the way the apiserver stores them."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from nicoflow.api.common import Condition, LabelSelector
from nicoflow.api.crdgen import KINDS
from nicoflow.api.operation_rule import OperationRuleSpec
from nicoflow.api.rack import RackSpec
from nicoflow.api.task import TaskRunSpec
from nicoflow.api.task_schedule import Schedule, TaskScheduleSpec
from nicoflow.api.task_spec import ComponentTarget, TaskSpecSpec, TaskTargets
from nicoflow.domain.default_rules import builtin_rule, builtin_rule_name
from nicoflow.domain.types import OperationCode

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"
SPEC_MODELS: dict[str, type[BaseModel]] = {info.kind: info.spec for info in KINDS}


def example_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("apiVersion") == "flow.nico.io/v1alpha1":
                docs.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return docs


def test_every_kind_people_write_has_an_example() -> None:
    # Tasks are created by the operator only; a sample one applied by hand would run.
    assert {doc["kind"] for _, doc in example_docs()} == set(SPEC_MODELS) - {"Task"}


@pytest.mark.parametrize(("name", "doc"), example_docs(), ids=[n for n, _ in example_docs()])
def test_examples_validate_against_the_models(name: str, doc: dict[str, Any]) -> None:
    model = SPEC_MODELS[doc["kind"]].model_validate(doc["spec"])
    again = SPEC_MODELS[doc["kind"]].model_validate(model.model_dump(by_alias=True))
    assert again == model


def test_sample_racks_are_gb200_nvl72() -> None:
    racks = [doc for _, doc in example_docs() if doc["kind"] == "Rack"]
    assert len(racks) == 2
    serials: set[str] = set()
    macs: set[str] = set()
    for doc in racks:
        spec = RackSpec.model_validate(doc["spec"])
        by_type: dict[str, int] = {}
        for c in spec.components:
            by_type[c.type.value] = by_type.get(c.type.value, 0) + 1
            serials.add(c.serial_number)
            macs.update(b.mac_address for b in c.bmcs or [])
            kinds = sorted(b.type.value for b in c.bmcs or [])
            assert kinds == (["dpu", "dpu", "host"] if c.type.value == "compute" else ["host"])
        assert by_type == {"compute": 18, "nvswitch": 9, "powershelf": 8}
        slots = [c.position.slot_id for c in spec.components if c.position]
        assert len(set(slots)) == 35
    assert len(serials) == 70  # unique across both racks
    assert len(macs) == 2 * (18 * 3 + 9 + 8)


def test_sample_rack_files_match_their_generator() -> None:
    spec = importlib.util.spec_from_file_location("gen", REPO / "hack" / "gen_sample_racks.py")
    assert spec is not None
    assert spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for name, number in gen.RACKS:
        assert (EXAMPLES / f"rack-gb200-{name}.yaml").read_text() == gen.render(name, number)


def errors(model: type[BaseModel], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return str(info.value)


TARGETS = {"racks": ["gb200-a01"]}


@pytest.mark.parametrize(
    ("model", "data", "expected"),
    [
        (ComponentTarget, {}, "exactly one of id, coreId, serial or name"),
        (ComponentTarget, {"id": "x", "serial": "y"}, "exactly one of id, coreId, serial or name"),
        (ComponentTarget, {"name": "compute-01"}, "must also set rack"),
        (ComponentTarget, {"coreId": "fm100"}, "must also set type"),
        (TaskTargets, {"componentTypes": ["compute"]}, "targets must name at least one"),
        (
            TaskSpecSpec,
            {"operation": "power_on", "targets": TARGETS, "options": {"targetVersion": "1.2"}},
            "apply only to upgrade, downgrade and rollback",
        ),
        (
            TaskSpecSpec,
            {
                "operation": "upgrade",
                "targets": TARGETS,
                "options": {
                    "firmwareWindow": {
                        "startTime": "2026-01-02T00:00:00Z",
                        "endTime": "2026-01-01T00:00:00Z",
                    }
                },
            },
            "startTime must be before endTime",
        ),
        (
            TaskSpecSpec,
            {"operation": "power_on", "targets": TARGETS, "queueTimeoutSeconds": 90000},
            "less than or equal to 86400",
        ),
        (TaskSpecSpec, {"operation": "reboot", "targets": TARGETS}, "Input should be 'power_on'"),
        (
            OperationRuleSpec,
            {
                "operation": "power_on",
                "isDefault": True,
                "rackSelector": {"matchLabels": {"row": "a"}},
                "definition": builtin_rule(OperationCode.POWER_ON).to_crd(),
            },
            "a default rule applies to every rack",
        ),
        (
            OperationRuleSpec,
            {
                "operation": "upgrade",
                "definition": {
                    "steps": [
                        {
                            "componentType": "compute",
                            "stage": 1,
                            "mainOperation": {"name": "PowerControl"},
                        }
                    ]
                },
            },
            "a upgrade rule must name parameters.operation",
        ),
        (Schedule, {}, "set exactly one of schedule.cron, schedule.interval or schedule.at"),
        (
            Schedule,
            {"cron": "0 2 * * *", "interval": "1h"},
            "set exactly one of schedule.cron, schedule.interval or schedule.at",
        ),
        (Schedule, {"cron": "0 2 * *"}, "cron must have five space-separated fields"),
        (Schedule, {"cron": "0 25 * * *"}, "invalid cron expression"),
        (Schedule, {"cron": "0 2 * * *", "timeZone": "PST"}, "IANA zone name"),
        (Schedule, {"cron": "0 2 * * *", "timeZone": "Mars/Olympus_Mons"}, "unknown time zone"),
        (Schedule, {"interval": "30s"}, "interval must be at least 1m"),
        (Schedule, {"interval": "1 hour"}, "invalid duration"),
        (Schedule, {"at": "2026-01-01T00:00:00Z", "timeZone": "UTC"}, "timeZone applies only"),
        (
            RackSpec,
            {
                "identity": {"manufacturer": "NVIDIA", "serialNumber": "S1"},
                "components": [
                    {
                        "name": "compute-01",
                        "type": "compute",
                        "serialNumber": "C1",
                        "bmcs": [{"type": "host", "macAddress": "02:6e:66:zz:00:01"}],
                    }
                ],
            },
            "String should match pattern",
        ),
        (
            LabelSelector,
            {"matchExpressions": [{"key": "row", "operator": "In"}]},
            "values must be non-empty for operators In and NotIn",
        ),
    ],
)
def test_python_validation(model: type[BaseModel], data: dict[str, Any], expected: str) -> None:
    assert expected in errors(model, data)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"cron": "30 2 * * *", "timeZone": "Europe/Berlin"}, "cron 30 2 * * * Europe/Berlin"),
        ({"cron": "@daily"}, "cron @daily UTC"),
        ({"interval": "6h"}, "every 6h"),
        ({"at": "2026-05-01T03:00:00Z"}, "at 2026-05-01T03:00:00+00:00"),
    ],
)
def test_schedule_kinds(data: dict[str, Any], text: str) -> None:
    assert Schedule.model_validate(data).describe() == text


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({}, {"row": "a"}, True),
        ({"matchLabels": {"row": "a"}}, {"row": "a", "site": "dc1"}, True),
        ({"matchLabels": {"row": "a"}}, {"row": "b"}, False),
        (
            {"matchExpressions": [{"key": "row", "operator": "In", "values": ["a", "b"]}]},
            {"row": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "row", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "row", "operator": "NotIn", "values": ["a"]}]},
            {"row": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, {"row": "a"}, False),
        ({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, {"row": "a"}, True),
    ],
)
def test_label_selector(selector: dict[str, Any], labels: dict[str, str], matches: bool) -> None:
    assert LabelSelector.model_validate(selector).matches(labels) is matches


def test_task_spec_defaults_and_wire_form() -> None:
    spec = TaskSpecSpec.model_validate({"operation": "restart", "targets": TARGETS})
    assert spec.conflict_strategy.value == "Reject"
    assert spec.queue_timeout_seconds == 3600
    assert spec.to_k8s() == {
        "operation": "restart",
        "targets": {"racks": ["gb200-a01"]},
        "conflictStrategy": "Reject",
        "queueTimeoutSeconds": 3600,
        "maxParallelRacks": 0,
        "suspend": False,
        "cancel": False,
    }


def test_task_spec_carries_a_rule_snapshot() -> None:
    rule = builtin_rule(OperationCode.POWER_OFF)
    spec = TaskRunSpec.model_validate(
        {
            "taskSpecName": "off",
            "rack": "gb200-a01",
            "operation": "power_off",
            "components": [{"type": "compute", "ids": [{"name": "compute-01", "coreId": "m1"}]}],
            "rule": {
                "name": builtin_rule_name(OperationCode.POWER_OFF),
                "source": "builtin",
                "definition": rule.to_crd(),
            },
        }
    )
    assert spec.rule.definition == rule
    assert spec.to_k8s()["rule"]["definition"]["steps"][0]["mainOperation"]["parameters"] == {
        "operation": "power_off"
    }


def test_timestamps_serialise_like_metav1_time() -> None:
    cond = Condition.model_validate(
        {
            "type": "Ready",
            "status": "True",
            "reason": "Synced",
            "lastTransitionTime": datetime(2026, 3, 1, 12, 0, 5, 123456, tzinfo=UTC),
        }
    )
    assert cond.to_k8s()["lastTransitionTime"] == "2026-03-01T12:00:05Z"


def test_schedule_template_accepts_any_task_spec() -> None:
    spec = TaskScheduleSpec.model_validate(
        {
            "schedule": {"interval": "12h"},
            "taskSpecTemplate": {"spec": {"operation": "power_on", "targets": TARGETS}},
        }
    )
    assert spec.successful_history_limit == 3
    assert spec.failed_history_limit == 1
    assert spec.overlap_policy.value == "Skip"
