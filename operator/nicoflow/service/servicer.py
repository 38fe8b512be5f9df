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
from nicoflow.service import components, operation_requests, operations, racks, tasks
from nicoflow.service.backend import Backend
from nicoflow.service.errors import Unimplemented

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


def method_names() -> list[str]:
    return [m.name for m in pb.DESCRIPTOR.services_by_name["Flow"].methods]


def implemented() -> list[str]:
    return [n for n in method_names() if callable(getattr(FlowApi, n, None))]


def unimplemented() -> list[str]:
    done = set(implemented())
    return [n for n in method_names() if n not in done]


def _not_yet(name: str) -> Behavior:
    async def behavior(request: Any, context: Any) -> Any:
        raise Unimplemented(f"{name} is not implemented yet in this release")

    return behavior


def generic_handler(api: FlowApi) -> grpc.GenericRpcHandler:
    """Handlers for every method of v1.Flow (all unary)."""
    service = pb.DESCRIPTOR.services_by_name["Flow"]
    handlers = {}
    for method in service.methods:
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        behavior: Behavior = getattr(api, method.name, None) or _not_yet(method.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=request_cls.FromString,
            response_serializer=response_cls.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
