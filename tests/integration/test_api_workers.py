"""`flow serve --workers N` as real processes: the workers share one port and
each answers from its own database connection, the metrics endpoint sums
them, a dead worker takes the API down (so Kubernetes restarts it whole), and
a lone server refuses a port someone else holds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow._proto.flow.v1 import flow_pb2_grpc
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.inventory import migrate

CALLS = 24


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLOW_ENV", "ALLOW_INSECURE_GRPC")}
    env["CERTDIR"] = ""
    return env


async def _serve(
    control_plane: ControlPlane, database_url: str, namespace: str, *args: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nicoflow.cli.main", "serve",
        "--host", "127.0.0.1", "--insecure", "--namespace", namespace,
        "--kubeconfig", str(control_plane.kubeconfig), "--database-url", database_url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )  # fmt: skip


async def _ready(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    assert line, (await proc.communicate())[1].decode()[-2000:]
    ready: dict[str, Any] = json.loads(line)
    return ready


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _handled(address: str, method: str) -> float:
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "grpc_server_handled_total" and s.labels.get("grpc_method") == method
    )


@pytest.fixture
async def workers(
    control_plane: ControlPlane, crds_installed: list[str], database_url: str, namespace: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, Any]]]:
    migrate.upgrade(database_url)
    proc = await _serve(
        control_plane, database_url, namespace, "-p", "0", "--workers", "2", "--metrics-port", "0"
    )
    try:
        yield proc, await _ready(proc)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 60)


async def test_workers_share_the_port_and_the_metrics_add_up(
    workers: tuple[asyncio.subprocess.Process, dict[str, Any]],
) -> None:
    proc, ready = workers
    pids = [w["pid"] for w in ready["workers"]]
    assert len(set(pids)) == 2
    assert proc.pid not in pids
    assert all(_alive(pid) for pid in pids)
    for _ in range(CALLS):
        # a channel of its own each time: the kernel picks a worker per connection
        async with grpc.aio.insecure_channel(ready["grpc"]) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await flow_pb2_grpc.FlowStub(ch).GetRackInfoByID(
                    pb.GetRackInfoByIDRequest(id=pb.UUID(id=str(uuid.uuid4())))
                )
            # answered from the database by whichever worker took it
            assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()
    per_worker = [_handled(w["metrics"], "GetRackInfoByID") for w in ready["workers"]]
    assert all(n > 0 for n in per_worker), per_worker  # both took calls (1 in 2**23 to fail)
    assert sum(per_worker) == CALLS
    assert _handled(ready["metrics"], "GetRackInfoByID") == CALLS

    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), 60)
    assert proc.returncode == 0
    await asyncio.sleep(0.5)
    assert not any(_alive(pid) for pid in pids)


async def test_a_worker_that_dies_takes_the_api_down(
    workers: tuple[asyncio.subprocess.Process, dict[str, Any]],
) -> None:
    proc, ready = workers
    first, second = (w["pid"] for w in ready["workers"])
    os.kill(first, signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), 60)
    assert proc.returncode == 1  # Kubernetes restarts the Pod with all its workers
    assert proc.stderr is not None
    stderr = (await proc.stderr.read()).decode()
    assert f"API worker {first} exited" in stderr
    await asyncio.sleep(0.5)
    assert not _alive(second)


async def test_a_lone_server_refuses_a_port_in_use(
    control_plane: ControlPlane,
    crds_installed: list[str],
    database_url: str,
    namespace: str,
    workers: tuple[asyncio.subprocess.Process, dict[str, Any]],
) -> None:
    _, ready = workers
    port = ready["grpc"].rsplit(":", 1)[1]
    lone = await _serve(control_plane, database_url, namespace, "-p", port)
    _, err = await asyncio.wait_for(lone.communicate(), 60)
    assert lone.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in err.decode()
