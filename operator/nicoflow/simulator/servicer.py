"""`forge.Forge` over the simulated world: every RPC of the proto subset.

Handlers are grouped by area (rpc_components, rpc_machines, rpc_inventory);
each is a plain function of (request, call record) that reads or changes the
World, wrapped by RpcBase._run with injected latency and errors, the ledger
and the mapping of SimError to a gRPC status."""

from __future__ import annotations

from typing import Any

import grpc

from nicoflow._proto.nico import forge_pb2_grpc
from nicoflow.simulator.rpc_base import SERVICE, WRITE_METHODS
from nicoflow.simulator.rpc_components import ComponentRpcs
from nicoflow.simulator.rpc_inventory import InventoryRpcs
from nicoflow.simulator.rpc_machines import MachineRpcs

__all__ = ["SERVICE", "WRITE_METHODS", "ForgeSimulator", "UnknownMethodHandler"]


class ForgeSimulator(ComponentRpcs, MachineRpcs, InventoryRpcs, forge_pb2_grpc.ForgeServicer):
    """The whole service: one instance per simulator."""


class UnknownMethodHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Answers forge.Forge methods outside our subset with UNIMPLEMENTED and a
    message that says so (instead of gRPC's bare "Method not found!")."""

    def service(self, handler_call_details: Any) -> Any:
        method: str = handler_call_details.method
        prefix = f"/{SERVICE}/"
        if not method.startswith(prefix):
            return None
        name = method[len(prefix) :]

        async def unimplemented(request: bytes, context: Any) -> bytes:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"the NICo Core simulator does not implement {SERVICE}/{name}",
            )
            return b""

        return grpc.unary_unary_rpc_method_handler(unimplemented)
