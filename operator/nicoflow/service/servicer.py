"""The `v1.Flow` methods this release serves, and the table that registers them.

Every method of the service is registered: those without an implementation
here answer UNIMPLEMENTED with a message saying so, never a bare default."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import message_factory

from nicoflow import __version__
from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.service import (
    component_writes,
    components,
    drift_view,
    nvl_domains,
    operation_requests,
    operations,
    racks,
    rules,
    schedules,
    tasks,
)
from nicoflow.service.backend import Backend
from nicoflow.service.errors import InvalidArgument, Unimplemented

SERVICE = pb.DESCRIPTOR.services_by_name["Flow"].full_name

Behavior = Callable[[Any, Any], Awaitable[Any]]


class FlowApi:
    """One coroutine per implemented RPC: (request, context) -> response."""

    def __init__(self, backend: Backend, env: dict[str, str] | None = None) -> None:
        self.backend = backend
        self.env = dict(os.environ) if env is None else env

    # --- Version ------------------------------------------------------------------------

    async def Version(self, request: pb.VersionRequest, context: Any) -> pb.BuildInfo:
        return pb.BuildInfo(
            version=__version__,
            build_time=self.env.get("FLOW_BUILD_TIME") or "unknown",
            git_commit=self.env.get("FLOW_GIT_COMMIT") or "unknown",
        )

    # --- Racks --------------------------------------------------------------------------

    async def CreateExpectedRack(
        self, request: pb.CreateExpectedRackRequest, context: Any
    ) -> pb.CreateExpectedRackResponse:
        rack_id = await racks.create_rack(self.backend, request)
        return pb.CreateExpectedRackResponse(id=pb.UUID(id=str(rack_id)))

    async def GetRackInfoByID(
        self, request: pb.GetRackInfoByIDRequest, context: Any
    ) -> pb.GetRackInfoResponse:
        return pb.GetRackInfoResponse(rack=await racks.get_rack_by_id(self.backend, request))

    async def GetRackInfoBySerial(
        self, request: pb.GetRackInfoBySerialRequest, context: Any
    ) -> pb.GetRackInfoResponse:
        return pb.GetRackInfoResponse(rack=await racks.get_rack_by_serial(self.backend, request))

    async def GetListOfRacks(
        self, request: pb.GetListOfRacksRequest, context: Any
    ) -> pb.GetListOfRacksResponse:
        found, total = await racks.list_racks(self.backend, request)
        return pb.GetListOfRacksResponse(racks=found, total=total)

    async def DeleteRack(
        self, request: pb.DeleteRackRequest, context: Any
    ) -> pb.DeleteRackResponse:
        await racks.delete_rack(self.backend, request)
        return pb.DeleteRackResponse()

    async def PurgeRack(self, request: pb.PurgeRackRequest, context: Any) -> pb.PurgeRackResponse:
        await racks.purge_rack(self.backend, request)
        return pb.PurgeRackResponse()

    async def PatchRack(self, request: pb.PatchRackRequest, context: Any) -> pb.PatchRackResponse:
        return pb.PatchRackResponse(report=await component_writes.patch_rack(self.backend, request))

    # --- Components and NVL domains -----------------------------------------------------

    async def GetComponentInfoByID(
        self, request: pb.GetComponentInfoByIDRequest, context: Any
    ) -> pb.GetComponentInfoResponse:
        return await components.get_component_by_id(self.backend, request)

    async def GetComponentInfoBySerial(
        self, request: pb.GetComponentInfoBySerialRequest, context: Any
    ) -> pb.GetComponentInfoResponse:
        return await components.get_component_by_serial(self.backend, request)

    async def GetComponents(
        self, request: pb.GetComponentsRequest, context: Any
    ) -> pb.GetComponentsResponse:
        found, total = await components.list_components(self.backend, request)
        return pb.GetComponentsResponse(components=found, total=total)

    async def AddComponent(
        self, request: pb.AddComponentRequest, context: Any
    ) -> pb.AddComponentResponse:
        return pb.AddComponentResponse(
            component=await component_writes.add_component(self.backend, request)
        )

    async def PatchComponent(
        self, request: pb.PatchComponentRequest, context: Any
    ) -> pb.PatchComponentResponse:
        return pb.PatchComponentResponse(
            component=await component_writes.patch_component(self.backend, request)
        )

    async def DeleteComponent(
        self, request: pb.DeleteComponentRequest, context: Any
    ) -> pb.DeleteComponentResponse:
        await component_writes.delete_component(self.backend, request)
        return pb.DeleteComponentResponse()

    async def PurgeComponent(
        self, request: pb.PurgeComponentRequest, context: Any
    ) -> pb.PurgeComponentResponse:
        await component_writes.purge_component(self.backend, request)
        return pb.PurgeComponentResponse()

    async def GetListOfNVLDomains(
        self, request: pb.GetListOfNVLDomainsRequest, context: Any
    ) -> pb.GetListOfNVLDomainsResponse:
        found, total = await components.list_nvl_domains(self.backend, request)
        return pb.GetListOfNVLDomainsResponse(nvl_domains=found, total=total)

    async def GetRacksForNVLDomain(
        self, request: pb.GetRacksForNVLDomainRequest, context: Any
    ) -> pb.GetRacksForNVLDomainResponse:
        found = await components.racks_for_nvl_domain(self.backend, request)
        return pb.GetRacksForNVLDomainResponse(racks=found)

    # --- Operations ---------------------------------------------------------------------

    async def _submit(self, op: operation_requests.OperationRequest) -> pb.SubmitTaskResponse:
        ids = await operations.submit(self.backend, op)
        return pb.SubmitTaskResponse(task_ids=[pb.UUID(id=str(i)) for i in ids])

    async def PowerOnRack(
        self, request: pb.PowerOnRackRequest, context: Any
    ) -> pb.SubmitTaskResponse:
        return await self._submit(operation_requests.power_on(request))

    async def PowerOffRack(
        self, request: pb.PowerOffRackRequest, context: Any
    ) -> pb.SubmitTaskResponse:
        return await self._submit(operation_requests.power_off(request))

    async def PowerResetRack(
        self, request: pb.PowerResetRackRequest, context: Any
    ) -> pb.SubmitTaskResponse:
        return await self._submit(operation_requests.power_reset(request))

    async def UpgradeFirmware(
        self, request: pb.UpgradeFirmwareRequest, context: Any
    ) -> pb.SubmitTaskResponse:
        return await self._submit(operation_requests.upgrade_firmware(request))

    async def BringUpRack(
        self, request: pb.BringUpRackRequest, context: Any
    ) -> pb.SubmitTaskResponse:
        return await self._submit(operation_requests.bring_up(request))

    async def IngestRack(
        self, request: pb.IngestRackRequest, context: Any
    ) -> pb.SubmitTaskResponse:
        return await self._submit(operation_requests.ingest(request))

    # --- Tasks --------------------------------------------------------------------------

    async def ListTasks(self, request: pb.ListTasksRequest, context: Any) -> pb.ListTasksResponse:
        found, total = await tasks.list_tasks(self.backend, request)
        return pb.ListTasksResponse(tasks=found, total=total)

    async def GetTasksByIDs(
        self, request: pb.GetTasksByIDsRequest, context: Any
    ) -> pb.GetTasksByIDsResponse:
        return pb.GetTasksByIDsResponse(tasks=await tasks.get_tasks(self.backend, request))

    async def CancelTask(
        self, request: pb.CancelTaskRequest, context: Any
    ) -> pb.CancelTaskResponse:
        return pb.CancelTaskResponse(task=await tasks.cancel_task(self.backend, request))

    # --- Validation and NVL domain writes -----------------------------------------------

    async def ValidateComponents(
        self, request: pb.ValidateComponentsRequest, context: Any
    ) -> pb.ValidateComponentsResponse:
        return await drift_view.validate_components(self.backend, request)

    async def CreateNVLDomain(
        self, request: pb.CreateNVLDomainRequest, context: Any
    ) -> pb.CreateNVLDomainResponse:
        did = await nvl_domains.create_domain(self.backend, request)
        return pb.CreateNVLDomainResponse(id=pb.UUID(id=str(did)))

    async def AttachRacksToNVLDomain(
        self, request: pb.AttachRacksToNVLDomainRequest, context: Any
    ) -> Any:
        await nvl_domains.attach(self.backend, request)
        return _empty("AttachRacksToNVLDomain")

    async def DetachRacksFromNVLDomain(
        self, request: pb.DetachRacksFromNVLDomainRequest, context: Any
    ) -> Any:
        await nvl_domains.detach(self.backend, request)
        return _empty("DetachRacksFromNVLDomain")

    # --- Operation rules ----------------------------------------------------------------

    async def CreateOperationRule(
        self, request: pb.CreateOperationRuleRequest, context: Any
    ) -> pb.CreateOperationRuleResponse:
        rid = await rules.create_rule(self.backend, request)
        return pb.CreateOperationRuleResponse(id=pb.UUID(id=str(rid)))

    async def UpdateOperationRule(
        self, request: pb.UpdateOperationRuleRequest, context: Any
    ) -> Any:
        await rules.update_rule(self.backend, request)
        return _empty("UpdateOperationRule")

    async def DeleteOperationRule(
        self, request: pb.DeleteOperationRuleRequest, context: Any
    ) -> Any:
        await rules.delete_rule(self.backend, request)
        return _empty("DeleteOperationRule")

    async def GetOperationRule(
        self, request: pb.GetOperationRuleRequest, context: Any
    ) -> pb.OperationRule:
        return await rules.get_rule(self.backend, request)

    async def ListOperationRules(
        self, request: pb.ListOperationRulesRequest, context: Any
    ) -> pb.ListOperationRulesResponse:
        found, total = await rules.list_rules(self.backend, request)
        return pb.ListOperationRulesResponse(rules=found, total_count=total)

    async def SetRuleAsDefault(self, request: pb.SetRuleAsDefaultRequest, context: Any) -> Any:
        await rules.set_default(self.backend, request)
        return _empty("SetRuleAsDefault")

    async def AssociateRuleWithRack(
        self, request: pb.AssociateRuleWithRackRequest, context: Any
    ) -> Any:
        await rules.associate(self.backend, request)
        return _empty("AssociateRuleWithRack")

    async def DisassociateRuleFromRack(
        self, request: pb.DisassociateRuleFromRackRequest, context: Any
    ) -> Any:
        await rules.disassociate(self.backend, request)
        return _empty("DisassociateRuleFromRack")

    async def GetRackRuleAssociation(
        self, request: pb.GetRackRuleAssociationRequest, context: Any
    ) -> pb.GetRackRuleAssociationResponse:
        rid = await rules.get_association(self.backend, request)
        return pb.GetRackRuleAssociationResponse(rule_id=rid)

    async def ListRackRuleAssociations(
        self, request: pb.ListRackRuleAssociationsRequest, context: Any
    ) -> pb.ListRackRuleAssociationsResponse:
        found = await rules.list_associations(self.backend, request)
        return pb.ListRackRuleAssociationsResponse(associations=found)

    # --- Task schedules -----------------------------------------------------------------

    async def CreateTaskSchedule(
        self, request: pb.CreateTaskScheduleRequest, context: Any
    ) -> pb.TaskSchedule:
        return await schedules.create_schedule(self.backend, request)

    async def GetTaskSchedule(
        self, request: pb.GetTaskScheduleRequest, context: Any
    ) -> pb.TaskSchedule:
        return await schedules.get_schedule(self.backend, request)

    async def ListTaskSchedules(
        self, request: pb.ListTaskSchedulesRequest, context: Any
    ) -> pb.ListTaskSchedulesResponse:
        found, total = await schedules.list_schedules(self.backend, request)
        return pb.ListTaskSchedulesResponse(task_schedules=found, total=total)

    async def UpdateTaskSchedule(
        self, request: pb.UpdateTaskScheduleRequest, context: Any
    ) -> pb.TaskSchedule:
        return await schedules.update_schedule(self.backend, request)

    async def PauseTaskSchedule(
        self, request: pb.PauseTaskScheduleRequest, context: Any
    ) -> pb.TaskSchedule:
        return await schedules.pause_schedule(self.backend, request)

    async def ResumeTaskSchedule(
        self, request: pb.ResumeTaskScheduleRequest, context: Any
    ) -> pb.TaskSchedule:
        return await schedules.resume_schedule(self.backend, request)

    async def DeleteTaskSchedule(self, request: pb.DeleteTaskScheduleRequest, context: Any) -> Any:
        await schedules.delete_schedule(self.backend, request)
        return _empty("DeleteTaskSchedule")

    async def TriggerTaskSchedule(
        self, request: pb.TriggerTaskScheduleRequest, context: Any
    ) -> pb.SubmitTaskResponse:
        ids = await schedules.trigger_schedule(self.backend, request)
        return pb.SubmitTaskResponse(task_ids=[pb.UUID(id=str(i)) for i in ids])

    async def AddTaskScheduleScope(
        self, request: pb.AddTaskScheduleScopeRequest, context: Any
    ) -> pb.AddTaskScheduleScopeResponse:
        found = await schedules.add_scope(self.backend, request)
        return pb.AddTaskScheduleScopeResponse(scopes=found)

    async def RemoveTaskScheduleScope(
        self, request: pb.RemoveTaskScheduleScopeRequest, context: Any
    ) -> Any:
        await schedules.remove_scope(self.backend, request)
        return _empty("RemoveTaskScheduleScope")

    async def UpdateTaskScheduleScope(
        self, request: pb.UpdateTaskScheduleScopeRequest, context: Any
    ) -> pb.UpdateTaskScheduleScopeResponse:
        found, added, removed, updated = await schedules.update_scopes(self.backend, request)
        return pb.UpdateTaskScheduleScopeResponse(
            scopes=found, added=added, removed=removed, updated=updated
        )

    async def ListTaskScheduleScopes(
        self, request: pb.ListTaskScheduleScopesRequest, context: Any
    ) -> pb.ListTaskScheduleScopesResponse:
        return pb.ListTaskScheduleScopesResponse(
            scopes=await schedules.list_scopes(self.backend, request)
        )

    async def CheckScheduleConflicts(
        self, request: pb.CheckScheduleConflictsRequest, context: Any
    ) -> pb.CheckScheduleConflictsResponse:
        found = await schedules.check_conflicts(self.backend, request)
        return pb.CheckScheduleConflictsResponse(conflicts=found)


def _empty(method: str) -> Any:
    """The method's (empty) response message, whatever the proto names it."""
    desc = pb.DESCRIPTOR.services_by_name["Flow"].methods_by_name[method].output_type
    return message_factory.GetMessageClass(desc)()


def method_names() -> list[str]:
    return [m.name for m in pb.DESCRIPTOR.services_by_name["Flow"].methods]


def implemented() -> list[str]:
    return [n for n in method_names() if callable(getattr(FlowApi, n, None))]


def unimplemented() -> list[str]:
    done = set(implemented())
    return [n for n in method_names() if n not in done]


OPERATION_RUNS_MESSAGE = (
    "operation runs are not supported: the original service never executed them; use "
    "TaskSpecs with maxParallelRacks/maxFailedRacks"
)


def _not_yet(name: str) -> Behavior:
    async def behavior(request: Any, context: Any) -> Any:
        if "OperationRun" in name:
            raise Unimplemented(OPERATION_RUNS_MESSAGE)
        raise Unimplemented(f"{name} is not implemented yet in this release")

    return behavior


class _Undecodable:
    """A request body that does not parse as the method's request message.

    gRPC answers a deserializer's exception with UNKNOWN before any handler or
    interceptor runs; parsing into this marker instead lets the handler refuse
    the body as the caller's mistake."""

    def __init__(self, type_name: str, error: Exception) -> None:
        self.message = (
            f"the request body is not a valid {type_name} message ({error}); "
            "encode it from the v1.Flow protobuf definitions"
        )


def _lenient(parse: Callable[[bytes], Any], type_name: str) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # any failure to parse is bad input
            return _Undecodable(type_name, exc)

    return deserialize


def _decoded(behavior: Behavior) -> Behavior:
    async def checked(request: Any, context: Any) -> Any:
        if isinstance(request, _Undecodable):
            raise InvalidArgument(request.message)
        return await behavior(request, context)

    return checked


def generic_handler(api: FlowApi) -> grpc.GenericRpcHandler:
    """Handlers for every method of v1.Flow (all unary)."""
    service = pb.DESCRIPTOR.services_by_name["Flow"]
    handlers = {}
    for method in service.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        behavior: Behavior = getattr(api, method.name, None) or _not_yet(method.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _decoded(behavior),
            request_deserializer=_lenient(request_cls.FromString, method.input_type.full_name),
            response_serializer=response_cls.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
