"""Run-time control of a running simulator: a small JSON-over-HTTP API on
loopback, served by asyncio streams on the simulator's own event loop (so it
touches state between gRPC calls, never during one).

Routes (JSON bodies and replies):

  GET    /healthz
  GET    /v1/site                              racks, counts, seed
  GET    /v1/racks/{rack_id}                   components with power and state
  GET    /v1/components/{key}                  one component (key: Core ID, serial, BMC IP or MAC)
  POST   /v1/components/{key}/power            {"state": "on"|"off"} (instant, no latency)
  POST   /v1/components/{key}/state            {"state": "Assigned/Provisioning"}
                                               (switch/shelf: {"state": {"state": "error"}})
  POST   /v1/components/{key}/alerts           {"id": ..., "message": ..., "classifications": [...]}
  DELETE /v1/components/{key}/alerts/{id}
  POST   /v1/components/{key}/leak             {"leaking": true|false}
  POST   /v1/components/{key}/firmware         {"versions": {"bmc": "..."}}
  POST   /v1/components/{key}/instance         -> {"instance_id": ...}
  DELETE /v1/components/{key}/instance
  PUT    /v1/desired-firmware/{family}         {"versions": {...}}
  GET    /v1/faults    PUT /v1/faults (replace)    PATCH /v1/faults (change some keys)
  GET    /v1/faults/injected                   errors injected per method since the plan was set
  GET    /v1/ledger?method=&component_id=&request_id=&action=&code=&applied=&since=
  GET    /v1/ledger/counts?by=method&applied=
  GET    /v1/ledger/duplicates?applied_only=true
  GET    /v1/ledger/delivered?since=&component_id=   commands per component, whatever the request id
  GET    /v1/ledger/repeats?since=                 components that got a counted command twice
  DELETE /v1/ledger
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from nicoflow.simulator.catalog import Family
from nicoflow.simulator.faults import FaultPlan
from nicoflow.simulator.ledger import Ledger
from nicoflow.simulator.power import Power
from nicoflow.simulator.world import SimError, World

log = logging.getLogger(__name__)

MAX_BODY = 4 * 1024 * 1024

Handler = Callable[["Request"], Any]


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    params: dict[str, str]

    def field(self, name: str) -> Any:
        if not isinstance(self.body, dict) or name not in self.body:
            raise HttpError(400, f"request body needs {name!r}")
        return self.body[name]


def _flag(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.lower() in ("1", "true", "yes", "on")


class Controllable(Protocol):
    """What the control API needs of a simulator (server.Simulator has it)."""

    world: World
    ledger: Ledger

    @property
    def faults(self) -> FaultPlan: ...

    def set_faults(self, plan: FaultPlan) -> None: ...

    @property
    def injected(self) -> Mapping[str, int]: ...


class ControlApi:
    """Routes over a running simulator."""

    def __init__(self, sim: Controllable) -> None:
        self.sim = sim
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        r = self._route
        r("GET", "/healthz", lambda q: {"ok": True})
        r("GET", "/v1/site", self.site)
        r("GET", "/v1/racks/{rack}", self.rack)
        r("GET", "/v1/components/{key}", self.component)
        r("POST", "/v1/components/{key}/power", self.set_power)
        r("POST", "/v1/components/{key}/state", self.set_state)
        r("POST", "/v1/components/{key}/alerts", self.add_alert)
        r("DELETE", "/v1/components/{key}/alerts/{alert}", self.remove_alert)
        r("POST", "/v1/components/{key}/leak", self.set_leak)
        r("POST", "/v1/components/{key}/firmware", self.set_firmware)
        r("POST", "/v1/components/{key}/instance", self.assign_instance)
        r("DELETE", "/v1/components/{key}/instance", self.release_instance)
        r("PUT", "/v1/desired-firmware/{family}", self.set_desired)
        r("GET", "/v1/faults", lambda q: self.sim.faults.to_dict())
        r("PUT", "/v1/faults", self.put_faults)
        r("PATCH", "/v1/faults", self.patch_faults)
        r("GET", "/v1/faults/injected", self.injected)
        r("GET", "/v1/ledger", self.ledger)
        r("GET", "/v1/ledger/counts", self.ledger_counts)
        r("GET", "/v1/ledger/duplicates", self.duplicates)
        r("GET", "/v1/ledger/delivered", self.delivered)
        r("GET", "/v1/ledger/repeats", self.repeats)
        r("DELETE", "/v1/ledger", self.clear_ledger)

    def _route(self, method: str, template: str, handler: Handler) -> None:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def dispatch(self, method: str, target: str, body: Any) -> tuple[int, Any]:
        url = urlsplit(target)
        allowed = False
        for m, pattern, handler in self.routes:
            match = pattern.match(url.path)
            if not match:
                continue
            allowed = True
            if m != method:
                continue
            req = Request(
                method=method,
                path=url.path,
                query=dict(parse_qsl(url.query)),
                body=body,
                params={k: unquote(v) for k, v in match.groupdict().items()},
            )
            try:
                return 200, handler(req)
            except HttpError as err:
                return err.status, {"error": err.message}
            except SimError as err:
                return (404 if err.code == "NOT_FOUND" else 400), {"error": err.message}
            except (ValueError, TypeError, KeyError) as err:
                return 400, {"error": str(err)}
        if allowed:
            return 405, {"error": f"{method} not allowed on {url.path}"}
        return 404, {"error": f"no route {url.path}"}

    # --- Handlers --------------------------------------------------------------------

    def site(self, req: Request) -> Any:
        site = self.sim.world.site
        return {
            "seed": site.seed,
            "counts": site.counts(),
            "racks": [r.core_id for r in site.racks],
        }

    def rack(self, req: Request) -> Any:
        world = self.sim.world
        state = world.racks.get(req.params["rack"])
        if state is None:
            raise HttpError(404, f"no rack {req.params['rack']}")
        nodes = (*state.shelves, *state.switches, *state.hosts)
        return {
            "id": state.rack.core_id,
            "fed": state.feed.is_fed(world.now()),
            "components": [
                {
                    "id": n.id,
                    "name": n.component.name,
                    "kind": n.kind.value,
                    "power": world.power(n).value,
                    "exists": world.exists(n),
                }
                for n in nodes
            ],
        }

    def _node(self, req: Request) -> Any:
        return self.sim.world.node(req.params["key"])

    def component(self, req: Request) -> Any:
        return self.sim.world.describe(self._node(req))

    def set_power(self, req: Request) -> Any:
        node = self._node(req)
        self.sim.world.set_power(node, Power(str(req.field("state")).lower()))
        return self.sim.world.describe(node)

    def set_state(self, req: Request) -> Any:
        node = self._node(req)
        self.sim.world.set_controller_state(node, req.field("state"))
        return self.sim.world.describe(node)

    def add_alert(self, req: Request) -> Any:
        node = self._node(req)
        body = req.body if isinstance(req.body, dict) else {}
        self.sim.world.set_alert(
            node,
            str(req.field("id")),
            str(body.get("message", "")),
            [str(c) for c in body.get("classifications", [])],
        )
        return self.sim.world.describe(node)

    def remove_alert(self, req: Request) -> Any:
        node = self._node(req)
        if not self.sim.world.clear_alert(node, req.params["alert"]):
            raise HttpError(404, f"{node.id} has no alert {req.params['alert']}")
        return self.sim.world.describe(node)

    def set_leak(self, req: Request) -> Any:
        node = self._node(req)
        leaking = req.body.get("leaking", True) if isinstance(req.body, dict) else True
        self.sim.world.set_leak(node, bool(leaking))
        return self.sim.world.describe(node)

    def set_firmware(self, req: Request) -> Any:
        node = self._node(req)
        versions = req.field("versions")
        if not isinstance(versions, dict):
            raise HttpError(400, "versions must be an object of part -> version")
        self.sim.world.set_firmware(node, versions)
        return self.sim.world.describe(node)

    def assign_instance(self, req: Request) -> Any:
        return {"instance_id": self.sim.world.assign_instance(self._node(req))}

    def release_instance(self, req: Request) -> Any:
        self.sim.world.release_instance(self._node(req))
        return {"ok": True}

    def set_desired(self, req: Request) -> Any:
        versions = req.field("versions")
        if not isinstance(versions, dict):
            raise HttpError(400, "versions must be an object of part -> version")
        self.sim.world.set_desired_firmware(Family(req.params["family"]), versions)
        return {f.value: v for f, v in self.sim.world.desired.items()}

    def put_faults(self, req: Request) -> Any:
        self.sim.set_faults(FaultPlan.from_dict(req.body or {}))
        return self.sim.faults.to_dict()

    def patch_faults(self, req: Request) -> Any:
        if not isinstance(req.body, dict):
            raise HttpError(400, "PATCH /v1/faults takes an object of fault settings")
        self.sim.set_faults(self.sim.faults.merged(req.body))
        return self.sim.faults.to_dict()

    def injected(self, req: Request) -> Any:
        return {"injected": dict(self.sim.injected)}

    def ledger(self, req: Request) -> Any:
        q = req.query
        entries = self.sim.ledger.entries(
            method=q.get("method"),
            component_id=q.get("component_id"),
            request_id=q.get("request_id"),
            action=q.get("action"),
            code=q.get("code"),
            applied=_flag(q.get("applied")),
            since=int(q.get("since", "0")),
        )
        return {"entries": [e.to_dict() for e in entries]}

    def ledger_counts(self, req: Request) -> Any:
        by = req.query.get("by", "method")
        if by not in ("method", "action", "code", "result", "component_id", "request_id"):
            raise HttpError(400, f"cannot count by {by!r}")
        return self.sim.ledger.counts(by, applied=_flag(req.query.get("applied")))

    def duplicates(self, req: Request) -> Any:
        applied_only = _flag(req.query.get("applied_only"))
        dups = self.sim.ledger.duplicates(applied_only=applied_only is not False)
        return {"duplicates": [d.to_dict() for d in dups]}

    def delivered(self, req: Request) -> Any:
        found = self.sim.ledger.delivered(
            component_id=req.query.get("component_id"), since=int(req.query.get("since", "0"))
        )
        return {"delivered": {cid: [d.to_dict() for d in ds] for cid, ds in found.items()}}

    def repeats(self, req: Request) -> Any:
        return {"repeats": self.sim.ledger.repeats(since=int(req.query.get("since", "0")))}

    def clear_ledger(self, req: Request) -> Any:
        self.sim.ledger.clear()
        return {"ok": True}


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class ControlServer:
    def __init__(self, api: ControlApi, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = api
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await self._handle(reader)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            writer.close()
            return
        except HttpError as err:
            status, payload = err.status, {"error": err.message}
        data = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        try:
            writer.write(head + data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        try:
            method, target, _ = lines[0].split(" ", 2)
        except ValueError as err:
            raise HttpError(400, "malformed request line") from err
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            raise HttpError(400, "request body too large")
        body: Any = None
        if length:
            text = (await reader.readexactly(length)).decode()
            try:
                body = json.loads(text)
            except ValueError as err:
                raise HttpError(400, f"body is not JSON: {err}") from err
        return self.api.dispatch(method.upper(), target, body)
