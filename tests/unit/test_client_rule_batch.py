"""Batch rule files (`flow rule create --from-yaml`) are checked before sending."""

from __future__ import annotations

import json

import pytest

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.client.rule_batch import RuleFileError, parse_rule_file
from nicoflow.domain.types import OperationCode

GOOD = """
version: v1
rules:
  - name: gentle-power-on
    description: shelves, then switches, then compute
    operation_type: power_control
    operation: power_on
    steps:
      - component_type: powershelf
        stage: 1
        main_operation: {name: PowerControl}
      - component_type: compute
        stage: 2
        max_parallel: 4
        main_operation: {name: PowerControl}
  - name: bmc-upgrade
    operation_type: firmware_control
    operation: upgrade
    is_default: true
    steps:
      - component_type: compute
        stage: 1
        main_operation: {name: FirmwareControl}
"""


def test_valid_rules_become_requests() -> None:
    good, bad = parse_rule_file(GOOD)
    assert bad == []
    assert [(r.name, r.operation, r.type_number, r.is_default) for r in good] == [
        ("gentle-power-on", OperationCode.POWER_ON, pb.OPERATION_TYPE_POWER_CONTROL, False),
        ("bmc-upgrade", OperationCode.UPGRADE, pb.OPERATION_TYPE_FIRMWARE_CONTROL, True),
    ]
    definition = json.loads(good[0].definition_json)
    assert definition["version"] == "v1"
    assert [s["component_type"] for s in definition["steps"]] == ["powershelf", "compute"]
    assert definition["steps"][1]["max_parallel"] == 4


BAD = """
version: v1
rules:
  - name: wrong-pair
    operation_type: power_control
    operation: upgrade
    steps: [{component_type: compute, stage: 1, main_operation: {name: PowerControl}}]
  - name: bad-steps
    operation_type: power_control
    operation: power_off
    steps:
      - component_type: gpu
        stage: 0
        main_operation: {name: PowerControl}
  - name: firmware-in-power
    operation_type: power_control
    operation: restart
    steps: [{component_type: compute, stage: 1, main_operation: {name: FirmwareControl}}]
  - name: bringup
    operation_type: bring_up
    operation: bring_up
    steps: []
  - name: wrong-pair
    operation_type: power_control
    operation: power_on
    steps: []
"""


def test_every_problem_is_reported_per_rule() -> None:
    good, bad = parse_rule_file(BAD)
    assert good == []
    text = {p.name: str(p) for p in bad[:4]}
    assert "not a power_control operation" in text["wrong-pair"]
    assert "gpu" in text["bad-steps"]
    assert "stage" in text["bad-steps"]
    assert "firmware updates do not belong" in text["firmware-in-power"]
    assert "cannot be created through the API" in text["bringup"]
    assert [p.index for p in bad] == [0, 1, 2, 3, 4]
    assert "used twice" in str(bad[4])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", "not valid YAML"),
        ("[]", "mapping"),
        ("version: v2\nrules: [{}]", "v2"),
        ("version: v1", "non-empty"),
    ],
)
def test_unusable_files(text: str, message: str) -> None:
    with pytest.raises(RuleFileError, match=message):
        parse_rule_file(text)
