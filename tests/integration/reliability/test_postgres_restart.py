"""PostgreSQL restarted under a running `flow serve` process. While it is down
the inventory RPCs answer UNAVAILABLE with a message that says the database
is unreachable — never UNKNOWN or INTERNAL, never a hang — and a write
leaves nothing behind; once it is back the same RPCs succeed from the same
server process, and the inventory made before the outage is intact.

The test runs its own PostgreSQL, so the session's server is never stopped."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from api_support import example_rack
from reliability.support import ServeProcess, serve_process

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow._proto.flow.v1.flow_pb2_grpc import FlowStub
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.postgres import Postgres
from nicoflow.inventory import migrate

pytestmark = pytest.mark.reliability

TIMEOUT_S = 20  # a call that takes longer than this hangs


@pytest.fixture
def own_postgres() -> Iterator[Postgres]:
    # short and world-readable: the server runs as the postgres user, and its
    # socket path has a length limit
    path = Path(tempfile.mkdtemp(prefix="nf-pgr-"))
    os.chmod(path, 0o755)
    try:
        with Postgres(path / "pg") as pg:
            yield pg
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Inventory:
    racks: list[pb.Rack]
    ids: list[str]


def _create(serve: ServeProcess, tag: str) -> Inventory:
    racks = [example_rack(name=f"pgr-{i}-{tag}", tag=f"{tag[:4]}{i:02d}") for i in range(2)]
    ids = [
        serve.stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=r), timeout=60).id.id
        for r in racks
    ]
    return Inventory(racks, ids)


def _reads(inv: Inventory) -> dict[str, Callable[[FlowStub], Any]]:
    rack, comp = inv.racks[0], inv.racks[0].components[3]
    serial = pb.DeviceSerialInfo(
        manufacturer=comp.info.manufacturer, serial_number=comp.info.serial_number
    )
    return {
        "GetListOfRacks": lambda s: s.GetListOfRacks(
            pb.GetListOfRacksRequest(with_components=True), timeout=TIMEOUT_S
        ),
        "GetRackInfoByID": lambda s: s.GetRackInfoByID(
            pb.GetRackInfoByIDRequest(id=pb.UUID(id=inv.ids[0]), with_components=True),
            timeout=TIMEOUT_S,
        ),
        "GetRackInfoBySerial": lambda s: s.GetRackInfoBySerial(
            pb.GetRackInfoBySerialRequest(
                serial_info=pb.DeviceSerialInfo(
                    manufacturer=rack.info.manufacturer, serial_number=rack.info.serial_number
                )
            ),
            timeout=TIMEOUT_S,
        ),
        "GetComponentInfoBySerial": lambda s: s.GetComponentInfoBySerial(
            pb.GetComponentInfoBySerialRequest(serial_info=serial), timeout=TIMEOUT_S
        ),
        "GetComponents": lambda s: s.GetComponents(pb.GetComponentsRequest(), timeout=TIMEOUT_S),
        "GetListOfNVLDomains": lambda s: s.GetListOfNVLDomains(
            pb.GetListOfNVLDomainsRequest(), timeout=TIMEOUT_S
        ),
    }


def _refused(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str, float]:
    began = time.monotonic()
    try:
        call()
    except grpc.RpcError as err:
        return err.code(), err.details() or "", time.monotonic() - began
    return grpc.StatusCode.OK, "", time.monotonic() - began


def _kube_racks(cp: ControlPlane, tag: str) -> list[str]:
    out = cp.kubectl("get", "racks", "-o", "name").stdout.split()
    return sorted(n.split("/", 1)[1] for n in out if n.endswith(f"-{tag}"))


def test_inventory_rpcs_ride_out_a_postgres_restart(
    control_plane: ControlPlane,
    crds_installed: list[str],
    own_postgres: Postgres,
    namespace: str,
    tmp_path: Path,
) -> None:
    pg = own_postgres
    url = pg.create_database("flow")
    migrate.upgrade(url)
    tag = uuid.uuid4().hex[:6]
    try:
        with serve_process(control_plane, url, namespace, tmp_path) as serve:
            inv = _create(serve, tag)
            reads = _reads(inv)
            before = {name: read(serve.stub) for name, read in reads.items()}
            assert before["GetListOfRacks"].total == 2
            pid = serve.service.pid

            pg.stop()
            try:
                for name, read in reads.items():
                    code, details, took = _refused(lambda read=read: read(serve.stub))
                    assert code == grpc.StatusCode.UNAVAILABLE, (name, code, details)
                    assert "database is unreachable" in details, (name, details)
                    assert took < TIMEOUT_S, (name, took)
                # a write refused with the database away leaves no Rack object
                extra = example_rack(name=f"pgr-x-{tag}", tag=f"{tag[:4]}99")
                code, details, _ = _refused(
                    lambda: serve.stub.CreateExpectedRack(
                        pb.CreateExpectedRackRequest(rack=extra), timeout=TIMEOUT_S
                    )
                )
                assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
                assert _kube_racks(control_plane, tag) == sorted(r.info.name for r in inv.racks)
                assert serve.healthy(), "the health service must not depend on the database"
            finally:
                pg.start()

            # the same process, with no restart, serves again and finds everything
            assert serve.service.alive()
            assert serve.service.pid == pid
            after = {name: read(serve.stub) for name, read in reads.items()}
            assert after == before
            assert after["GetListOfRacks"].total == 2
            assert len(after["GetRackInfoByID"].rack.components) == len(inv.racks[0].components)
            comp = after["GetComponentInfoBySerial"].component
            assert comp.info.name == inv.racks[0].components[3].info.name
            assert comp.rack_id.id == inv.ids[0]
    finally:
        for name in _kube_racks(control_plane, tag):
            control_plane.kubectl("delete", "rack", name, "--wait=false", check=False)
