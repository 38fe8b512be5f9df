"""Wire compatibility of proto/flow/v1/flow.proto with the original v1.Flow API.

The tables below are the facts existing clients depend on (names, numbers, types,
labels). Changing any of them breaks those clients, so a change here must be a
deliberate API break, never a side effect of editing the proto.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2 as dpb
from google.protobuf.descriptor import FileDescriptor

from nicoflow._proto.flow.v1 import flow_pb2, flow_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
FILE: FileDescriptor = flow_pb2.DESCRIPTOR

# Every RPC of the original service with its request and response message.
RPCS: dict[str, tuple[str, str]] = {
    "Version": ("VersionRequest", "BuildInfo"),
    # Racks
    "CreateExpectedRack": ("CreateExpectedRackRequest", "CreateExpectedRackResponse"),
    "GetRackInfoByID": ("GetRackInfoByIDRequest", "GetRackInfoResponse"),
    "GetRackInfoBySerial": ("GetRackInfoBySerialRequest", "GetRackInfoResponse"),
    "GetListOfRacks": ("GetListOfRacksRequest", "GetListOfRacksResponse"),
    "PatchRack": ("PatchRackRequest", "PatchRackResponse"),
    "DeleteRack": ("DeleteRackRequest", "DeleteRackResponse"),
    "PurgeRack": ("PurgeRackRequest", "PurgeRackResponse"),
    # Components
    "GetComponentInfoByID": ("GetComponentInfoByIDRequest", "GetComponentInfoResponse"),
    "GetComponentInfoBySerial": ("GetComponentInfoBySerialRequest", "GetComponentInfoResponse"),
    "GetComponents": ("GetComponentsRequest", "GetComponentsResponse"),
    "ValidateComponents": ("ValidateComponentsRequest", "ValidateComponentsResponse"),
    "AddComponent": ("AddComponentRequest", "AddComponentResponse"),
    "PatchComponent": ("PatchComponentRequest", "PatchComponentResponse"),
    "DeleteComponent": ("DeleteComponentRequest", "DeleteComponentResponse"),
    "PurgeComponent": ("PurgeComponentRequest", "PurgeComponentResponse"),
    # NVLink domains
    "CreateNVLDomain": ("CreateNVLDomainRequest", "CreateNVLDomainResponse"),
    "AttachRacksToNVLDomain": ("AttachRacksToNVLDomainRequest", "google.protobuf.Empty"),
    "DetachRacksFromNVLDomain": ("DetachRacksFromNVLDomainRequest", "google.protobuf.Empty"),
    "GetListOfNVLDomains": ("GetListOfNVLDomainsRequest", "GetListOfNVLDomainsResponse"),
    "GetRacksForNVLDomain": ("GetRacksForNVLDomainRequest", "GetRacksForNVLDomainResponse"),
    # Rack operations
    "PowerOnRack": ("PowerOnRackRequest", "SubmitTaskResponse"),
    "PowerOffRack": ("PowerOffRackRequest", "SubmitTaskResponse"),
    "PowerResetRack": ("PowerResetRackRequest", "SubmitTaskResponse"),
    "UpgradeFirmware": ("UpgradeFirmwareRequest", "SubmitTaskResponse"),
    "BringUpRack": ("BringUpRackRequest", "SubmitTaskResponse"),
    "IngestRack": ("IngestRackRequest", "SubmitTaskResponse"),
    # Tasks
    "ListTasks": ("ListTasksRequest", "ListTasksResponse"),
    "GetTasksByIDs": ("GetTasksByIDsRequest", "GetTasksByIDsResponse"),
    "CancelTask": ("CancelTaskRequest", "CancelTaskResponse"),
    # Operation rules and rack associations
    "CreateOperationRule": ("CreateOperationRuleRequest", "CreateOperationRuleResponse"),
    "UpdateOperationRule": ("UpdateOperationRuleRequest", "google.protobuf.Empty"),
    "DeleteOperationRule": ("DeleteOperationRuleRequest", "google.protobuf.Empty"),
    "GetOperationRule": ("GetOperationRuleRequest", "OperationRule"),
    "ListOperationRules": ("ListOperationRulesRequest", "ListOperationRulesResponse"),
    "SetRuleAsDefault": ("SetRuleAsDefaultRequest", "google.protobuf.Empty"),
    "AssociateRuleWithRack": ("AssociateRuleWithRackRequest", "google.protobuf.Empty"),
    "DisassociateRuleFromRack": ("DisassociateRuleFromRackRequest", "google.protobuf.Empty"),
    "GetRackRuleAssociation": ("GetRackRuleAssociationRequest", "GetRackRuleAssociationResponse"),
    "ListRackRuleAssociations": (
        "ListRackRuleAssociationsRequest",
        "ListRackRuleAssociationsResponse",
    ),
    # Task schedules
    "CreateTaskSchedule": ("CreateTaskScheduleRequest", "TaskSchedule"),
    "GetTaskSchedule": ("GetTaskScheduleRequest", "TaskSchedule"),
    "ListTaskSchedules": ("ListTaskSchedulesRequest", "ListTaskSchedulesResponse"),
    "UpdateTaskSchedule": ("UpdateTaskScheduleRequest", "TaskSchedule"),
    "PauseTaskSchedule": ("PauseTaskScheduleRequest", "TaskSchedule"),
    "ResumeTaskSchedule": ("ResumeTaskScheduleRequest", "TaskSchedule"),
    "DeleteTaskSchedule": ("DeleteTaskScheduleRequest", "google.protobuf.Empty"),
    "TriggerTaskSchedule": ("TriggerTaskScheduleRequest", "SubmitTaskResponse"),
    "AddTaskScheduleScope": ("AddTaskScheduleScopeRequest", "AddTaskScheduleScopeResponse"),
    "RemoveTaskScheduleScope": ("RemoveTaskScheduleScopeRequest", "google.protobuf.Empty"),
    "UpdateTaskScheduleScope": (
        "UpdateTaskScheduleScopeRequest",
        "UpdateTaskScheduleScopeResponse",
    ),
    "ListTaskScheduleScopes": ("ListTaskScheduleScopesRequest", "ListTaskScheduleScopesResponse"),
    "CheckScheduleConflicts": ("CheckScheduleConflictsRequest", "CheckScheduleConflictsResponse"),
    # Operation runs
    "CreateOperationRun": ("CreateOperationRunRequest", "CreateOperationRunResponse"),
    "GetOperationRun": ("GetOperationRunRequest", "GetOperationRunResponse"),
    "ListOperationRuns": ("ListOperationRunsRequest", "ListOperationRunsResponse"),
    "ListOperationRunTargets": (
        "ListOperationRunTargetsRequest",
        "ListOperationRunTargetsResponse",
    ),
    "PauseOperationRun": ("PauseOperationRunRequest", "OperationRun"),
    "ResumeOperationRun": ("ResumeOperationRunRequest", "OperationRun"),
    "CancelOperationRun": ("CancelOperationRunRequest", "OperationRun"),
}

# (message, field, number, type, label). Type is a scalar name or a message/enum full
# name; label is "", "repeated", "optional" (proto3 explicit presence) or "oneof:<name>".
FIELDS: list[tuple[str, str, int, str, str]] = [
    ("UUID", "id", 1, "string", ""),
    ("Identifier", "id", 1, "v1.UUID", ""),
    ("Identifier", "name", 2, "string", ""),
    ("Pagination", "offset", 1, "int32", ""),
    ("Pagination", "limit", 2, "int32", ""),
    ("StringQueryInfo", "patterns", 1, "string", "repeated"),
    ("StringQueryInfo", "is_wildcard", 2, "bool", ""),
    ("StringQueryInfo", "use_or", 3, "bool", ""),
    ("Filter", "rack_field", 1, "v1.RackFilterField", "oneof:field"),
    ("Filter", "component_field", 2, "v1.ComponentFilterField", "oneof:field"),
    ("Filter", "query_info", 3, "v1.StringQueryInfo", ""),
    ("OrderBy", "direction", 3, "string", ""),
    ("OperationTargetSpec", "racks", 1, "v1.RackTargets", "oneof:targets"),
    ("OperationTargetSpec", "components", 2, "v1.ComponentTargets", "oneof:targets"),
    ("RackTargets", "targets", 1, "v1.RackTarget", "repeated"),
    ("RackTarget", "id", 1, "v1.UUID", "oneof:identifier"),
    ("RackTarget", "name", 2, "string", "oneof:identifier"),
    ("RackTarget", "component_types", 3, "v1.ComponentType", "repeated"),
    ("ComponentTarget", "id", 1, "v1.UUID", "oneof:identifier"),
    ("ComponentTarget", "external", 2, "v1.ExternalRef", "oneof:identifier"),
    ("ExternalRef", "type", 1, "v1.ComponentType", ""),
    ("ExternalRef", "id", 2, "string", ""),
    ("DeviceInfo", "model", 4, "string", "optional"),
    ("DeviceInfo", "serial_number", 5, "string", ""),
    ("DeviceInfo", "description", 6, "string", "optional"),
    ("BMCInfo", "type", 1, "v1.BMCType", ""),
    ("BMCInfo", "mac_address", 2, "string", ""),
    ("BMCInfo", "ip_address", 3, "string", "optional"),
    ("RackPosition", "slot_id", 1, "int32", ""),
    ("RackPosition", "tray_idx", 2, "int32", ""),
    ("RackPosition", "host_id", 3, "int32", ""),
    ("Component", "type", 1, "v1.ComponentType", ""),
    ("Component", "bmcs", 5, "v1.BMCInfo", "repeated"),
    ("Component", "component_id", 6, "string", ""),
    ("Component", "rack_id", 7, "v1.UUID", ""),
    ("Component", "power_state", 8, "string", ""),
    ("Component", "status", 9, "v1.ComponentOperationStatus", ""),
    ("Component", "leak_status", 10, "v1.LeakStatus", ""),
    ("ComponentOperationStatus", "blocked_operations", 3, "v1.OperationType", "repeated"),
    ("Rack", "components", 3, "v1.Component", "repeated"),
    ("Task", "operation", 2, "string", ""),
    ("Task", "component_uuids", 4, "v1.UUID", "repeated"),
    ("Task", "executor_type", 6, "v1.TaskExecutorType", ""),
    ("Task", "status", 8, "v1.TaskStatus", ""),
    ("Task", "queue_expires_at", 10, "google.protobuf.Timestamp", "optional"),
    ("Task", "created_at", 11, "google.protobuf.Timestamp", ""),
    ("Task", "applied_rule_id", 13, "v1.UUID", "optional"),
    ("Task", "started_at", 15, "google.protobuf.Timestamp", "optional"),
    ("Task", "report", 16, "string", ""),
    ("QueueOptions", "conflict_strategy", 1, "v1.ConflictStrategy", ""),
    ("QueueOptions", "queue_timeout_seconds", 2, "int32", ""),
    ("PowerOnRackRequest", "queue_options", 3, "v1.QueueOptions", "optional"),
    ("PowerOnRackRequest", "rule_id", 4, "v1.UUID", "optional"),
    ("PowerOnRackRequest", "override_readiness_check", 5, "bool", ""),
    ("PowerOffRackRequest", "forced", 2, "bool", ""),
    ("PowerOffRackRequest", "override_readiness_check", 6, "bool", ""),
    ("PowerResetRackRequest", "queue_options", 4, "v1.QueueOptions", "optional"),
    ("UpgradeFirmwareRequest", "target_spec", 1, "v1.OperationTargetSpec", ""),
    ("UpgradeFirmwareRequest", "target_version", 2, "string", "optional"),
    ("UpgradeFirmwareRequest", "start_time", 3, "google.protobuf.Timestamp", "optional"),
    ("UpgradeFirmwareRequest", "end_time", 4, "google.protobuf.Timestamp", "optional"),
    ("UpgradeFirmwareRequest", "queue_options", 6, "v1.QueueOptions", "optional"),
    ("UpgradeFirmwareRequest", "sub_targets", 8, "string", "repeated"),
    ("UpgradeFirmwareRequest", "override_readiness_check", 9, "bool", ""),
    ("BringUpRackRequest", "rule_id", 3, "v1.UUID", "optional"),
    ("BringUpRackRequest", "override_readiness_check", 4, "bool", ""),
    ("IngestRackRequest", "filters", 2, "v1.Filter", "repeated"),
    ("IngestRackRequest", "rule_id", 4, "v1.UUID", "optional"),
    ("SubmitTaskResponse", "task_ids", 1, "v1.UUID", "repeated"),
    ("ListTasksRequest", "rack_id", 1, "v1.UUID", "optional"),
    ("ListTasksRequest", "active_only", 2, "bool", ""),
    ("ListTasksRequest", "component_id", 4, "v1.UUID", "optional"),
    ("ListTasksRequest", "with_report", 5, "bool", ""),
    ("GetListOfRacksRequest", "pagination", 3, "v1.Pagination", "optional"),
    ("GetComponentsRequest", "target_spec", 1, "v1.OperationTargetSpec", "optional"),
    ("ValidateComponentsResponse", "match_count", 6, "int32", ""),
    ("ComponentDiff", "field_diffs", 5, "v1.FieldDiff", "repeated"),
    ("ComponentDiff", "id", 6, "v1.UUID", ""),
    ("PatchComponentRequest", "firmware_version", 2, "string", "optional"),
    ("PatchComponentRequest", "bmcs", 6, "v1.BMCInfo", "repeated"),
    ("ListOperationRulesRequest", "limit", 4, "int32", "optional"),
    ("OperationRule", "rule_definition_json", 6, "string", ""),
    ("OperationRule", "is_default", 7, "bool", ""),
    ("TaskSchedule", "next_run_at", 6, "google.protobuf.Timestamp", "optional"),
    ("TaskSchedule", "operation_type", 10, "string", ""),
    ("TaskSchedule", "description", 11, "string", ""),
    ("TaskScheduleScope", "types", 4, "v1.ComponentTypes", "oneof:component_filter"),
    ("TaskScheduleScope", "components", 5, "v1.ComponentTargets", "oneof:component_filter"),
    ("TaskScheduleScope", "last_task_id", 6, "v1.UUID", ""),
    ("ScheduledOperation", "power_on", 1, "v1.PowerOnRackRequest", "oneof:operation"),
    ("ScheduledOperation", "ingest", 6, "v1.IngestRackRequest", "oneof:operation"),
    ("UpdateTaskScheduleRequest", "update_mask", 3, "google.protobuf.FieldMask", ""),
    ("CheckScheduleConflictsRequest", "exclude_schedule_id", 2, "v1.UUID", "optional"),
    ("OperationRunOrderingPolicy", "physical_location", 3,
     "v1.OperationRunPhysicalLocationOrdering", "oneof:ordering"),
    ("OperationRunConflictRetryPolicy", "retry_timeout", 1, "google.protobuf.Duration", ""),
    ("OperationRunTarget", "message", 8, "string", ""),
    ("OperationRunTarget", "components_by_type", 9, "v1.ComponentsByType", ""),
    ("OperationRunTarget", "created_at", 10, "google.protobuf.Timestamp", ""),
    ("OperationRunTarget", "updated_at", 11, "google.protobuf.Timestamp", ""),
    ("OperationRunTargetScope", "exclude_operation_run_ids", 1, "v1.UUID", "repeated"),
    ("OperationRunTargetScope", "default_scope_component_filter", 2, "v1.ComponentFilter", ""),
    ("OperationRunOperation", "target_scope", 2, "v1.OperationRunTargetScope", ""),
    ("ComponentFilter", "types", 1, "v1.ComponentTypes", "oneof:filter"),
    ("ComponentFilter", "components", 2, "v1.ComponentTargets", "oneof:filter"),
    ("ComponentsByType", "groups", 1, "v1.ComponentsForType", "repeated"),
    ("ComponentsForType", "type", 1, "v1.ComponentType", ""),
    ("ComponentsForType", "component_ids", 2, "v1.UUID", "repeated"),
]  # fmt: skip

ENUMS: dict[str, dict[str, int]] = {
    "ComponentType": {
        "COMPONENT_TYPE_UNKNOWN": 0,
        "COMPONENT_TYPE_COMPUTE": 1,
        "COMPONENT_TYPE_NVSWITCH": 2,
        "COMPONENT_TYPE_POWERSHELF": 3,
        "COMPONENT_TYPE_TORSWITCH": 4,
        "COMPONENT_TYPE_UMS": 5,
        "COMPONENT_TYPE_CDU": 6,
    },
    "BMCType": {"BMC_TYPE_UNKNOWN": 0, "BMC_TYPE_HOST": 1, "BMC_TYPE_DPU": 2},
    "TaskStatus": {
        "TASK_STATUS_UNKNOWN": 0,
        "TASK_STATUS_PENDING": 1,
        "TASK_STATUS_RUNNING": 2,
        "TASK_STATUS_COMPLETED": 3,
        "TASK_STATUS_FAILED": 4,
        "TASK_STATUS_TERMINATED": 5,
        "TASK_STATUS_WAITING": 6,
    },
    "TaskExecutorType": {"TASK_EXECUTOR_TYPE_UNKNOWN": 0, "TASK_EXECUTOR_TYPE_TEMPORAL": 1},
    "ConflictStrategy": {
        "CONFLICT_STRATEGY_UNSPECIFIED": 0,
        "CONFLICT_STRATEGY_QUEUE": 1,
        "CONFLICT_STRATEGY_REJECT": 2,
    },
    "OperationType": {
        "OPERATION_TYPE_UNKNOWN": 0,
        "OPERATION_TYPE_POWER_CONTROL": 1,
        "OPERATION_TYPE_FIRMWARE_CONTROL": 2,
    },
    "Phase": {
        "PHASE_UNKNOWN": 0,
        "PHASE_INITIALIZING": 1,
        "PHASE_READY": 2,
        "PHASE_IN_USE": 3,
        "PHASE_ERROR": 4,
        "PHASE_DELETING": 5,
    },
    "LeakStatus": {
        "LEAK_STATUS_UNKNOWN": 0,
        "LEAK_STATUS_DETECTED": 1,
        "LEAK_STATUS_NOT_DETECTED": 2,
    },
    "DiffType": {
        "DIFF_TYPE_UNKNOWN": 0,
        "DIFF_TYPE_MISSING": 1,
        "DIFF_TYPE_UNEXPECTED": 2,
        "DIFF_TYPE_MISMATCH": 3,
    },
    "ComponentFilterField": {
        "COMPONENT_FILTER_FIELD_UNSPECIFIED": 0,
        "COMPONENT_FILTER_FIELD_NAME": 1,
        "COMPONENT_FILTER_FIELD_MANUFACTURER": 2,
        "COMPONENT_FILTER_FIELD_MODEL": 3,
        "COMPONENT_FILTER_FIELD_TYPE": 4,
    },
    "RackOrderByField": {
        "RACK_ORDER_BY_FIELD_UNSPECIFIED": 0,
        "RACK_ORDER_BY_FIELD_NAME": 1,
        "RACK_ORDER_BY_FIELD_MANUFACTURER": 2,
        "RACK_ORDER_BY_FIELD_MODEL": 3,
    },
    "PowerControlOp": {
        "POWER_CONTROL_OP_UNKNOWN": 0,
        "POWER_CONTROL_OP_ON": 1,
        "POWER_CONTROL_OP_FORCE_ON": 2,
        "POWER_CONTROL_OP_OFF": 3,
        "POWER_CONTROL_OP_FORCE_OFF": 4,
        "POWER_CONTROL_OP_RESTART": 5,
        "POWER_CONTROL_OP_FORCE_RESTART": 6,
        "POWER_CONTROL_OP_WARM_RESET": 7,
        "POWER_CONTROL_OP_COLD_RESET": 8,
    },
    "ScheduleSpecType": {
        "SCHEDULE_SPEC_TYPE_UNSPECIFIED": 0,
        "SCHEDULE_SPEC_TYPE_INTERVAL": 1,
        "SCHEDULE_SPEC_TYPE_CRON": 2,
        "SCHEDULE_SPEC_TYPE_ONE_TIME": 3,
    },
    "OverlapPolicy": {
        "OVERLAP_POLICY_UNSPECIFIED": 0,
        "OVERLAP_POLICY_SKIP": 1,
        "OVERLAP_POLICY_QUEUE": 2,
    },
    "OperationRunTargetStatus": {
        "OPERATION_RUN_TARGET_STATUS_UNKNOWN": 0,
        "OPERATION_RUN_TARGET_STATUS_PENDING": 1,
        "OPERATION_RUN_TARGET_STATUS_BLOCKED": 2,
        "OPERATION_RUN_TARGET_STATUS_SUBMITTED": 3,
        "OPERATION_RUN_TARGET_STATUS_COMPLETED": 4,
        "OPERATION_RUN_TARGET_STATUS_FAILED": 5,
        "OPERATION_RUN_TARGET_STATUS_TERMINATED": 6,
        "OPERATION_RUN_TARGET_STATUS_SKIPPED": 7,
    },
}

SCALAR_NAMES = {
    v: k.removeprefix("TYPE_").lower() for k, v in dpb.FieldDescriptorProto.Type.items()
}


def field_facts(message: str, field: str) -> tuple[int, str, str]:
    """(number, type, label) of one field, read from the compiled descriptor."""
    proto = dpb.DescriptorProto()
    FILE.message_types_by_name[message].CopyToProto(proto)
    (f,) = (f for f in proto.field if f.name == field)
    type_name = f.type_name.lstrip(".") if f.type_name else SCALAR_NAMES[f.type]
    if f.label == dpb.FieldDescriptorProto.LABEL_REPEATED:
        label = "repeated"
    elif f.proto3_optional:
        label = "optional"
    elif f.HasField("oneof_index"):
        label = f"oneof:{proto.oneof_decl[f.oneof_index].name}"
    else:
        label = ""
    return f.number, type_name, label


def test_package_service_and_imports() -> None:
    assert FILE.package == "v1"
    assert FILE.name == "flow.proto"  # the original's descriptor name
    assert "Flow" in FILE.services_by_name
    assert FILE.services_by_name["Flow"].full_name == "v1.Flow"
    assert sorted(d.name for d in FILE.dependencies) == [
        "google/protobuf/duration.proto",
        "google/protobuf/empty.proto",
        "google/protobuf/field_mask.proto",
        "google/protobuf/timestamp.proto",
    ]


def test_service_has_exactly_the_original_rpcs() -> None:
    service = FILE.services_by_name["Flow"]
    assert len(RPCS) == 60
    assert sorted(m.name for m in service.methods) == sorted(RPCS)


@pytest.mark.parametrize(("rpc", "types"), sorted(RPCS.items()))
def test_rpc_request_and_response(rpc: str, types: tuple[str, str]) -> None:
    method = FILE.services_by_name["Flow"].methods_by_name[rpc]
    request, response = types
    assert method.input_type.full_name == (request if "." in request else f"v1.{request}")
    assert method.output_type.full_name == (response if "." in response else f"v1.{response}")
    assert not method.client_streaming
    assert not method.server_streaming


def test_generated_servicer_and_stub_cover_every_rpc() -> None:
    for rpc in RPCS:
        assert callable(getattr(flow_pb2_grpc.FlowServicer, rpc))
    # The stub builds one multicallable per RPC on construction.
    assert "/v1.Flow/PowerOnRack" in Path(flow_pb2_grpc.__file__).read_text()


@pytest.mark.parametrize(
    ("message", "field", "number", "type_name", "label"),
    FIELDS,
    ids=[f"{m}.{f}" for m, f, *_ in FIELDS],
)
def test_field_wire_facts(
    message: str, field: str, number: int, type_name: str, label: str
) -> None:
    assert field_facts(message, field) == (number, type_name, label)


@pytest.mark.parametrize(("enum", "values"), sorted(ENUMS.items()))
def test_enum_values(enum: str, values: dict[str, int]) -> None:
    descriptor = FILE.enum_types_by_name[enum]
    assert {v.name: v.number for v in descriptor.values} == values


def test_operation_run_messages_have_exactly_the_originals_fields() -> None:
    """No field the original does not have (a client's unknown-field handling
    would hide a mismatch), and no enum of our own."""
    for message, names in {
        "OperationRunTarget": [
            "id", "operation_run_id", "rack_id", "sequence_index", "phase_index", "task_id",
            "status", "message", "components_by_type", "created_at", "updated_at",
        ],
        "OperationRunTargetScope": ["exclude_operation_run_ids", "default_scope_component_filter"],
    }.items():  # fmt: skip
        assert [f.name for f in FILE.message_types_by_name[message].fields] == names
    assert "OperationRunInclusiveScopeComposition" not in FILE.enum_types_by_name


def test_nested_strategy_enum() -> None:
    strategy = flow_pb2.OperationRunPhysicalLocationOrdering.Strategy
    assert strategy.Value("STRATEGY_ROW_BY_ROW") == 1
    assert strategy.Value("STRATEGY_ONE_PER_ROW_ROUND_ROBIN") == 2


def test_encoded_bytes_match_the_original_tags() -> None:
    # Field 16 (length-delimited) needs a two-byte tag: (16 << 3) | 2 = 130 -> 0x82 0x01.
    assert flow_pb2.Task(report="{}").SerializeToString() == b"\x82\x01\x02{}"
    racks = flow_pb2.OperationTargetSpec(racks=flow_pb2.RackTargets())
    components = flow_pb2.OperationTargetSpec(components=flow_pb2.ComponentTargets())
    assert racks.SerializeToString() == b"\x0a\x00"
    assert components.SerializeToString() == b"\x12\x00"
    waiting = flow_pb2.Task(status=flow_pb2.TASK_STATUS_WAITING)
    assert waiting.SerializeToString() == b"\x40\x06"


def test_proto3_optional_keeps_presence() -> None:
    # Clients rely on "unset" differing from the zero value for these fields.
    request = flow_pb2.UpgradeFirmwareRequest()
    assert not request.HasField("target_version")
    request.target_version = ""
    assert request.HasField("target_version")
    rules = flow_pb2.ListOperationRulesRequest(is_default=False)
    assert rules.HasField("is_default")


def load_docs_generator() -> ModuleType:
    path = REPO_ROOT / "hack" / "gen_api_docs.py"
    spec = importlib.util.spec_from_file_location("gen_api_docs", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_api_docs_are_current(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gen = load_docs_generator()
    monkeypatch.setattr(sys, "argv", ["gen_api_docs.py", "--check"])
    assert gen.main() == 0, "docs/grpc-api.md is stale: run .venv/bin/python hack/gen_api_docs.py"

    stale = tmp_path / "grpc-api.md"
    stale.write_text((REPO_ROOT / "docs" / "grpc-api.md").read_text() + "edited by hand\n")
    monkeypatch.setattr(gen, "OUT", stale)
    assert gen.main() == 1


def test_api_docs_cover_every_rpc_message_and_enum() -> None:
    text = (REPO_ROOT / "docs" / "grpc-api.md").read_text()
    for rpc in RPCS:
        assert f"| `{rpc}` |" in text
    for name in [*FILE.message_types_by_name, *FILE.enum_types_by_name]:
        assert f"### `{name}`\n" in text
    assert "| `report` | 16 | `string` |" in text
    assert "| `TASK_STATUS_WAITING` | 6 |" in text


def test_api_docs_list_the_differences_from_the_original() -> None:
    text = (REPO_ROOT / "docs" / "grpc-api.md").read_text()
    assert "## Differences from the original" in text
    section = text.split("## Differences from the original", 1)[1]
    assert "### Not the same yet" in section
    assert "UNIMPLEMENTED" in section
