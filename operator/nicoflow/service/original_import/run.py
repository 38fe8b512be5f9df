"""Create, from the original service's rows, what it had: Racks (BMC credentials
in Secrets), NVL domains, OperationRules and their rack associations,
TaskSchedules (suspended until a person resumes them) and the task archive.

Everything is written through the same code the gRPC API uses, keeping the
original's ids, so its clients find their racks, components, rules,
schedules and tasks under the ids they hold. Every object is looked up by
its id first and left alone when it is there: a second run changes nothing.
A row that cannot be mapped is reported with the reason, and the rest goes
on. With `dry_run` nothing is written; the report says what would be.

BMC user names and passwords go only into Kubernetes Secrets (type
kubernetes.io/basic-auth) that the Rack names; they are never written to
PostgreSQL, a log line, an Event or the report. Our Racks take one
credential per rack: a rack whose BMCs had different credentials is
imported without a Secret, and said so."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.domain.rules import RuleError, parse_rule_definition, rule_problems_for_operation
from nicoflow.domain.task_ids import imported_name
from nicoflow.domain.types import ComponentType, OperationCode, TaskPhase
from nicoflow.inventory.models import Component, NVLDomain, Rack, TaskHistory
from nicoflow.inventory.queries import archive_task
from nicoflow.kube.client import SECRETS
from nicoflow.kube.client import NotFound as KubeNotFound
from nicoflow.kube.resources import RACKS
from nicoflow.service import component_writes, nvl_domains, racks, rules, schedules
from nicoflow.service.backend import Backend
from nicoflow.service.enums import component_type_number
from nicoflow.service.errors import NotFound, ServiceError
from nicoflow.service.original_import.source import OriginalData, Row
from nicoflow.service.rack_body import rack_request

log = logging.getLogger(__name__)

CREATED, EXISTS, WOULD_CREATE = "created", "exists", "would create"
LABEL_IMPORTED = "flow.nico.io/imported-from"

_POWER_CODES = {
    1: OperationCode.POWER_ON,
    2: OperationCode.FORCE_POWER_ON,
    3: OperationCode.POWER_OFF,
    4: OperationCode.FORCE_POWER_OFF,
    5: OperationCode.RESTART,
    6: OperationCode.FORCE_RESTART,
    7: OperationCode.WARM_RESET,
    8: OperationCode.COLD_RESET,
}
_FIRMWARE_CODES = {
    1: OperationCode.UPGRADE,
    2: OperationCode.DOWNGRADE,
    3: OperationCode.ROLLBACK,
}
_PHASES = {
    "completed": TaskPhase.SUCCEEDED,
    "failed": TaskPhase.FAILED,
    "terminated": TaskPhase.CANCELLED,
}
_SPEC_TYPES = {
    "interval": pb.SCHEDULE_SPEC_TYPE_INTERVAL,
    "cron": pb.SCHEDULE_SPEC_TYPE_CRON,
    "one-time": pb.SCHEDULE_SPEC_TYPE_ONE_TIME,
}


@dataclass(frozen=True)
class Action:
    kind: str
    name: str
    id: str
    result: str


@dataclass(frozen=True)
class Problem:
    table: str
    id: str
    reason: str


@dataclass
class Report:
    actions: list[Action] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(Counter(f"{a.kind} {a.result}" for a in self.actions))

    def as_dict(self) -> dict[str, Any]:
        return {
            "actions": [asdict(a) for a in self.actions],
            "not_mapped": [asdict(p) for p in self.problems],
            "counts": self.counts(),
        }

    def lines(self) -> list[str]:
        out = [f"{a.result}: {a.kind} {a.name} ({a.id})" for a in self.actions]
        out += [f"not mapped: {p.table} {p.id}: {p.reason}" for p in self.problems]
        summary = ", ".join(f"{n} {k}" for k, n in sorted(self.counts().items()))
        out.append(f"{len(self.actions)} objects ({summary}); {len(self.problems)} rows not mapped")
        return out


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _type(text: str) -> ComponentType | None:
    try:
        return ComponentType.parse(text)
    except ValueError:
        return None


def secret_name(rack_object: str) -> str:
    return f"{rack_object[:46].rstrip('-')}-bmc-credentials"


class Importer:
    def __init__(
        self, backend: Backend, data: OriginalData, *, dry_run: bool, secret_namespace: str
    ) -> None:
        self.backend = backend
        self.data = data
        self.dry_run = dry_run
        self.secret_namespace = secret_namespace
        self.report = Report()
        self.rack_names: dict[uuid.UUID, str] = {}  # original rack id -> our object name
        self.domain_names: dict[uuid.UUID, str] = {}
        self.rule_objects: dict[uuid.UUID, str] = {}

    def _did(self, kind: str, name: str, rid: Any, result: str) -> None:
        self.report.actions.append(Action(kind, name, str(rid), result))

    def _cannot(self, table: str, rid: Any, reason: str) -> None:
        self.report.problems.append(Problem(table, str(rid), reason))

    async def run(self) -> Report:
        for table, rows in sorted(self.data.deleted.items()):
            for row in rows:
                self._cannot(table, row["id"], "deleted in the original: not imported")
        await self._domains()
        await self._racks()
        await self._loose_components()
        await self._rules()
        await self._associations()
        await self._schedules()
        await self._tasks()
        return self.report

    # -- NVL domains -------------------------------------------------------------------

    async def _domains(self) -> None:
        for row in self.data.nvl_domains:
            did = row["id"]
            async with self.backend.sessions() as session:
                have = await session.get(NVLDomain, did)
            if have is not None and have.deleted_at is None:
                self.domain_names[did] = have.name
                self._did("nvl domain", row["name"], did, EXISTS)
                continue
            if self.dry_run:
                self.domain_names[did] = row["name"]
                self._did("nvl domain", row["name"], did, WOULD_CREATE)
                continue
            ident = pb.Identifier(id=pb.UUID(id=str(did)), name=row["name"])
            try:
                await nvl_domains.create_domain(
                    self.backend,
                    pb.CreateNVLDomainRequest(nvl_domain=pb.NVLDomain(identifier=ident)),
                )
            except ServiceError as exc:
                self._cannot("nvldomain", did, exc.message)
                continue
            async with self.backend.sessions() as session:
                made = await session.get(NVLDomain, did)
            self.domain_names[did] = made.name if made is not None else row["name"]
            self._did("nvl domain", row["name"], did, CREATED)

    # -- racks, their components and credentials --------------------------------------

    def _component_message(self, row: Row) -> pb.Component | None:
        ctype = _type(_text(row["type"]))
        if ctype is None:
            self._cannot("component", row["id"], f"unknown component type {row['type']!r}")
            return None
        info = pb.DeviceInfo(
            id=pb.UUID(id=str(row["id"])),
            name=_text(row["name"]),
            manufacturer=_text(row["manufacturer"]),
            serial_number=_text(row["serial_number"]),
        )
        if row.get("model"):
            info.model = row["model"]
        description = _json(row.get("description"))
        if description:
            info.description = json.dumps(description, sort_keys=True)
        comp = pb.Component(
            type=component_type_number(ctype),
            info=info,
            firmware_version=_text(row.get("firmware_version")),
            component_id=_text(row.get("external_id")),
        )
        if any(row.get(k) is not None for k in ("slot_id", "tray_index", "host_id")):
            comp.position.CopyFrom(
                pb.RackPosition(
                    slot_id=int(row.get("slot_id") or 0),
                    tray_idx=int(row.get("tray_index") or 0),
                    host_id=int(row.get("host_id") or 0),
                )
            )
        for bmc in self._bmcs_of(row["id"]):
            out = pb.BMCInfo(
                type=pb.BMC_TYPE_DPU if _text(bmc["type"]).lower() == "dpu" else pb.BMC_TYPE_HOST,
                mac_address=_text(bmc["mac_address"]),
            )
            if bmc.get("ip_address"):
                out.ip_address = str(bmc["ip_address"]).split("/")[0]
            comp.bmcs.append(out)
        return comp

    def _bmcs_of(self, component_id: uuid.UUID) -> list[Row]:
        return [b for b in self.data.bmcs if b["component_id"] == component_id]

    def _credentials(self, comps: Iterable[Row]) -> tuple[str, str] | str | None:
        """The rack's one BMC credential; a message when they differ."""
        pairs = {
            (_text(b.get("user")), _text(b.get("password")))
            for c in comps
            for b in self._bmcs_of(c["id"])
            if b.get("user") or b.get("password")
        }
        if not pairs:
            return None
        if len(pairs) > 1:
            return (
                f"its BMCs have {len(pairs)} different credentials and a Rack takes one "
                "credentials Secret: imported without one; create it by hand"
            )
        return next(iter(pairs))

    async def _racks(self) -> None:
        live_ids = {r["id"] for r in self.data.racks}
        by_rack: dict[uuid.UUID, list[Row]] = {}
        for c in self.data.components:
            if c.get("rack_id") in live_ids:
                by_rack.setdefault(c["rack_id"], []).append(c)
        for row in self.data.racks:
            await self._rack(row, by_rack.get(row["id"], []))

    async def _rack(self, row: Row, comps: list[Row]) -> None:
        rid = row["id"]
        async with self.backend.sessions() as session:
            have = await session.get(Rack, rid)
        if have is not None and have.deleted_at is None:
            self.rack_names[rid] = have.name
            self._did("rack", row["name"], rid, EXISTS)
            return
        described = _json(row.get("description")) or {}
        loc = _json(row.get("location")) or {}
        info = pb.DeviceInfo(
            id=pb.UUID(id=str(rid)),
            name=_text(row["name"]),
            manufacturer=_text(row["manufacturer"]),
            serial_number=_text(row["serial_number"]),
        )
        if isinstance(described, dict):
            if described.get("model"):
                info.model = str(described["model"])
            if isinstance(described.get("description"), str) and described["description"]:
                info.description = described["description"]
        message = pb.Rack(
            info=info,
            location=pb.Location(
                **{k: _text(loc.get(k)) for k in ("region", "datacenter", "room", "position")}
            )
            if isinstance(loc, dict)
            else None,
        )
        for c in comps:
            comp = self._component_message(c)
            if comp is not None:
                message.components.append(comp)
        try:
            req = rack_request(message)
        except ServiceError as exc:
            self._cannot("rack", rid, exc.message)
            return
        spec = req.body["spec"]
        if row.get("external_id"):
            spec["coreId"] = str(row["external_id"])
        if row.get("nvldomain_id") in self.domain_names:
            spec["nvlDomain"] = self.domain_names[row["nvldomain_id"]]
        req.body["metadata"].setdefault("labels", {})[LABEL_IMPORTED] = "original"
        credentials = self._credentials(comps)
        if isinstance(credentials, str):
            self._cannot("bmc", rid, f"rack {row['name']}: {credentials}")
            credentials = None
        if credentials is not None:
            spec["credentialsSecretRef"] = {
                "name": secret_name(req.name),
                "namespace": self.secret_namespace,
            }
        self.rack_names[rid] = req.name
        if self.dry_run:
            self._did("rack", row["name"], rid, WOULD_CREATE)
            if credentials is not None:
                self._did("secret", f"{self.secret_namespace}/{secret_name(req.name)}", rid,
                          WOULD_CREATE)  # fmt: skip
            return
        if credentials is not None and not await self._secret(req.name, rid, credentials):
            spec.pop("credentialsSecretRef")
        try:
            await racks.create_rack_from(self.backend, req)
        except ServiceError as exc:
            self.rack_names.pop(rid, None)
            self._cannot("rack", rid, exc.message)
            return
        self._did("rack", row["name"], rid, CREATED)

    async def _secret(self, rack_object: str, rid: uuid.UUID, creds: tuple[str, str]) -> bool:
        """Create the rack's credentials Secret; False when one of that name holds
        other credentials (left as it is)."""
        name, ns = secret_name(rack_object), self.secret_namespace
        data = {
            "username": base64.b64encode(creds[0].encode()).decode(),
            "password": base64.b64encode(creds[1].encode()).decode(),
        }
        try:
            found = await self.backend.kube.get(SECRETS, name, ns)
        except KubeNotFound:
            found = None
        if found is not None:
            if found.get("data") == data:
                self._did("secret", f"{ns}/{name}", rid, EXISTS)
                return True
            self._cannot("bmc", rid, f"Secret {ns}/{name} exists with other data; left as it is")
            return False
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/basic-auth",
            "metadata": {"name": name, "namespace": ns, "labels": {LABEL_IMPORTED: "original"}},
            "data": data,
        }
        await self.backend.kube.create(SECRETS, body, ns)
        self._did("secret", f"{ns}/{name}", rid, CREATED)
        return True

    async def _loose_components(self) -> None:
        """Live components in no rack; those of a deleted rack are reported."""
        live_racks = {r["id"] for r in self.data.racks}
        for row in self.data.components:
            rack_id = row.get("rack_id")
            if rack_id in live_racks:
                continue
            if rack_id is not None:
                self._cannot("component", row["id"], f"its rack {rack_id} is deleted or unknown")
                continue
            async with self.backend.sessions() as session:
                have = await session.get(Component, row["id"])
            if have is not None and have.deleted_at is None:
                self._did("component", _text(row["name"]), row["id"], EXISTS)
                continue
            comp = self._component_message(row)
            if comp is None:
                continue
            if self.dry_run:
                self._did("component", _text(row["name"]), row["id"], WOULD_CREATE)
                continue
            try:
                await component_writes.add_component(
                    self.backend, pb.AddComponentRequest(component=comp)
                )
            except ServiceError as exc:
                self._cannot("component", row["id"], exc.message)
                continue
            self._did("component", _text(row["name"]), row["id"], CREATED)

    # -- rules and associations ---------------------------------------------------------

    async def _rules(self) -> None:
        for row in self.data.rules:
            rid = row["id"]
            try:
                have = await rules.find_rule(self.backend, rid)
            except NotFound:
                have = None
            if have is not None:
                self.rule_objects[rid] = have["metadata"]["name"]
                self._did("rule", row["name"], rid, EXISTS)
                continue
            try:
                code = OperationCode(_text(row["operation_code"]).lower())
            except ValueError:
                self._cannot("operation_rules", rid, f"unknown operation {row['operation_code']!r}")
                continue
            raw = row["rule_definition"]
            try:
                definition = parse_rule_definition(
                    raw if isinstance(raw, dict | str) else json.dumps(raw)
                )
            except RuleError as exc:
                self._cannot("operation_rules", rid, str(exc))
                continue
            problems = rule_problems_for_operation(definition, code)
            if problems:
                self._cannot("operation_rules", rid, "; ".join(problems))
                continue
            if self.dry_run:
                self.rule_objects[rid] = ""
                self._did("rule", row["name"], rid, WOULD_CREATE)
                continue
            args = {
                "rid": rid,
                "name": _text(row["name"])[: rules.MAX_NAME] or f"rule {rid}",
                "description": _text(row.get("description")),
                "code": code,
                "definition": definition,
            }
            try:
                await rules.create_rule_object(
                    self.backend, **args, is_default=bool(row["is_default"])
                )
            except ServiceError as exc:
                if not row["is_default"]:
                    self._cannot("operation_rules", rid, exc.message)
                    continue
                # another rule is the default for the operation here: keep that one
                await rules.create_rule_object(self.backend, **args, is_default=False)
                self._cannot("operation_rules", rid, f"imported as not default: {exc.message}")
            self.rule_objects[rid] = (await rules.find_rule(self.backend, rid))["metadata"]["name"]
            self._did("rule", row["name"], rid, CREATED)

    async def _associations(self) -> None:
        for row in self.data.associations:
            key = f"{row['rack_id']}/{row['operation_code']}"
            rack = self.rack_names.get(row["rack_id"])
            if rack is None:
                self._cannot("rack_rule_associations", key, "its rack is not imported")
                continue
            if row["rule_id"] not in self.rule_objects:
                self._cannot("rack_rule_associations", key, "its rule is not imported")
                continue
            if self.dry_run:
                self._did("association", key, row["rule_id"], WOULD_CREATE)
                continue
            try:
                code = OperationCode(_text(row["operation_code"]).lower())
                labels = (await self.backend.kube.get(RACKS, rack))["metadata"].get("labels") or {}
                if labels.get(rules.association_label(code)) == self.rule_objects[row["rule_id"]]:
                    self._did("association", key, row["rule_id"], EXISTS)
                    continue
                await rules.associate(
                    self.backend,
                    pb.AssociateRuleWithRackRequest(
                        rack_id=pb.UUID(id=str(row["rack_id"])),
                        rule_id=pb.UUID(id=str(row["rule_id"])),
                    ),
                )
            except (ServiceError, ValueError) as exc:
                self._cannot("rack_rule_associations", key, getattr(exc, "message", str(exc)))
                continue
            self._did("association", key, row["rule_id"], CREATED)

    # -- schedules ----------------------------------------------------------------------

    def _scope_targets(
        self, sid: uuid.UUID
    ) -> tuple[list[pb.RackTarget], list[pb.ComponentTarget]]:
        rack_targets: list[pb.RackTarget] = []
        comp_targets: list[pb.ComponentTarget] = []
        for scope in self.data.scopes:
            if scope["schedule_id"] != sid:
                continue
            if scope["rack_id"] not in self.rack_names:
                self._cannot("task_schedule_scope", scope["id"], "its rack is not imported")
                continue
            filt = _json(scope.get("component_filter")) or None
            if not filt:
                rack_targets.append(pb.RackTarget(id=pb.UUID(id=str(scope["rack_id"]))))
            elif filt.get("kind") == "types":
                types = [_type(_text(t)) for t in filt.get("types") or []]
                rack_targets.append(
                    pb.RackTarget(
                        id=pb.UUID(id=str(scope["rack_id"])),
                        component_types=[component_type_number(t) for t in types if t],
                    )
                )
            else:
                comp_targets += [
                    pb.ComponentTarget(id=pb.UUID(id=str(c))) for c in filt.get("components") or []
                ]
        return rack_targets, comp_targets

    def _scheduled_operation(
        self, sid: uuid.UUID, template: dict[str, Any], target: pb.OperationTargetSpec
    ) -> pb.ScheduledOperation | None:
        code_text = _text(template.get("code")).lower()
        try:
            code = OperationCode(code_text)
        except ValueError:
            self._cannot("task_schedule", sid, f"unknown operation {code_text!r}")
            return None
        info = _json(template.get("information")) or {}
        rule_id = template.get("rule_id") or info.get("rule_id")
        rule = None
        if rule_id:
            try:
                if uuid.UUID(str(rule_id)) in self.rule_objects:
                    rule = pb.UUID(id=str(rule_id))
            except ValueError:
                pass
        override = bool(info.get("override_readiness_check"))
        common: dict[str, Any] = {"target_spec": target}
        if rule is not None:
            common["rule_id"] = rule
        if code is OperationCode.POWER_ON:
            return pb.ScheduledOperation(
                power_on=pb.PowerOnRackRequest(**common, override_readiness_check=override)
            )
        if code in (OperationCode.POWER_OFF, OperationCode.FORCE_POWER_OFF):
            return pb.ScheduledOperation(
                power_off=pb.PowerOffRackRequest(
                    **common,
                    forced=code is OperationCode.FORCE_POWER_OFF,
                    override_readiness_check=override,
                )
            )
        if code in (OperationCode.RESTART, OperationCode.FORCE_RESTART):
            return pb.ScheduledOperation(
                power_reset=pb.PowerResetRackRequest(
                    **common,
                    forced=code is OperationCode.FORCE_RESTART,
                    override_readiness_check=override,
                )
            )
        if code is OperationCode.BRING_UP:
            return pb.ScheduledOperation(
                bring_up=pb.BringUpRackRequest(**common, override_readiness_check=override)
            )
        if code is OperationCode.INGEST:
            return pb.ScheduledOperation(ingest=pb.IngestRackRequest(**common))
        if code is OperationCode.UPGRADE:
            req = pb.UpgradeFirmwareRequest(
                **common,
                sub_targets=list(info.get("sub_targets") or []),
                override_readiness_check=override,
            )
            if info.get("target_version"):
                req.target_version = str(info["target_version"])
            return pb.ScheduledOperation(upgrade_firmware=req)
        self._cannot(
            "task_schedule", sid, f"operation {code.value} cannot be scheduled through the API"
        )
        return None

    async def _schedules(self) -> None:
        for row in self.data.schedules:
            sid = row["id"]
            try:
                await schedules.find_schedule(self.backend, sid)
            except NotFound:
                pass
            else:
                self._did("schedule", row["name"], sid, EXISTS)
                continue
            if row["spec_type"] == "one-time" and not row["enabled"] and not row["next_run_at"]:
                self._cannot("task_schedule", sid, "a one-time schedule that has run already")
                continue
            rack_targets, comp_targets = self._scope_targets(sid)
            if not rack_targets and not comp_targets:
                self._cannot("task_schedule", sid, "none of its racks is imported")
                continue
            first = (
                pb.OperationTargetSpec(racks=pb.RackTargets(targets=rack_targets))
                if rack_targets
                else pb.OperationTargetSpec(components=pb.ComponentTargets(targets=comp_targets))
            )
            operation = self._scheduled_operation(
                sid, _json(row.get("operation_template")) or {}, first
            )
            if operation is None:
                continue
            spec_type = _SPEC_TYPES.get(_text(row["spec_type"]))
            if spec_type is None:
                self._cannot("task_schedule", sid, f"unknown spec_type {row['spec_type']!r}")
                continue
            spec = pb.ScheduleSpec(type=spec_type, spec=_text(row["spec"]))
            if spec_type == pb.SCHEDULE_SPEC_TYPE_CRON and row.get("timezone"):
                spec.timezone = row["timezone"]
            config = pb.ScheduleConfig(
                name=_text(row["name"]),
                spec=spec,
                overlap_policy=pb.OVERLAP_POLICY_QUEUE
                if row.get("overlap_policy") == "queue"
                else pb.OVERLAP_POLICY_SKIP,
            )
            if self.dry_run:
                self._did("schedule", row["name"], sid, WOULD_CREATE)
                continue
            request = pb.CreateTaskScheduleRequest(schedule=config, operation=operation)
            try:
                # suspended: a person decides when an imported schedule may fire again
                await schedules.create_schedule(
                    self.backend, request, schedule_id=sid, suspend=True
                )
                if rack_targets and comp_targets:
                    await schedules.add_scope(
                        self.backend,
                        pb.AddTaskScheduleScopeRequest(
                            schedule_id=pb.UUID(id=str(sid)),
                            target_spec=pb.OperationTargetSpec(
                                components=pb.ComponentTargets(targets=comp_targets)
                            ),
                        ),
                    )
            except ServiceError as exc:
                self._cannot("task_schedule", sid, exc.message)
                continue
            self._did("schedule", row["name"], sid, CREATED)

    # -- task archive -------------------------------------------------------------------

    def _task_code(self, row: Row) -> OperationCode | None:
        info = _json(row.get("information")) or {}
        kind = _text(row.get("type"))
        if kind == "power_control":
            return _POWER_CODES.get(int(info.get("operation") or 0))
        if kind == "firmware_control":
            return _FIRMWARE_CODES.get(int(info.get("operation") or 0))
        if kind == "bring_up":
            try:
                return OperationCode(_text(info.get("op_code")) or "bring_up")
            except ValueError:
                return None
        return None

    async def _tasks(self) -> None:
        for row in self.data.tasks:
            tid = row["id"]
            phase = _PHASES.get(_text(row["status"]))
            if phase is None:
                self._cannot(
                    "task",
                    tid,
                    f"was {row['status']} in the original: only finished tasks are imported "
                    "(an unfinished one cannot be continued here)",
                )
                continue
            code = self._task_code(row)
            if code is None:
                self._cannot("task", tid, f"a {row['type']} task has no operation here")
                continue
            async with self.backend.sessions() as session:
                have = await session.scalar(select(TaskHistory.id).where(TaskHistory.id == tid))
            if have is not None:
                self._did("task", code.value, tid, EXISTS)
                continue
            if self.dry_run:
                self._did("task", code.value, tid, WOULD_CREATE)
                continue
            attributes = _json(row.get("attributes")) or {}
            components: dict[str, list[str]] = {}
            for type_text, ids in (attributes.get("components_by_type") or {}).items():
                ctype = _type(type_text)
                if ctype is not None:
                    components[ctype.value] = [str(i) for i in ids or []]
            rule = None
            if row.get("applied_rule_id") in self.rule_objects:
                rule = {"name": self.rule_objects[row["applied_rule_id"]], "source": "imported"}
            finished: datetime = (
                row.get("finished_at") or row.get("updated_at") or row["created_at"]
            )
            record = {
                "id": tid,
                "name": imported_name(tid),
                "namespace": self.backend.namespace,
                "rack_id": row.get("rack_id"),
                "rack_name": self.rack_names.get(row.get("rack_id")),  # type: ignore[arg-type]
                "operation_code": code.value,
                "phase": phase.value,
                "message": row.get("message") or None,
                "description": row.get("description") or None,
                "components": components,
                "applied_rule": rule,
                "report": _json(row.get("report")) or None,
                "created_at": row["created_at"],
                "started_at": row.get("started_at"),
                "finished_at": finished,
            }
            async with self.backend.sessions() as session, session.begin():
                await archive_task(session, record)
            self._did("task", code.value, tid, CREATED)


async def import_original(
    backend: Backend, data: OriginalData, *, dry_run: bool, secret_namespace: str
) -> Report:
    return await Importer(backend, data, dry_run=dry_run, secret_namespace=secret_namespace).run()
