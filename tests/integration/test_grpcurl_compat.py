"""The original README's grpcurl example, unchanged, through the real grpcurl
binary (built from its Go module by hack/get-grpcurl.sh) against a dev-mode
server, where reflection lets grpcurl find v1.Flow without the proto file."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from api_support import Api, running_api
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from nicoflow.devstack.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
MANUFACTURER = "NVIDIA"


@pytest.fixture(scope="session")
def grpcurl() -> str:
    script = REPO / "hack" / "get-grpcurl.sh"
    if shutil.which("go") is None:
        cached = list((Path.home() / ".cache" / "nico-flow" / "grpcurl").glob("*/grpcurl"))
        if not cached:
            pytest.skip("grpcurl is built from its Go module and 'go' is not on PATH")
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"hack/get-grpcurl.sh failed:\n{done.stderr}"
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
async def api(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> AsyncIterator[Api]:
    async with running_api(control_plane, database_url, namespace, dev_mode=True) as a:
        yield a


async def call(binary: str, api: Api, method: str, body: dict[str, Any]) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        binary, "-plaintext", "-d", json.dumps(body), f"127.0.0.1:{api.server.port}", method,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


def readme_rack(tag: str) -> tuple[dict[str, Any], str]:
    """The README's example: a GB200 NVL72 rack with a compute tray at slot 36,
    tray 16, carrying one host BMC and two DPU BMCs. Serials and MACs carry the
    test's tag so tests can share the cluster."""
    serial = f"1652522000{tag}"
    mac = f"b8:3f:d2:{tag[0:2]}:{tag[2:4]}:{tag[4:6]}"
    rack = {
        "info": {
            "id": {"id": str(uuid.uuid4())},
            "name": f"gb200-nvl72-rack-{tag}",
            "manufacturer": MANUFACTURER,
            "model": "GB200 NVL72 Rack",
            "serial_number": f"NVL72R{tag}",
            "description": "GB200 NVL72 Rack",
        },
        "location": {"region": "us-west", "datacenter": "dc1", "room": "hall-1", "position": "r1"},
        "components": [
            {
                "type": "COMPONENT_TYPE_COMPUTE",
                "info": {
                    "id": {"id": str(uuid.uuid4())},
                    "name": "compute-16",
                    "manufacturer": MANUFACTURER,
                    "model": "GB200 Compute Tray",
                    "serial_number": serial,
                },
                "firmware_version": "1.0.0",
                "component_id": f"fm100ht{tag}",
                "position": {"slot_id": 36, "tray_idx": 16, "host_id": 1},
                "bmcs": [
                    {
                        "type": "BMC_TYPE_HOST",
                        "mac_address": mac[:-1] + "1",
                        "ip_address": "10.0.16.1",
                    },
                    {
                        "type": "BMC_TYPE_DPU",
                        "mac_address": mac[:-1] + "2",
                        "ip_address": "10.0.16.2",
                    },
                    {
                        "type": "BMC_TYPE_DPU",
                        "mac_address": mac[:-1] + "3",
                        "ip_address": "10.0.16.3",
                    },
                ],
            }
        ],
    }
    return rack, serial


async def test_readme_get_component_by_serial_example(grpcurl: str, api: Api) -> None:
    rack, serial = readme_rack(api.tag)
    created = await call(grpcurl, api, "v1.Flow/CreateExpectedRack", {"rack": rack})
    assert created == {"id": {"id": rack["info"]["id"]["id"]}}

    # the README's request, word for word but for the serial
    resp = await call(
        grpcurl,
        api,
        "v1.Flow/GetComponentInfoBySerial",
        {"serial_info": {"manufacturer": MANUFACTURER, "serial_number": serial}, "with_rack": True},
    )
    comp, got_rack = resp["component"], resp["rack"]
    # grpcurl prints protobuf JSON with the proto's field names and enum names
    assert comp["type"] == "COMPONENT_TYPE_COMPUTE"
    assert comp["info"]["serial_number"] == serial
    assert comp["info"]["manufacturer"] == MANUFACTURER
    assert comp["info"]["id"] == rack["components"][0]["info"]["id"]
    assert comp["position"] == {"slot_id": 36, "tray_idx": 16, "host_id": 1}
    assert comp["component_id"] == f"fm100ht{api.tag}"
    assert comp["rack_id"] == rack["info"]["id"]
    assert [b["type"] for b in comp["bmcs"]] == ["BMC_TYPE_HOST", "BMC_TYPE_DPU", "BMC_TYPE_DPU"]
    assert all(set(b) >= {"mac_address", "ip_address"} for b in comp["bmcs"])
    assert got_rack["info"]["name"] == rack["info"]["name"]
    assert got_rack["info"]["model"] == "GB200 NVL72 Rack"
    assert got_rack["location"]["datacenter"] == "dc1"

    # and the version call from docs/grpc-api.md
    version = await call(grpcurl, api, "v1.Flow/Version", {})
    assert version["version"]


async def test_reflection_names_the_file_flow_proto_as_the_original(api: Api) -> None:
    """Reflection tools (grpcurl, Postman, grpcui) see the file the original
    served: its descriptor is named flow.proto, package v1."""
    async with grpc.aio.insecure_channel(api.server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="v1.Flow")
        async for answer in stub.ServerReflectionInfo(iter([request])):
            raw = answer.file_descriptor_response.file_descriptor_proto
            files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in raw]
            break
    [flow] = [f for f in files if f.package == "v1"]
    assert flow.name == "flow.proto"
    assert [s.name for s in flow.service] == ["Flow"]
