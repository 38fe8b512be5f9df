"""Shared by the Flow API tests (tests/integration/test_api_*.py): the server
in-process on loopback against the real control plane and a fresh, migrated
PostgreSQL database, a stub to call it, and example racks as v1 messages."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow._proto.flow.v1 import flow_pb2_grpc
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.inventory import migrate
from nicoflow.kube.client import KubeClient
from nicoflow.kube.resources import RACKS
from nicoflow.service.server import FlowServer, ServeOptions

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
DEV_ENV = {"FLOW_ENV": "development", "ALLOW_INSECURE_GRPC": "true"}

_TYPES = {
    "compute": pb.COMPONENT_TYPE_COMPUTE,
    "nvswitch": pb.COMPONENT_TYPE_NVSWITCH,
    "powershelf": pb.COMPONENT_TYPE_POWERSHELF,
    "torswitch": pb.COMPONENT_TYPE_TORSWITCH,
}
_BMC = {"host": pb.BMC_TYPE_HOST, "dpu": pb.BMC_TYPE_DPU}


def example_rack(
    example: str = "gb200-a01",
    *,
    name: str,
    tag: str,
    core_ids: bool = True,
    rack_id: str | None = None,
) -> pb.Rack:
    """The example Rack YAML as a v1 Rack message (the original `rack create` shape).

    `tag` makes serial numbers and MACs unique, so several tests can share the
    control plane; Core ids are `<name>-<component>` when `core_ids`."""
    doc = yaml.safe_load((EXAMPLES / f"rack-{example}.yaml").read_text())
    spec = doc["spec"]
    ident = spec["identity"]
    info = pb.DeviceInfo(
        name=name,
        manufacturer=ident["manufacturer"],
        serial_number=f"{ident['serialNumber']}-{tag}",
        model=ident.get("model", ""),
        description=ident.get("description", ""),
    )
    if rack_id:
        info.id.id = rack_id
    loc = spec.get("location") or {}
    rack = pb.Rack(
        info=info,
        location=pb.Location(
            region=loc.get("region", ""),
            datacenter=loc.get("datacenter", ""),
            room=loc.get("room", ""),
            position=loc.get("position", ""),
        ),
    )
    for c in spec["components"]:
        pos = c.get("position") or {}
        comp = pb.Component(
            type=_TYPES[c["type"]],
            info=pb.DeviceInfo(
                name=c["name"],
                manufacturer=c.get("manufacturer", ""),
                model=c.get("model", ""),
                serial_number=f"{c['serialNumber']}-{tag}",
            ),
            firmware_version=c.get("firmwareVersion", ""),
            position=pb.RackPosition(
                slot_id=pos.get("slotId", 0),
                tray_idx=pos.get("trayIndex", 0),
                host_id=pos.get("hostId", 0),
            ),
            component_id=f"{name}-{c['name']}" if core_ids else "",
        )
        for b in c.get("bmcs") or []:
            # a unique MAC per test: the tag's last bytes replace two octets
            mac = b["macAddress"].split(":")
            mac[1:3] = [tag[-4:-2], tag[-2:]]
            comp.bmcs.append(
                pb.BMCInfo(
                    type=_BMC[b["type"]], mac_address=":".join(mac), ip_address=b["ipAddress"]
                )
            )
        rack.components.append(comp)
    return rack


@dataclass
class Api:
    server: FlowServer
    stub: flow_pb2_grpc.FlowStub
    channel: grpc.aio.Channel
    kube: KubeClient
    namespace: str
    tag: str
    database_url: str

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        assert self.server.backend is not None
        return self.server.backend.sessions

    def rack_name(self, base: str = "a01") -> str:
        return f"{base}-{self.tag}"

    async def create_task(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Task object and record it in the task index, as the operator
        does when it splits a TaskSpec (the API finds Tasks through the index)."""
        from nicoflow.inventory.queries import record_tasks
        from nicoflow.kube.resources import TASKS

        created: dict[str, Any] = await self.kube.create(TASKS, body, self.namespace)
        async with self.sessions() as session, session.begin():
            await record_tasks(session, [created])
        return created


@contextlib.asynccontextmanager
async def running_api(
    control_plane: ControlPlane, database_url: str, namespace: str, **options: Any
) -> AsyncIterator[Api]:
    migrate.upgrade(database_url)
    server = FlowServer(
        ServeOptions(
            host="127.0.0.1",
            port=0,
            namespace=namespace,
            kubeconfig=str(control_plane.kubeconfig),
            database_url=database_url,
            **options,
        ),
        env=DEV_ENV,
    )
    await server.start()
    kube = KubeClient.from_env(str(control_plane.kubeconfig))
    channel = grpc.aio.insecure_channel(server.address)
    tag = uuid.uuid4().hex[:6]
    try:
        yield Api(
            server,
            flow_pb2_grpc.FlowStub(channel),
            channel,
            kube,
            namespace,
            tag,
            database_url,
        )
    finally:
        # Racks are cluster-scoped: remove this test's, so later tests (and the
        # operator tests that mirror every Rack) never see them
        for item in await kube.list(RACKS):
            if item["metadata"]["name"].endswith(f"-{tag}"):
                with contextlib.suppress(Exception):
                    await kube.delete(RACKS, item["metadata"]["name"])
        await channel.close()
        await kube.close()
        await server.stop()


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> None:
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
        cwd=directory,
    )  # fmt: skip


def make_cert(directory: Path, ca: str, name: str, *, server: bool) -> None:
    """A certificate for `name` signed by `ca` (server: with SAN 127.0.0.1 / localhost)."""
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.csr",
        cwd=directory,
    )  # fmt: skip
    ext = directory / f"{name}.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        if server
        else "extendedKeyUsage=clientAuth\n"
    )
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", ext.name,
        cwd=directory,
    )  # fmt: skip


async def settle_taskspecs(api: Api) -> None:
    """Stand in for the operator having run every TaskSpec so far to the end,
    so a later request on the same racks is not refused as conflicting."""
    from nicoflow.kube.resources import TASKSPECS

    for ts in await api.kube.list(TASKSPECS, api.namespace):
        if (ts.get("status") or {}).get("racks") is None:
            status = {"phase": "Complete", "racks": 0, "completionTime": "2030-01-01T00:00:00Z"}
            await api.kube.patch_status(TASKSPECS, ts["metadata"]["name"], status, api.namespace)
