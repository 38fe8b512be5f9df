"""S3 and S4 through the Flow gRPC API: `flow serve` started as its own
process against the benchmark's inventory, called by 32 concurrent clients."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import psycopg

from benchmarks import figures
from benchmarks.stack import BenchStack
from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow._proto.flow.v1 import flow_pb2_grpc

IMPORT_PREFIX = "imp-"
IMPORT_CONCURRENCY = 8
_TYPES = {
    "compute": pb.COMPONENT_TYPE_COMPUTE,
    "nvswitch": pb.COMPONENT_TYPE_NVSWITCH,
    "powershelf": pb.COMPONENT_TYPE_POWERSHELF,
    "torswitch": pb.COMPONENT_TYPE_TORSWITCH,
}
_BMC = {"host": pb.BMC_TYPE_HOST, "dpu": pb.BMC_TYPE_DPU}

SERIAL_SQL = (
    "SELECT * FROM component WHERE manufacturer = %s AND serial_number = %s AND deleted_at IS NULL"
)
TASKS_SQL = (
    "SELECT * FROM task_history WHERE namespace = %s AND rack_id = %s "
    "ORDER BY finished_at DESC, id LIMIT 100"
)


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def run_api_scenarios(
    stack: BenchStack, args: argparse.Namespace, only: set[str]
) -> list[dict[str, Any]]:
    namespace = f"bench-s1-{max(args.scales)}" if args.scales else "nico-flow"
    try:
        serve = stack.start_api(namespace=namespace, log="serve.log")
    except Exception as exc:
        reason = f"flow serve did not start: {str(exc)[:300]}"
        return [{"scenario": s, "not_run": reason} for s in ("S3-api", "S4-inventory-import-grpc")]
    target = str(serve.ready_info["grpc"])
    out: list[dict[str, Any]] = []
    try:
        if "S3" in only:
            out.append(_guard("S3-api", lambda: _s3(stack, target, namespace, args)))
            out.append(_guard("S3-workers", lambda: _s3_workers(stack, target, namespace, args)))
        if "S4" in only:
            n = min(args.api_racks, len(stack.rack_bodies))
            out.append(_guard("S4-inventory-import-grpc", lambda: _s4(stack, target, n)))
    finally:
        serve.stop()
        _delete_imported(stack)
    return out


def _guard(scenario: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return fn()
    except Exception as exc:
        return {"scenario": scenario, "error": f"{type(exc).__name__}: {exc}"[:600]}


# -- S3 ----------------------------------------------------------------------------------


def _s3(stack: BenchStack, target: str, namespace: str, args: argparse.Namespace) -> dict[str, Any]:
    url = _psycopg_url(stack.database_url)
    with psycopg.connect(url) as conn:
        serials = conn.execute(
            "SELECT manufacturer, serial_number FROM component WHERE deleted_at IS NULL"
        ).fetchall()
        rack_ids = [r[0] for r in conn.execute("SELECT id FROM rack WHERE deleted_at IS NULL")]
    rng = random.Random(7)
    n, clients = args.api_requests, args.api_clients
    serial_picks = [rng.choice(serials) for _ in range(n)]
    rack_picks = [rng.choice(rack_ids) for _ in range(n)]

    def by_serial(stub: flow_pb2_grpc.FlowStub, i: int) -> Awaitable[Any]:
        maker, serial = serial_picks[i]
        info = pb.DeviceSerialInfo(manufacturer=maker, serial_number=serial)
        call: Awaitable[Any] = stub.GetComponentInfoBySerial(
            pb.GetComponentInfoBySerialRequest(serial_info=info)
        )
        return call

    def list_tasks(stub: flow_pb2_grpc.FlowStub, i: int) -> Awaitable[Any]:
        req = pb.ListTasksRequest(pagination=pb.Pagination(limit=100))
        req.rack_id.id = str(rack_picks[i])
        call: Awaitable[Any] = stub.ListTasks(req)
        return call

    grpc_serial = asyncio.run(_grpc_load(target, by_serial, n, clients))
    grpc_tasks = asyncio.run(_grpc_load(target, list_tasks, n, clients))
    pg_serial = asyncio.run(_pg_load(url, SERIAL_SQL, [(m, s) for m, s in serial_picks], clients))
    pg_tasks = asyncio.run(_pg_load(url, TASKS_SQL, [(namespace, r) for r in rack_picks], clients))
    return {
        "scenario": "S3-api",
        "racks": len(rack_ids),
        "components": len(serials),
        "clients": clients,
        "requests_per_query": n,
        "GetComponentInfoBySerial": _ratio(grpc_serial, pg_serial),
        "ListTasks_by_rack": _ratio(grpc_tasks, pg_tasks),
        "note": "latencies in ms; the Python load generator shares the 2 cores with the server. "
        "ListTasks reads live Tasks from the apiserver (label selector on the rack) and "
        "archived ones from PostgreSQL; its direct-SQL twin is the archive query only.",
    }


def _serial_picks(stack: BenchStack, n: int) -> list[tuple[str, str]]:
    with psycopg.connect(_psycopg_url(stack.database_url)) as conn:
        serials = conn.execute(
            "SELECT manufacturer, serial_number FROM component WHERE deleted_at IS NULL"
        ).fetchall()
    rng = random.Random(11)
    return [tuple(rng.choice(serials)) for _ in range(n)]


def _s3_workers(
    stack: BenchStack, target: str, namespace: str, args: argparse.Namespace
) -> dict[str, Any]:
    """GetComponentInfoBySerial throughput (closed loop, `api_clients` clients)
    from one `flow serve` process and from `--workers 2`, in the same run."""
    picks = _serial_picks(stack, args.api_requests)

    def by_serial(stub: flow_pb2_grpc.FlowStub, i: int) -> Awaitable[Any]:
        maker, serial = picks[i]
        info = pb.DeviceSerialInfo(manufacturer=maker, serial_number=serial)
        call: Awaitable[Any] = stub.GetComponentInfoBySerial(
            pb.GetComponentInfoBySerialRequest(serial_info=info)
        )
        return call

    def rate(address: str) -> tuple[float, float]:
        t0 = time.monotonic()
        lat = asyncio.run(_grpc_load(address, by_serial, len(picks), args.api_clients))
        return len(lat) / (time.monotonic() - t0), figures.percentile(lat, 99)

    one, one_p99 = rate(target)
    serve = stack.start_api("--workers", "2", namespace=namespace, log="serve-workers.log")
    try:
        two, two_p99 = rate(str(serve.ready_info["grpc"]))
    finally:
        serve.stop()
    return {
        "scenario": "S3-workers",
        "clients": args.api_clients,
        "requests": len(picks),
        "workers_1_per_s": round(one, 1),
        "workers_1_p99_ms": round(one_p99, 2),
        "workers_2_per_s": round(two, 1),
        "workers_2_p99_ms": round(two_p99, 2),
        "ratio": round(two / one, 2) if one else 0.0,
        "note": "closed loop; the Python load generator runs on the same 2 cores as the "
        "workers, so 2 workers cannot have 2 cores to themselves here",
    }


def _ratio(api: Sequence[float], direct: Sequence[float]) -> dict[str, float]:
    a50, a99 = figures.percentile(api, 50), figures.percentile(api, 99)
    d50, d99 = figures.percentile(direct, 50), figures.percentile(direct, 99)
    return {
        "grpc_p50_ms": round(a50, 2),
        "grpc_p99_ms": round(a99, 2),
        "sql_p50_ms": round(d50, 2),
        "sql_p99_ms": round(d99, 2),
        "ratio_p50": round(a50 / d50, 1) if d50 else 0.0,
        "ratio_p99": round(a99 / d99, 1) if d99 else 0.0,
    }


async def _grpc_load(
    target: str,
    call: Callable[[flow_pb2_grpc.FlowStub, int], Awaitable[Any]],
    n: int,
    clients: int,
) -> list[float]:
    """`n` calls shared by `clients` workers, each with its own channel; ms each."""
    latencies: list[float] = []
    counter = iter(range(n))
    channels = [grpc.aio.insecure_channel(target) for _ in range(clients)]

    async def worker(channel: grpc.aio.Channel) -> None:
        stub = flow_pb2_grpc.FlowStub(channel)
        await call(stub, 0)  # warm the connection before timing
        for i in counter:
            t0 = time.perf_counter()
            await call(stub, i)
            latencies.append((time.perf_counter() - t0) * 1000)

    try:
        await asyncio.gather(*(worker(c) for c in channels))
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    return latencies


async def _pg_load(url: str, sql: str, params: list[tuple[Any, ...]], clients: int) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(len(params)))

    async def worker() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await (await conn.execute(sql, params[0])).fetchall()
            for i in counter:
                t0 = time.perf_counter()
                await (await conn.execute(sql, params[i])).fetchall()
                latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


# -- S4 ----------------------------------------------------------------------------------


def _s4(stack: BenchStack, target: str, n: int) -> dict[str, Any]:
    racks = [imported_rack(b, i) for i, b in enumerate(stack.rack_bodies[:n])]
    t0 = time.monotonic()
    failed = asyncio.run(_create_all(target, racks))
    took = time.monotonic() - t0
    return {
        "scenario": "S4-inventory-import-grpc",
        "method": f"CreateExpectedRack, {IMPORT_CONCURRENCY} concurrent clients, "
        "each rack a new Rack object plus its PostgreSQL rows",
        "racks": n,
        "failed": failed,
        "seconds": round(took, 2),
        "racks_per_s": round((n - failed) / took, 2),
    }


async def _create_all(target: str, racks: list[pb.Rack]) -> int:
    queue = iter(racks)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        async with grpc.aio.insecure_channel(target) as channel:
            stub = flow_pb2_grpc.FlowStub(channel)
            for rack in queue:
                try:
                    await stub.CreateExpectedRack(pb.CreateExpectedRackRequest(rack=rack))
                except grpc.aio.AioRpcError:
                    failures += 1

    await asyncio.gather(*(worker() for _ in range(IMPORT_CONCURRENCY)))
    return failures


def imported_rack(body: dict[str, Any], index: int) -> pb.Rack:
    """A simulated Rack object as a v1 Rack message, renamed with unique serials,
    MACs and IPs so it does not collide with the racks already there."""
    spec = body["spec"]
    ident, loc = spec["identity"], spec.get("location") or {}
    name = IMPORT_PREFIX + str(body["metadata"]["name"])
    rack = pb.Rack(
        info=pb.DeviceInfo(
            name=name,
            manufacturer=ident["manufacturer"],
            serial_number=f"{ident['serialNumber']}-imp",
            model=ident.get("model", ""),
            description=ident.get("description", ""),
        ),
        location=pb.Location(
            region=loc.get("region", ""),
            datacenter=loc.get("datacenter", ""),
            room=loc.get("room", ""),
            position=loc.get("position", ""),
        ),
    )
    for c in spec["components"]:
        if c["type"] not in _TYPES:
            continue
        pos = c.get("position") or {}
        comp = pb.Component(
            type=_TYPES[c["type"]],
            info=pb.DeviceInfo(
                name=c["name"],
                manufacturer=c.get("manufacturer", ""),
                model=c.get("model", ""),
                serial_number=f"{c['serialNumber']}-imp",
            ),
            firmware_version=c.get("firmwareVersion", ""),
            position=pb.RackPosition(
                slot_id=pos.get("slotId", 0),
                tray_idx=pos.get("trayIndex", 0),
                host_id=pos.get("hostId", 0),
            ),
        )
        for b in c.get("bmcs") or []:
            # 0x06 instead of 0x02 as first octet and 11.x instead of 10.x: still
            # locally administered / private, never equal to a simulated one
            mac = "06" + str(b["macAddress"])[2:]
            ip = "11" + str(b["ipAddress"])[str(b["ipAddress"]).index(".") :]
            comp.bmcs.append(pb.BMCInfo(type=_BMC[b["type"]], mac_address=mac, ip_address=ip))
        rack.components.append(comp)
    return rack


def _delete_imported(stack: BenchStack) -> None:
    kube = stack.kube
    if kube is None:
        return
    for rack in kube.list("racks"):
        name = str(rack["metadata"]["name"])
        if name.startswith(IMPORT_PREFIX):
            kube.delete("racks", name)
