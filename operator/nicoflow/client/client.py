"""`FlowClient`: a typed, synchronous client of the Flow API (v1.Flow).

    with FlowClient("flow.example.net", 50051, tls=TlsSettings(cert_dir="/certs")) as flow:
        rack = flow.get_rack(rack_id)
        task_ids = flow.power_on(rack_targets(names=["a01"]))

Methods return the v1 messages (or small dataclasses for pages and lookups)
and raise `FlowError` with the gRPC code and the server's message."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow._proto.flow.v1 import flow_pb2_grpc
from nicoflow.client.errors import FlowError
from nicoflow.client.targets import identifier
from nicoflow.client.tls import TlsMaterial, TlsSettings, resolve

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 50051
DEFAULT_TIMEOUT = 30.0
NIL_UUID = "00000000-0000-0000-0000-000000000000"
_MESSAGE_LIMIT = 64 * 1024 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int


@dataclass(frozen=True)
class ComponentInfo:
    component: pb.Component
    rack: pb.Rack | None


@dataclass(frozen=True)
class QueueOptions:
    """What a busy rack does to a request: wait (queue) or refuse (reject)."""

    queue: bool = False
    timeout_seconds: int = 0  # 0 = the server default (one hour)

    def message(self) -> pb.QueueOptions:
        strategy = pb.CONFLICT_STRATEGY_QUEUE if self.queue else pb.CONFLICT_STRATEGY_REJECT
        return pb.QueueOptions(
            conflict_strategy=strategy, queue_timeout_seconds=self.timeout_seconds
        )


def _page(offset: int | None, limit: int | None) -> pb.Pagination | None:
    if offset is None and limit is None:
        return None
    return pb.Pagination(offset=offset or 0, limit=limit if limit is not None else 100)


def _ids(response: pb.SubmitTaskResponse) -> list[str]:
    return [t.id for t in response.task_ids]


def _timestamp(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _hint(code: grpc.StatusCode, target: str, tls: TlsMaterial | None) -> str:
    if code is not grpc.StatusCode.UNAVAILABLE:
        return ""
    if tls is None:
        return (
            f"no Flow API answered plaintext gRPC at {target}; check the address, and if the "
            "server requires TLS pass --ca-cert, --tls-cert and --tls-key"
        )
    return (
        f"no TLS connection to {target}; check the address, that the CA signed the server "
        "certificate, the server name (--server-name) and that the server accepts this "
        "client certificate"
    )


class FlowClient:
    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        tls: TlsSettings | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.target = f"[{host}]" if ":" in host and not host.startswith("[") else host
        self.target = f"{self.target}:{port}"
        self.timeout = timeout
        self._tls: TlsMaterial | None = None
        if channel is None:
            self._tls = resolve(tls or TlsSettings())
            channel = self._open(self._tls)
        self._channel = channel
        self._stub = flow_pb2_grpc.FlowStub(channel)

    def _open(self, tls: TlsMaterial | None) -> grpc.Channel:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
            ("grpc.max_send_message_length", _MESSAGE_LIMIT),
        ]
        if tls is None:
            return grpc.insecure_channel(self.target, options=options)
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        creds = grpc.ssl_channel_credentials(
            root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
        )
        return grpc.secure_channel(self.target, creds, options=options)

    # --- plumbing -----------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> FlowClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def call(self, method: str, request: Message, timeout: float | None = None) -> Any:
        """Any v1.Flow method by name; FlowError when it fails."""
        rpc: Callable[..., Any] = getattr(self._stub, method)
        try:
            return rpc(request, timeout=timeout if timeout is not None else self.timeout)
        except grpc.RpcError as err:
            code: grpc.StatusCode = err.code()
            details: str = err.details() or ""
            raise FlowError(code, details, hint=_hint(code, self.target, self._tls)) from None

    # --- version ------------------------------------------------------------------------

    def version(self, *, timeout: float | None = None) -> pb.BuildInfo:
        result: pb.BuildInfo = self.call("Version", pb.VersionRequest(), timeout)
        return result

    # --- racks --------------------------------------------------------------------------

    def create_rack(self, rack: pb.Rack, *, timeout: float | None = None) -> str:
        resp = self.call("CreateExpectedRack", pb.CreateExpectedRackRequest(rack=rack), timeout)
        return str(resp.id.id)

    def get_rack(
        self, rack_id: str, *, with_components: bool = True, timeout: float | None = None
    ) -> pb.Rack:
        req = pb.GetRackInfoByIDRequest(id=pb.UUID(id=rack_id), with_components=with_components)
        rack: pb.Rack = self.call("GetRackInfoByID", req, timeout).rack
        return rack

    def get_rack_by_serial(
        self,
        manufacturer: str,
        serial_number: str,
        *,
        with_components: bool = True,
        timeout: float | None = None,
    ) -> pb.Rack:
        req = pb.GetRackInfoBySerialRequest(
            serial_info=pb.DeviceSerialInfo(manufacturer=manufacturer, serial_number=serial_number),
            with_components=with_components,
        )
        rack: pb.Rack = self.call("GetRackInfoBySerial", req, timeout).rack
        return rack

    def list_racks(
        self,
        *,
        filters: Iterable[pb.Filter] = (),
        with_components: bool = False,
        offset: int | None = None,
        limit: int | None = None,
        order_by: pb.OrderBy | None = None,
        timeout: float | None = None,
    ) -> Page[pb.Rack]:
        req = pb.GetListOfRacksRequest(
            filters=list(filters),
            with_components=with_components,
            pagination=_page(offset, limit),
            order_by=order_by,
        )
        resp = self.call("GetListOfRacks", req, timeout)
        return Page(list(resp.racks), resp.total)

    def patch_rack(self, rack: pb.Rack, *, timeout: float | None = None) -> dict[str, Any]:
        """The server's report of what was added, patched or unchanged."""
        resp = self.call("PatchRack", pb.PatchRackRequest(rack=rack), timeout)
        report: dict[str, Any] = json.loads(resp.report) if resp.report else {}
        return report

    def delete_rack(self, rack_id: str, *, timeout: float | None = None) -> None:
        self.call("DeleteRack", pb.DeleteRackRequest(id=pb.UUID(id=rack_id)), timeout)

    def purge_rack(self, rack_id: str, *, timeout: float | None = None) -> None:
        self.call("PurgeRack", pb.PurgeRackRequest(id=pb.UUID(id=rack_id)), timeout)

    # --- components ---------------------------------------------------------------------

    @staticmethod
    def _info(resp: pb.GetComponentInfoResponse) -> ComponentInfo:
        return ComponentInfo(resp.component, resp.rack if resp.HasField("rack") else None)

    def get_component(
        self, component_id: str, *, with_rack: bool = False, timeout: float | None = None
    ) -> ComponentInfo:
        req = pb.GetComponentInfoByIDRequest(id=pb.UUID(id=component_id), with_rack=with_rack)
        return self._info(self.call("GetComponentInfoByID", req, timeout))

    def get_component_by_serial(
        self,
        manufacturer: str,
        serial_number: str,
        *,
        with_rack: bool = False,
        timeout: float | None = None,
    ) -> ComponentInfo:
        req = pb.GetComponentInfoBySerialRequest(
            serial_info=pb.DeviceSerialInfo(manufacturer=manufacturer, serial_number=serial_number),
            with_rack=with_rack,
        )
        return self._info(self.call("GetComponentInfoBySerial", req, timeout))

    def list_components(
        self,
        *,
        target_spec: pb.OperationTargetSpec | None = None,
        filters: Iterable[pb.Filter] = (),
        offset: int | None = None,
        limit: int | None = None,
        order_by: pb.OrderBy | None = None,
        timeout: float | None = None,
    ) -> Page[pb.Component]:
        req = pb.GetComponentsRequest(
            target_spec=target_spec,
            filters=list(filters),
            pagination=_page(offset, limit),
            order_by=order_by,
        )
        resp = self.call("GetComponents", req, timeout)
        return Page(list(resp.components), resp.total)

    def validate_components(
        self,
        *,
        target_spec: pb.OperationTargetSpec | None = None,
        filters: Iterable[pb.Filter] = (),
        offset: int | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> pb.ValidateComponentsResponse:
        req = pb.ValidateComponentsRequest(
            target_spec=target_spec, filters=list(filters), pagination=_page(offset, limit)
        )
        resp: pb.ValidateComponentsResponse = self.call("ValidateComponents", req, timeout)
        return resp

    def add_component(
        self, component: pb.Component, *, timeout: float | None = None
    ) -> pb.Component:
        resp = self.call("AddComponent", pb.AddComponentRequest(component=component), timeout)
        added: pb.Component = resp.component
        return added

    def patch_component(
        self,
        component_id: str,
        *,
        firmware_version: str | None = None,
        position: pb.RackPosition | None = None,
        description: str | None = None,
        rack_id: str | None = None,
        bmcs: Sequence[pb.BMCInfo] = (),
        timeout: float | None = None,
    ) -> pb.Component:
        req = pb.PatchComponentRequest(id=pb.UUID(id=component_id), bmcs=list(bmcs))
        if firmware_version is not None:
            req.firmware_version = firmware_version
        if position is not None:
            req.position.CopyFrom(position)
        if description is not None:
            req.description = description
        if rack_id is not None:
            req.rack_id.id = rack_id
        patched: pb.Component = self.call("PatchComponent", req, timeout).component
        return patched

    def delete_component(self, component_id: str, *, timeout: float | None = None) -> None:
        req = pb.DeleteComponentRequest(id=pb.UUID(id=component_id))
        self.call("DeleteComponent", req, timeout)

    def purge_component(self, component_id: str, *, timeout: float | None = None) -> None:
        self.call("PurgeComponent", pb.PurgeComponentRequest(id=pb.UUID(id=component_id)), timeout)

    # --- NVLink domains -----------------------------------------------------------------

    def create_nvl_domain(self, name: str, *, timeout: float | None = None) -> str:
        req = pb.CreateNVLDomainRequest(
            nvl_domain=pb.NVLDomain(identifier=pb.Identifier(name=name))
        )
        return str(self.call("CreateNVLDomain", req, timeout).id.id)

    def attach_racks(
        self, domain: str, racks: Sequence[str], *, timeout: float | None = None
    ) -> None:
        """`domain` and `racks` by UUID or name."""
        req = pb.AttachRacksToNVLDomainRequest(
            nvl_domain_identifier=identifier(domain),
            rack_identifiers=[identifier(r) for r in racks],
        )
        self.call("AttachRacksToNVLDomain", req, timeout)

    def detach_racks(self, racks: Sequence[str], *, timeout: float | None = None) -> None:
        req = pb.DetachRacksFromNVLDomainRequest(rack_identifiers=[identifier(r) for r in racks])
        self.call("DetachRacksFromNVLDomain", req, timeout)

    def list_nvl_domains(
        self,
        patterns: Sequence[str] = ("%",),
        *,
        wildcard: bool = True,
        use_or: bool = True,
        offset: int | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> Page[pb.NVLDomain]:
        req = pb.GetListOfNVLDomainsRequest(
            info=pb.StringQueryInfo(patterns=list(patterns), is_wildcard=wildcard, use_or=use_or),
            pagination=_page(offset, limit),
        )
        resp = self.call("GetListOfNVLDomains", req, timeout)
        return Page(list(resp.nvl_domains), resp.total)

    def racks_for_nvl_domain(self, domain: str, *, timeout: float | None = None) -> list[pb.Rack]:
        req = pb.GetRacksForNVLDomainRequest(nvl_domain_identifier=identifier(domain))
        return list(self.call("GetRacksForNVLDomain", req, timeout).racks)

    # --- operations (each returns one task id per rack) ---------------------------------

    def power_on(
        self,
        target_spec: pb.OperationTargetSpec,
        *,
        description: str = "",
        queue: QueueOptions | None = None,
        rule_id: str | None = None,
        override_readiness_check: bool = False,
        timeout: float | None = None,
    ) -> list[str]:
        req = pb.PowerOnRackRequest(
            target_spec=target_spec,
            description=description,
            queue_options=queue.message() if queue else None,
            rule_id=pb.UUID(id=rule_id) if rule_id else None,
            override_readiness_check=override_readiness_check,
        )
        return _ids(self.call("PowerOnRack", req, timeout))

    def power_off(
        self,
        target_spec: pb.OperationTargetSpec,
        *,
        forced: bool = False,
        description: str = "",
        queue: QueueOptions | None = None,
        rule_id: str | None = None,
        override_readiness_check: bool = False,
        timeout: float | None = None,
    ) -> list[str]:
        req = pb.PowerOffRackRequest(
            target_spec=target_spec,
            forced=forced,
            description=description,
            queue_options=queue.message() if queue else None,
            rule_id=pb.UUID(id=rule_id) if rule_id else None,
            override_readiness_check=override_readiness_check,
        )
        return _ids(self.call("PowerOffRack", req, timeout))

    def power_reset(
        self,
        target_spec: pb.OperationTargetSpec,
        *,
        forced: bool = False,
        description: str = "",
        queue: QueueOptions | None = None,
        rule_id: str | None = None,
        override_readiness_check: bool = False,
        timeout: float | None = None,
    ) -> list[str]:
        req = pb.PowerResetRackRequest(
            target_spec=target_spec,
            forced=forced,
            description=description,
            queue_options=queue.message() if queue else None,
            rule_id=pb.UUID(id=rule_id) if rule_id else None,
            override_readiness_check=override_readiness_check,
        )
        return _ids(self.call("PowerResetRack", req, timeout))

    def upgrade_firmware(
        self,
        target_spec: pb.OperationTargetSpec,
        *,
        target_version: str | None = None,
        sub_targets: Sequence[str] = (),
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        description: str = "",
        queue: QueueOptions | None = None,
        rule_id: str | None = None,
        override_readiness_check: bool = False,
        timeout: float | None = None,
    ) -> list[str]:
        req = pb.UpgradeFirmwareRequest(
            target_spec=target_spec,
            target_version=target_version,
            start_time=_timestamp(start_time) if start_time else None,
            end_time=_timestamp(end_time) if end_time else None,
            description=description,
            queue_options=queue.message() if queue else None,
            rule_id=pb.UUID(id=rule_id) if rule_id else None,
            sub_targets=list(sub_targets),
            override_readiness_check=override_readiness_check,
        )
        return _ids(self.call("UpgradeFirmware", req, timeout))

    def bring_up(
        self,
        target_spec: pb.OperationTargetSpec,
        *,
        description: str = "",
        rule_id: str | None = None,
        override_readiness_check: bool = False,
        timeout: float | None = None,
    ) -> list[str]:
        req = pb.BringUpRackRequest(
            target_spec=target_spec,
            description=description,
            rule_id=pb.UUID(id=rule_id) if rule_id else None,
            override_readiness_check=override_readiness_check,
        )
        return _ids(self.call("BringUpRack", req, timeout))

    def ingest(
        self,
        target_spec: pb.OperationTargetSpec,
        *,
        description: str = "",
        rule_id: str | None = None,
        timeout: float | None = None,
    ) -> list[str]:
        req = pb.IngestRackRequest(
            target_spec=target_spec,
            description=description,
            rule_id=pb.UUID(id=rule_id) if rule_id else None,
        )
        return _ids(self.call("IngestRack", req, timeout))

    # --- tasks --------------------------------------------------------------------------

    def list_tasks(
        self,
        *,
        rack_id: str | None = None,
        component_id: str | None = None,
        active_only: bool = False,
        with_report: bool = False,
        offset: int | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> Page[pb.Task]:
        req = pb.ListTasksRequest(
            rack_id=pb.UUID(id=rack_id) if rack_id else None,
            component_id=pb.UUID(id=component_id) if component_id else None,
            active_only=active_only,
            with_report=with_report,
            pagination=_page(offset, limit),
        )
        resp = self.call("ListTasks", req, timeout)
        return Page(list(resp.tasks), resp.total)

    def get_tasks(self, task_ids: Sequence[str], *, timeout: float | None = None) -> list[pb.Task]:
        req = pb.GetTasksByIDsRequest(task_ids=[pb.UUID(id=t) for t in task_ids])
        return list(self.call("GetTasksByIDs", req, timeout).tasks)

    def cancel_task(self, task_id: str, *, timeout: float | None = None) -> pb.Task:
        task: pb.Task = self.call(
            "CancelTask", pb.CancelTaskRequest(task_id=pb.UUID(id=task_id)), timeout
        ).task
        return task

    # --- operation rules ----------------------------------------------------------------

    def create_rule(
        self,
        *,
        name: str,
        operation_type: pb.OperationType.ValueType,
        operation_code: str,
        rule_definition_json: str,
        description: str = "",
        is_default: bool = False,
        timeout: float | None = None,
    ) -> str:
        req = pb.CreateOperationRuleRequest(
            name=name,
            description=description,
            operation_type=operation_type,
            operation_code=operation_code,
            rule_definition_json=rule_definition_json,
            is_default=is_default,
        )
        return str(self.call("CreateOperationRule", req, timeout).id.id)

    def update_rule(
        self,
        rule_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        rule_definition_json: str | None = None,
        timeout: float | None = None,
    ) -> None:
        req = pb.UpdateOperationRuleRequest(
            rule_id=pb.UUID(id=rule_id),
            name=name,
            description=description,
            rule_definition_json=rule_definition_json,
        )
        self.call("UpdateOperationRule", req, timeout)

    def delete_rule(self, rule_id: str, *, timeout: float | None = None) -> None:
        req = pb.DeleteOperationRuleRequest(rule_id=pb.UUID(id=rule_id))
        self.call("DeleteOperationRule", req, timeout)

    def get_rule(self, rule_id: str, *, timeout: float | None = None) -> pb.OperationRule:
        req = pb.GetOperationRuleRequest(rule_id=pb.UUID(id=rule_id))
        rule: pb.OperationRule = self.call("GetOperationRule", req, timeout)
        return rule

    def list_rules(
        self,
        *,
        operation_type: pb.OperationType.ValueType | None = None,
        is_default: bool | None = None,
        offset: int | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> Page[pb.OperationRule]:
        req = pb.ListOperationRulesRequest(
            operation_type=operation_type, is_default=is_default, offset=offset, limit=limit
        )
        resp = self.call("ListOperationRules", req, timeout)
        return Page(list(resp.rules), resp.total_count)

    def set_default_rule(self, rule_id: str, *, timeout: float | None = None) -> None:
        self.call(
            "SetRuleAsDefault", pb.SetRuleAsDefaultRequest(rule_id=pb.UUID(id=rule_id)), timeout
        )

    def associate_rule(self, rack_id: str, rule_id: str, *, timeout: float | None = None) -> None:
        req = pb.AssociateRuleWithRackRequest(
            rack_id=pb.UUID(id=rack_id), rule_id=pb.UUID(id=rule_id)
        )
        self.call("AssociateRuleWithRack", req, timeout)

    def disassociate_rule(
        self,
        rack_id: str,
        operation_type: pb.OperationType.ValueType,
        operation_code: str,
        *,
        timeout: float | None = None,
    ) -> None:
        req = pb.DisassociateRuleFromRackRequest(
            rack_id=pb.UUID(id=rack_id),
            operation_type=operation_type,
            operation_code=operation_code,
        )
        self.call("DisassociateRuleFromRack", req, timeout)

    def get_rack_rule(
        self,
        rack_id: str,
        operation_type: pb.OperationType.ValueType,
        operation_code: str,
        *,
        timeout: float | None = None,
    ) -> str | None:
        """The rule id a rack uses for the operation, None when it has none."""
        req = pb.GetRackRuleAssociationRequest(
            rack_id=pb.UUID(id=rack_id),
            operation_type=operation_type,
            operation_code=operation_code,
        )
        found = str(self.call("GetRackRuleAssociation", req, timeout).rule_id.id)
        return None if found in ("", NIL_UUID) else found

    def list_rack_rules(
        self, rack_id: str, *, timeout: float | None = None
    ) -> list[pb.RackRuleAssociation]:
        req = pb.ListRackRuleAssociationsRequest(rack_id=pb.UUID(id=rack_id))
        return list(self.call("ListRackRuleAssociations", req, timeout).associations)

    # --- task schedules -----------------------------------------------------------------

    def create_schedule(
        self,
        schedule: pb.ScheduleConfig,
        operation: pb.ScheduledOperation,
        *,
        timeout: float | None = None,
    ) -> pb.TaskSchedule:
        req = pb.CreateTaskScheduleRequest(schedule=schedule, operation=operation)
        created: pb.TaskSchedule = self.call("CreateTaskSchedule", req, timeout)
        return created

    def get_schedule(self, schedule_id: str, *, timeout: float | None = None) -> pb.TaskSchedule:
        req = pb.GetTaskScheduleRequest(id=pb.UUID(id=schedule_id))
        found: pb.TaskSchedule = self.call("GetTaskSchedule", req, timeout)
        return found

    def list_schedules(
        self,
        *,
        rack_id: str | None = None,
        enabled_only: bool | None = None,
        offset: int | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> Page[pb.TaskSchedule]:
        req = pb.ListTaskSchedulesRequest(
            rack_id=pb.UUID(id=rack_id) if rack_id else None,
            enabled_only=enabled_only,
            pagination=_page(offset, limit),
        )
        resp = self.call("ListTaskSchedules", req, timeout)
        return Page(list(resp.task_schedules), resp.total)

    def update_schedule(
        self,
        schedule_id: str,
        schedule: pb.ScheduleConfig,
        paths: Sequence[str],
        *,
        timeout: float | None = None,
    ) -> pb.TaskSchedule:
        req = pb.UpdateTaskScheduleRequest(id=pb.UUID(id=schedule_id), schedule=schedule)
        req.update_mask.paths.extend(paths)
        updated: pb.TaskSchedule = self.call("UpdateTaskSchedule", req, timeout)
        return updated

    def pause_schedule(self, schedule_id: str, *, timeout: float | None = None) -> pb.TaskSchedule:
        req = pb.PauseTaskScheduleRequest(id=pb.UUID(id=schedule_id))
        paused: pb.TaskSchedule = self.call("PauseTaskSchedule", req, timeout)
        return paused

    def resume_schedule(self, schedule_id: str, *, timeout: float | None = None) -> pb.TaskSchedule:
        req = pb.ResumeTaskScheduleRequest(id=pb.UUID(id=schedule_id))
        resumed: pb.TaskSchedule = self.call("ResumeTaskSchedule", req, timeout)
        return resumed

    def delete_schedule(self, schedule_id: str, *, timeout: float | None = None) -> None:
        self.call(
            "DeleteTaskSchedule", pb.DeleteTaskScheduleRequest(id=pb.UUID(id=schedule_id)), timeout
        )

    def trigger_schedule(self, schedule_id: str, *, timeout: float | None = None) -> list[str]:
        req = pb.TriggerTaskScheduleRequest(id=pb.UUID(id=schedule_id))
        return _ids(self.call("TriggerTaskSchedule", req, timeout))

    def add_schedule_scope(
        self, schedule_id: str, target_spec: pb.OperationTargetSpec, *, timeout: float | None = None
    ) -> list[pb.TaskScheduleScope]:
        req = pb.AddTaskScheduleScopeRequest(
            schedule_id=pb.UUID(id=schedule_id), target_spec=target_spec
        )
        return list(self.call("AddTaskScheduleScope", req, timeout).scopes)

    def remove_schedule_scope(self, scope_id: str, *, timeout: float | None = None) -> None:
        req = pb.RemoveTaskScheduleScopeRequest(scope_id=pb.UUID(id=scope_id))
        self.call("RemoveTaskScheduleScope", req, timeout)

    def update_schedule_scope(
        self, schedule_id: str, desired: pb.OperationTargetSpec, *, timeout: float | None = None
    ) -> pb.UpdateTaskScheduleScopeResponse:
        req = pb.UpdateTaskScheduleScopeRequest(
            schedule_id=pb.UUID(id=schedule_id), desired_scope=desired
        )
        resp: pb.UpdateTaskScheduleScopeResponse = self.call(
            "UpdateTaskScheduleScope", req, timeout
        )
        return resp

    def list_schedule_scopes(
        self, schedule_id: str, *, timeout: float | None = None
    ) -> list[pb.TaskScheduleScope]:
        req = pb.ListTaskScheduleScopesRequest(schedule_id=pb.UUID(id=schedule_id))
        return list(self.call("ListTaskScheduleScopes", req, timeout).scopes)

    def check_schedule_conflicts(
        self,
        operation: pb.ScheduledOperation,
        *,
        exclude_schedule_id: str | None = None,
        timeout: float | None = None,
    ) -> list[pb.TaskSchedule]:
        req = pb.CheckScheduleConflictsRequest(
            operation=operation,
            exclude_schedule_id=pb.UUID(id=exclude_schedule_id) if exclude_schedule_id else None,
        )
        return list(self.call("CheckScheduleConflicts", req, timeout).conflicts)
