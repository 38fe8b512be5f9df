"""Expected-inventory RPCs and switch / power shelf lookups."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from nicoflow._proto.nico import common_pb2, forge_pb2
from nicoflow.simulator import reports
from nicoflow.simulator.ledger import CallRecord
from nicoflow.simulator.rpc_base import RpcBase
from nicoflow.simulator.world import Expected, NodeKind, SimError


class InventoryRpcs(RpcBase):
    """Expected inventory (lists, linked lists, additions) and switch/shelf lookups."""

    # --- Expected inventory ----------------------------------------------------------

    async def GetAllExpectedRacks(
        self, request: empty_pb2.Empty, context: Any
    ) -> forge_pb2.ExpectedRackList:
        return await self._run("GetAllExpectedRacks", request, context, self._expected_racks)

    def _expected_racks(
        self, request: empty_pb2.Empty, record: CallRecord
    ) -> forge_pb2.ExpectedRackList:
        return forge_pb2.ExpectedRackList(
            expected_racks=[reports.expected_rack(r.rack) for r in self.world.racks.values()]
        )

    async def GetAllExpectedMachines(
        self, request: empty_pb2.Empty, context: Any
    ) -> forge_pb2.ExpectedMachineList:
        return await self._run("GetAllExpectedMachines", request, context, self._expected_machines)

    def _expected_machines(
        self, request: empty_pb2.Empty, record: CallRecord
    ) -> forge_pb2.ExpectedMachineList:
        entries = self.world.expected[NodeKind.HOST].values()
        return forge_pb2.ExpectedMachineList(
            expected_machines=[reports.expected_machine(e) for e in entries]
        )

    async def GetAllExpectedSwitches(
        self, request: empty_pb2.Empty, context: Any
    ) -> forge_pb2.ExpectedSwitchList:
        return await self._run("GetAllExpectedSwitches", request, context, self._expected_switches)

    def _expected_switches(
        self, request: empty_pb2.Empty, record: CallRecord
    ) -> forge_pb2.ExpectedSwitchList:
        entries = self.world.expected[NodeKind.SWITCH].values()
        return forge_pb2.ExpectedSwitchList(
            expected_switches=[reports.expected_switch(e) for e in entries]
        )

    async def GetAllExpectedPowerShelves(
        self, request: empty_pb2.Empty, context: Any
    ) -> forge_pb2.ExpectedPowerShelfList:
        return await self._run(
            "GetAllExpectedPowerShelves", request, context, self._expected_shelves
        )

    def _expected_shelves(
        self, request: empty_pb2.Empty, record: CallRecord
    ) -> forge_pb2.ExpectedPowerShelfList:
        entries = self.world.expected[NodeKind.SHELF].values()
        return forge_pb2.ExpectedPowerShelfList(
            expected_power_shelves=[reports.expected_power_shelf(e) for e in entries]
        )

    def _add_expected(self, entry: Expected, record: CallRecord) -> empty_pb2.Empty:
        action = f"add_expected_{entry.kind.value}"
        try:
            self.world.add_expected(entry)
        except SimError as err:
            record.touch(f"mac:{entry.mac.lower()}", action, result=err.code, applied=False)
            raise
        key = entry.node.id if entry.node is not None else f"mac:{entry.mac}"
        record.touch(key, action, serial=entry.serial, rack_id=entry.rack_id)
        return empty_pb2.Empty()

    @staticmethod
    def _labels(meta: forge_pb2.Metadata) -> dict[str, str]:
        return {label.key: label.value for label in meta.labels}

    async def AddExpectedMachine(
        self, request: forge_pb2.ExpectedMachine, context: Any
    ) -> empty_pb2.Empty:
        def handle(req: forge_pb2.ExpectedMachine, record: CallRecord) -> empty_pb2.Empty:
            entry = Expected(
                kind=NodeKind.HOST,
                mac=req.bmc_mac_address,
                serial=req.chassis_serial_number,
                ip=req.bmc_ip_address if req.HasField("bmc_ip_address") else "",
                rack_id=req.rack_id.id if req.HasField("rack_id") else None,
                expected_id=req.id.value if req.HasField("id") else "",
                username=req.bmc_username,
                password=req.bmc_password,
                name=req.metadata.name,
                description=req.metadata.description,
                labels=self._labels(req.metadata),
                dpu_serials=list(req.fallback_dpu_serial_numbers),
                pause=(
                    req.default_pause_ingestion_and_poweron
                    if req.HasField("default_pause_ingestion_and_poweron")
                    else None
                ),
            )
            return self._add_expected(entry, record)

        return await self._run("AddExpectedMachine", request, context, handle)

    async def AddExpectedSwitch(
        self, request: forge_pb2.ExpectedSwitch, context: Any
    ) -> empty_pb2.Empty:
        def handle(req: forge_pb2.ExpectedSwitch, record: CallRecord) -> empty_pb2.Empty:
            entry = Expected(
                kind=NodeKind.SWITCH,
                mac=req.bmc_mac_address,
                serial=req.switch_serial_number,
                ip=req.bmc_ip_address,
                rack_id=req.rack_id.id if req.HasField("rack_id") else None,
                expected_id=req.expected_switch_id.value
                if req.HasField("expected_switch_id")
                else "",
                username=req.bmc_username,
                password=req.bmc_password,
                name=req.metadata.name,
                description=req.metadata.description,
                labels=self._labels(req.metadata),
                nvos_username=req.nvos_username if req.HasField("nvos_username") else None,
                nvos_password=req.nvos_password if req.HasField("nvos_password") else None,
            )
            return self._add_expected(entry, record)

        return await self._run("AddExpectedSwitch", request, context, handle)

    async def AddExpectedPowerShelf(
        self, request: forge_pb2.ExpectedPowerShelf, context: Any
    ) -> empty_pb2.Empty:
        def handle(req: forge_pb2.ExpectedPowerShelf, record: CallRecord) -> empty_pb2.Empty:
            entry = Expected(
                kind=NodeKind.SHELF,
                mac=req.bmc_mac_address,
                serial=req.shelf_serial_number,
                ip=req.bmc_ip_address,
                rack_id=req.rack_id.id if req.HasField("rack_id") else None,
                expected_id=req.expected_power_shelf_id.value
                if req.HasField("expected_power_shelf_id")
                else "",
                username=req.bmc_username,
                password=req.bmc_password,
                name=req.metadata.name,
                description=req.metadata.description,
                labels=self._labels(req.metadata),
            )
            return self._add_expected(entry, record)

        return await self._run("AddExpectedPowerShelf", request, context, handle)

    async def GetAllExpectedSwitchesLinked(
        self, request: empty_pb2.Empty, context: Any
    ) -> forge_pb2.LinkedExpectedSwitchList:
        return await self._run(
            "GetAllExpectedSwitchesLinked", request, context, self._linked_switches
        )

    def _linked_switches(
        self, request: empty_pb2.Empty, record: CallRecord
    ) -> forge_pb2.LinkedExpectedSwitchList:
        entries = self.world.expected[NodeKind.SWITCH].values()
        return forge_pb2.LinkedExpectedSwitchList(
            expected_switches=[reports.linked_switch(self.world, e) for e in entries]
        )

    async def GetAllExpectedPowerShelvesLinked(
        self, request: empty_pb2.Empty, context: Any
    ) -> forge_pb2.LinkedExpectedPowerShelfList:
        return await self._run(
            "GetAllExpectedPowerShelvesLinked", request, context, self._linked_shelves
        )

    def _linked_shelves(
        self, request: empty_pb2.Empty, record: CallRecord
    ) -> forge_pb2.LinkedExpectedPowerShelfList:
        entries = self.world.expected[NodeKind.SHELF].values()
        return forge_pb2.LinkedExpectedPowerShelfList(
            expected_power_shelves=[reports.linked_power_shelf(self.world, e) for e in entries]
        )

    # --- Switches and power shelves --------------------------------------------------

    async def FindSwitchIds(
        self, request: forge_pb2.SwitchSearchFilter, context: Any
    ) -> forge_pb2.SwitchIdList:
        return await self._run("FindSwitchIds", request, context, self._switch_ids)

    def _switch_ids(
        self, request: forge_pb2.SwitchSearchFilter, record: CallRecord
    ) -> forge_pb2.SwitchIdList:
        ids = self.world.switch_ids(
            alert=(
                request.only_with_health_alert
                if request.HasField("only_with_health_alert")
                else None
            ),
            rack_id=request.rack_id.id if request.HasField("rack_id") else None,
        )
        return forge_pb2.SwitchIdList(ids=[common_pb2.SwitchId(id=i) for i in ids])

    async def FindSwitchesByIds(
        self, request: forge_pb2.SwitchesByIdsRequest, context: Any
    ) -> forge_pb2.SwitchList:
        return await self._run("FindSwitchesByIds", request, context, self._switches)

    def _switches(
        self, request: forge_pb2.SwitchesByIdsRequest, record: CallRecord
    ) -> forge_pb2.SwitchList:
        found = (self.world.find(s.id, NodeKind.SWITCH) for s in request.switch_ids)
        return forge_pb2.SwitchList(
            switches=[reports.switch(self.world, n) for n in found if n is not None]
        )

    async def FindPowerShelvesByIds(
        self, request: forge_pb2.PowerShelvesByIdsRequest, context: Any
    ) -> forge_pb2.PowerShelfList:
        return await self._run("FindPowerShelvesByIds", request, context, self._shelves)

    def _shelves(
        self, request: forge_pb2.PowerShelvesByIdsRequest, record: CallRecord
    ) -> forge_pb2.PowerShelfList:
        found = (self.world.find(s.id, NodeKind.SHELF) for s in request.power_shelf_ids)
        return forge_pb2.PowerShelfList(
            power_shelves=[reports.power_shelf(self.world, n) for n in found if n is not None]
        )
