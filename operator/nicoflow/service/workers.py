"""`flow serve --workers N`: N API processes sharing one gRPC port.

One Python process serves on one core. With N > 1 this process binds no gRPC
server of its own: it starts N `flow serve` children that all bind the port
with SO_REUSEPORT, so the kernel spreads incoming connections across them
(gRPC's multiprocessing pattern; a channel stays on the worker it reached).
It serves /metrics itself, summing the workers' own metrics, so a scraper
sees one API. A worker that exits takes the others down and this process
exits non-zero: Kubernetes restarts the Pod whole rather than running it
with fewer workers than asked for."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class WorkerPlan:
    """How to start each worker: the command (sensitive values go through
    `env`, not the command line, which every user of the machine can read)."""

    argv: Sequence[str]
    env: dict[str, str]
    host: str
    port: int
    metrics_port: int | None  # the summing endpoint here; None: no metrics
    count: int


@dataclass
class Worker:
    proc: asyncio.subprocess.Process
    ready: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics_url(self) -> str | None:
        address = self.ready.get("metrics")
        return f"http://{address}/metrics" if address else None


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound with SO_REUSEPORT, held while the workers bind: it turns
    port 0 into a real port, and a port another program holds without
    SO_REUSEPORT into an error here rather than in N workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


class SummedMetrics:
    """A collector whose samples are the sums of the workers' samples, label
    set by label set. Every API metric adds up across processes: counters,
    histogram buckets, sums and counts, and the in-flight gauge."""

    def __init__(self, urls: Iterable[str], timeout: float = 5.0) -> None:
        self.urls = list(urls)
        self.timeout = timeout

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        totals: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
        for url in self.urls:
            try:
                with urllib.request.urlopen(url, timeout=self.timeout) as reply:
                    text = reply.read().decode()
            except OSError as exc:
                # a worker that cannot answer now is missing from this scrape only
                log.warning("worker metrics %s unreadable: %s", url, exc)
                continue
            for fam in text_string_to_metric_families(text):
                families.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type))
                for s in fam.samples:
                    if s.name.endswith("_created"):
                        continue  # a start time per process: no sum means anything
                    key = (fam.name, s.name, tuple(sorted(s.labels.items())))
                    totals[key] = totals.get(key, 0.0) + s.value
        for (fam_name, sample, labels), value in totals.items():
            families[fam_name].add_sample(sample, dict(labels), value)
        yield from families.values()


async def _start(plan: WorkerPlan, reserved: socket.socket) -> list[Worker]:
    workers: list[Worker] = []
    try:
        for _ in range(plan.count):
            proc = await asyncio.create_subprocess_exec(
                *plan.argv, stdout=asyncio.subprocess.PIPE, env=plan.env
            )
            workers.append(Worker(proc))
        for w in workers:
            assert w.proc.stdout is not None
            line = await asyncio.wait_for(w.proc.stdout.readline(), READY_TIMEOUT)
            if not line:
                code = await w.proc.wait()
                raise RuntimeError(
                    f"API worker {w.proc.pid} exited with status {code} before it was ready "
                    "(its error is above)"
                )
            w.ready = json.loads(line)
    except BaseException:
        await _stop(workers)
        raise
    finally:
        reserved.close()  # the workers hold the port now
    return workers


async def _stop(workers: Sequence[Worker]) -> None:
    for w in workers:
        if w.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            await asyncio.wait_for(w.proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()
            await w.proc.wait()


async def run(
    plan: WorkerPlan, base_ready: dict[str, Any], out: TextIO, reserved: socket.socket
) -> int:
    """Start the workers on the port `reserved` holds, print one ready line,
    run until SIGINT/SIGTERM (exit status 0) or until a worker exits (status 1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    workers = await _start(plan, reserved)
    http: Any = None
    try:
        metrics = None
        if plan.metrics_port is not None:
            registry = CollectorRegistry()
            registry.register(SummedMetrics(w.metrics_url for w in workers if w.metrics_url))
            http, _ = start_http_server(plan.metrics_port, addr=plan.host, registry=registry)
            host = f"[{plan.host}]" if ":" in plan.host else plan.host
            metrics = f"{host}:{http.server_port}"
        ready = {
            **base_ready,
            "metrics": metrics,
            "pid": os.getpid(),
            "workers": [{"pid": w.proc.pid, "metrics": w.ready.get("metrics")} for w in workers],
        }
        out.write(json.dumps(ready) + "\n")
        out.flush()
        stopped = asyncio.ensure_future(stop.wait())
        exits = {asyncio.ensure_future(w.proc.wait()): w for w in workers}
        done, _ = await asyncio.wait([stopped, *exits], return_when=asyncio.FIRST_COMPLETED)
        status = 0
        for fut in done:
            if fut in exits:
                w = exits[fut]
                log.error(
                    "API worker %d exited with status %s; stopping the others",
                    w.proc.pid,
                    w.proc.returncode,
                )
                status = 1
        for fut in [stopped, *exits]:
            fut.cancel()
        return status
    finally:
        await _stop(workers)
        if http is not None:
            http.shutdown()
            http.server_close()


def worker_argv(args: Iterable[str]) -> list[str]:
    """The command that runs one worker: this interpreter, `flow serve`."""
    return [sys.executable, "-m", "nicoflow.cli.main", "serve", *args]
