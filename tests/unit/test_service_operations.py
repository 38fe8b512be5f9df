"""Operation requests read into one shape, and the TaskSpec built from them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.api.task_spec import TaskSpecSpec
from nicoflow.domain.targets import InventoryComponent
from nicoflow.domain.task_ids import task_id
from nicoflow.domain.types import ComponentType, ConflictStrategy, OperationCode
from nicoflow.kube.resources import task_name
from nicoflow.service import operation_requests as ops
from nicoflow.service.errors import InvalidArgument

RACKS = pb.OperationTargetSpec(racks=pb.RackTargets(targets=[pb.RackTarget(name="a01")]))


def _ts(when: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(when)
    return t


def test_power_codes() -> None:
    assert ops.power_on(pb.PowerOnRackRequest(target_spec=RACKS)).code is OperationCode.POWER_ON
    off = pb.PowerOffRackRequest(target_spec=RACKS)
    assert ops.power_off(off).code is OperationCode.POWER_OFF
    off.forced = True
    assert ops.power_off(off).code is OperationCode.FORCE_POWER_OFF
    reset = pb.PowerResetRackRequest(target_spec=RACKS)
    assert ops.power_reset(reset).code is OperationCode.RESTART
    reset.forced = True
    assert ops.power_reset(reset).code is OperationCode.FORCE_RESTART
    assert ops.bring_up(pb.BringUpRackRequest(target_spec=RACKS)).code is OperationCode.BRING_UP
    assert ops.ingest(pb.IngestRackRequest(target_spec=RACKS)).code is OperationCode.INGEST


def test_queue_options_and_override() -> None:
    plain = ops.power_on(pb.PowerOnRackRequest(target_spec=RACKS))
    assert (plain.conflict, plain.queue_timeout, dict(plain.options)) == (
        ConflictStrategy.REJECT,
        3600,
        {},
    )
    queued = ops.power_on(
        pb.PowerOnRackRequest(
            target_spec=RACKS,
            queue_options=pb.QueueOptions(conflict_strategy=pb.CONFLICT_STRATEGY_QUEUE),
            override_readiness_check=True,
        )
    )
    assert (queued.conflict, queued.queue_timeout) == (ConflictStrategy.QUEUE, 3600)
    assert queued.options == {"overrideReadinessCheck": True}
    timed = ops.power_off(
        pb.PowerOffRackRequest(
            target_spec=RACKS,
            queue_options=pb.QueueOptions(
                conflict_strategy=pb.CONFLICT_STRATEGY_REJECT, queue_timeout_seconds=90
            ),
        )
    )
    assert (timed.conflict, timed.queue_timeout) == (ConflictStrategy.REJECT, 90)
    with pytest.raises(InvalidArgument, match="86400"):
        ops.power_on(
            pb.PowerOnRackRequest(
                target_spec=RACKS, queue_options=pb.QueueOptions(queue_timeout_seconds=90000)
            )
        )


def test_rule_id() -> None:
    rid = uuid.uuid4()
    req = ops.power_on(pb.PowerOnRackRequest(target_spec=RACKS, rule_id=pb.UUID(id=str(rid))))
    assert req.rule_id == rid
    with pytest.raises(InvalidArgument, match="rule_id"):
        ops.power_on(pb.PowerOnRackRequest(target_spec=RACKS, rule_id=pb.UUID()))


def test_firmware_options() -> None:
    start = datetime(2030, 1, 1, 22, 0, tzinfo=UTC)
    end = datetime(2030, 1, 2, 2, 0, tzinfo=UTC)
    req = ops.upgrade_firmware(
        pb.UpgradeFirmwareRequest(
            target_spec=RACKS,
            target_version="1.4.0",
            sub_targets=["bmc", "cpld"],
            start_time=_ts(start),
            end_time=_ts(end),
        )
    )
    assert req.code is OperationCode.UPGRADE
    assert req.options == {
        "targetVersion": "1.4.0",
        "subTargets": ["bmc", "cpld"],
        "firmwareWindow": {"startTime": "2030-01-01T22:00:00Z", "endTime": "2030-01-02T02:00:00Z"},
    }
    layered = ops.upgrade_firmware(
        pb.UpgradeFirmwareRequest(target_spec=RACKS, target_version='{"NVSwitch": "2.0"}')
    )
    assert layered.options["targetVersion"] == '{"NVSwitch": "2.0"}'


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (pb.UpgradeFirmwareRequest(target_spec=RACKS, sub_targets=["bmc", "bmc"]), "twice"),
        (pb.UpgradeFirmwareRequest(target_spec=RACKS, sub_targets=["nv os"]), "lower-case"),
        (
            pb.UpgradeFirmwareRequest(target_spec=RACKS, target_version='{"compute"}'),
            "does not parse",
        ),
        (pb.UpgradeFirmwareRequest(target_spec=RACKS, target_version="{}x"), "does not parse"),
        (
            pb.UpgradeFirmwareRequest(target_spec=RACKS, end_time=_ts(datetime(2030, 1, 1))),
            "both or neither",
        ),
        (pb.UpgradeFirmwareRequest(target_spec=RACKS, description="d" * 1025), "at most 1024"),
        (pb.UpgradeFirmwareRequest(), "target_spec is empty"),
    ],
)
def test_firmware_refusals(req: pb.UpgradeFirmwareRequest, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        ops.upgrade_firmware(req)
    assert message in err.value.message


def _comp(cid: str, ctype: ComponentType) -> InventoryComponent:
    return InventoryComponent(id=cid, name=cid, type=ctype, serial=cid, core_id=cid)


def test_build_targets_single_group() -> None:
    targets = ops.build_targets(
        [("b01", frozenset({ComponentType.COMPUTE})), ("a01", frozenset({ComponentType.COMPUTE}))],
        {},
        [],
    )
    assert targets == {"racks": ["a01", "b01"], "componentTypes": ["compute"]}


def test_build_targets_merges_and_spells_out_other_groups() -> None:
    inventory = {
        "c01": [
            _comp("c-sw", ComponentType.NVSWITCH),
            _comp("c-ps", ComponentType.POWERSHELF),
            _comp("c-ct", ComponentType.COMPUTE),
        ]
    }
    targets = ops.build_targets(
        [
            ("a01", frozenset()),
            ("b01", frozenset({ComponentType.COMPUTE})),
            # the same rack twice: every type absorbs the narrowing
            ("b01", frozenset()),
            ("c01", frozenset({ComponentType.NVSWITCH})),
            ("c01", frozenset({ComponentType.POWERSHELF})),
        ],
        inventory,
        [{"coreId": "m-9", "type": "compute"}],
    )
    assert targets == {
        "racks": ["a01", "b01"],
        "components": [{"id": "c-ps"}, {"id": "c-sw"}, {"coreId": "m-9", "type": "compute"}],
    }


def test_build_targets_refuses_too_many_components() -> None:
    inventory = {"b01": [_comp(f"c{i}", ComponentType.COMPUTE) for i in range(1100)]}
    with pytest.raises(InvalidArgument, match="split it"):
        ops.build_targets(
            [("a01", frozenset()), ("b01", frozenset({ComponentType.COMPUTE}))], inventory, []
        )


def test_taskspec_body_is_a_valid_taskspec() -> None:
    req = ops.power_off(
        pb.PowerOffRackRequest(
            target_spec=RACKS,
            forced=True,
            description="drill",
            queue_options=pb.QueueOptions(conflict_strategy=pb.CONFLICT_STRATEGY_QUEUE),
        )
    )
    name = ops.taskspec_name(req.code, "0a1b2c3d")
    assert name == "force-power-off-0a1b2c3d"
    ids = {"a01": task_id("ns", task_name(name, "a01"))}
    body = ops.taskspec_body(name, "ns", req, {"racks": ["a01"]}, rule_name="r1", task_ids=ids)
    assert body["metadata"]["labels"]["flow.nico.io/operation"] == "force_power_off"
    assert json.loads(body["metadata"]["annotations"]["flow.nico.io/task-ids"]) == {
        "a01": str(ids["a01"])
    }
    spec = TaskSpecSpec.model_validate(body["spec"])
    assert spec.operation is OperationCode.FORCE_POWER_OFF
    assert spec.conflict_strategy is ConflictStrategy.QUEUE
    assert spec.rule_ref is not None
    assert spec.rule_ref.name == "r1"
    assert spec.description == "drill"


def test_task_ids_are_name_based() -> None:
    a = task_id("nico-flow", "restart-0a1b2c3d-a01")
    assert a == task_id("nico-flow", "restart-0a1b2c3d-a01")
    assert a != task_id("other", "restart-0a1b2c3d-a01")
    assert a.version == 5
