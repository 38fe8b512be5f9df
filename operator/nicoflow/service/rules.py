"""Operation rule RPCs and rack-rule associations, over OperationRule objects.

The original kept rules and associations in tables; here a rule is a
cluster-scoped OperationRule object, and the API maps onto it:

- id: the label `flow.nico.io/rule-id=<uuid>` (set at creation; rules made
  with kubectl, which have none, get a name-based UUID computed on the fly);
- name: the annotation `flow.nico.io/rule-name` (the v1 name is free text and
  need not be unique); the object's own name is made DNS-safe from it, with a
  short random suffix when that name is taken;
- updated_at: the annotation `flow.nico.io/updated-at`; created_at: the
  object's creationTimestamp.

An association (rack, operation code) -> rule is the Rack object label
`flow.nico.io/rule.<operation_code>=<rule object name>`. Every rule the API
manages that is not the default carries
`rackSelector.matchLabels {flow.nico.io/rule.<code>: <its own name>}` and the
highest priority, so the operator's rule selection picks it for exactly the
racks associated with it, ahead of the default. A default rule cannot carry a
selector (the CRD forbids it), and needs none: an association to it leaves the
rack on the default. The one difference from the original: a kubectl-made rule
with its own selector and the same top priority can tie with an association
(ties go by name). The label is written to the Rack object and mirrored into
PostgreSQL in the same call, and the association's timestamps are kept in the
Rack annotation `flow.nico.io/rule-associations` (JSON by operation code)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import ValidationError
from sqlalchemy import select

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.api.common import API_VERSION
from nicoflow.api.operation_rule import MAX_PRIORITY, OperationRuleSpec
from nicoflow.domain.rules import (
    RuleDefinition,
    RuleError,
    describe_validation_error,
    parse_rule_definition,
    rule_problems_for_operation,
)
from nicoflow.domain.types import OperationCode, OperationType
from nicoflow.inventory import mirror
from nicoflow.inventory.models import Rack
from nicoflow.kube.client import Conflict, Invalid
from nicoflow.kube.client import NotFound as KubeNotFound
from nicoflow.kube.resources import GROUP, RACKS, RULES
from nicoflow.kube.retry import retrying
from nicoflow.service.backend import Backend
from nicoflow.service.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from nicoflow.service.operations import LABEL_RULE_ID
from nicoflow.service.validation import parse_uuid

Json = dict[str, Any]

ANNOTATION_RULE_NAME = f"{GROUP}/rule-name"
ANNOTATION_UPDATED_AT = f"{GROUP}/updated-at"
ANNOTATION_ASSOCIATIONS = f"{GROUP}/rule-associations"
ASSOCIATION_PREFIX = f"{GROUP}/rule."
NIL_UUID = "00000000-0000-0000-0000-000000000000"
# Name-based ids for rules created without the API (kubectl); fixed forever.
RULE_ID_NAMESPACE = uuid.UUID("0b6f1c52-7d0e-5a8b-9c3e-2f4a6d8e1b70")
MAX_NAME = 128
_OBJECT_NAME_MAX = 50  # leaves room for a suffix; also fits a label value
_INVALID = re.compile(r"[^a-z0-9-]+")
DEFAULT_LIMIT = 100

_API_TYPES: dict[pb.OperationType.ValueType, OperationType] = {
    pb.OPERATION_TYPE_POWER_CONTROL: OperationType.POWER_CONTROL,
    pb.OPERATION_TYPE_FIRMWARE_CONTROL: OperationType.FIRMWARE_CONTROL,
}
_TYPE_NUMBERS = {v: k for k, v in _API_TYPES.items()}


def association_label(code: OperationCode) -> str:
    return f"{ASSOCIATION_PREFIX}{code.value}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ts(text: str | None) -> Timestamp:
    out = Timestamp()
    if text:
        out.FromDatetime(datetime.fromisoformat(text.replace("Z", "+00:00")))
    return out


def object_name(display: str) -> str:
    base = _INVALID.sub("-", display.lower()).strip("-")[:_OBJECT_NAME_MAX].strip("-")
    return base or "rule"


def rule_id_of(body: Json) -> uuid.UUID:
    label = (body["metadata"].get("labels") or {}).get(LABEL_RULE_ID)
    if label:
        try:
            return uuid.UUID(label)
        except ValueError:
            pass
    return uuid.uuid5(RULE_ID_NAMESPACE, body["metadata"]["name"])


# --- request checks -------------------------------------------------------------------------


def _operation(type_number: pb.OperationType.ValueType, code_text: str) -> OperationCode:
    otype = _API_TYPES.get(type_number)
    if otype is None:
        raise InvalidArgument(
            f"operation_type {type_number} is not supported; use OPERATION_TYPE_POWER_CONTROL "
            "or OPERATION_TYPE_FIRMWARE_CONTROL (bring-up rules are built in)"
        )
    try:
        code = OperationCode(code_text.strip().lower())
    except ValueError:
        code = None
    if code is None or code.operation_type is not otype:
        valid = ", ".join(c.value for c in OperationCode if c.operation_type is otype)
        raise InvalidArgument(
            f"operation_code {code_text!r} is not an operation of {otype.value}; use one of {valid}"
        )
    return code


def _name(text: str) -> str:
    if not text.strip():
        raise InvalidArgument("name is required: give the rule a name people will recognise")
    if len(text) > MAX_NAME:
        raise InvalidArgument(f"name is {len(text)} characters long; at most {MAX_NAME}")
    return text


def _definition(text: str, code: OperationCode) -> RuleDefinition:
    if not text.strip():
        raise InvalidArgument(
            'rule_definition_json is required, e.g. {"version": "v1", "steps": [...]}'
        )
    try:
        definition = parse_rule_definition(text)
    except RuleError as exc:
        raise InvalidArgument(f"rule_definition_json: {exc}") from None
    problems = rule_problems_for_operation(definition, code)
    if problems:
        raise InvalidArgument(f"rule_definition_json for {code.value}: " + "; ".join(problems))
    return definition


def _selector(name: str, code: OperationCode) -> Json:
    return {"matchLabels": {association_label(code): name}}


def _check_spec(spec: Json) -> None:
    try:
        OperationRuleSpec.model_validate(spec)
    except ValidationError as exc:
        raise InvalidArgument(
            "the rule is not a valid OperationRule: " + "; ".join(describe_validation_error(exc))
        ) from None


# --- lookups --------------------------------------------------------------------------------


async def _all_rules(backend: Backend) -> list[Json]:
    return list(await retrying(lambda: backend.kube.list(RULES)))


async def _find(backend: Backend, rule_id: uuid.UUID) -> Json:
    items = await retrying(
        lambda: backend.kube.list(RULES, label_selector=f"{LABEL_RULE_ID}={rule_id}")
    )
    if items:
        return dict(items[0])
    for body in await _all_rules(backend):
        if rule_id_of(body) == rule_id:
            return body
    raise NotFound(f"operation rule {rule_id} not found")


async def find_rule(backend: Backend, rule_id: uuid.UUID) -> Json:
    """The OperationRule with this v1 id; NotFound when there is none."""
    return await _find(backend, rule_id)


def _code_of(body: Json) -> OperationCode:
    return OperationCode(str((body.get("spec") or {}).get("operation")))


def rule_message(body: Json) -> pb.OperationRule:
    meta, spec = body["metadata"], body.get("spec") or {}
    code = _code_of(body)
    annotations = meta.get("annotations") or {}
    try:
        definition_json = RuleDefinition.model_validate(spec.get("definition") or {}).to_json()
    except ValidationError:
        definition_json = json.dumps(spec.get("definition") or {}, sort_keys=True)
    created = meta.get("creationTimestamp")
    return pb.OperationRule(
        id=pb.UUID(id=str(rule_id_of(body))),
        name=annotations.get(ANNOTATION_RULE_NAME) or meta["name"],
        description=spec.get("description") or "",
        operation_type=_TYPE_NUMBERS.get(code.operation_type, pb.OPERATION_TYPE_UNKNOWN),
        operation_code=code.value,
        rule_definition_json=definition_json,
        is_default=bool(spec.get("isDefault")),
        created_at=_ts(created),
        updated_at=_ts(annotations.get(ANNOTATION_UPDATED_AT) or created),
    )


def _default_for(rules: list[Json], code: OperationCode, but: str | None = None) -> list[Json]:
    return [
        r
        for r in rules
        if (r.get("spec") or {}).get("isDefault")
        and (r.get("spec") or {}).get("operation") == code.value
        and r["metadata"]["name"] != but
    ]


# --- rule RPCs ------------------------------------------------------------------------------


async def create_rule(backend: Backend, request: pb.CreateOperationRuleRequest) -> uuid.UUID:
    name = _name(request.name)
    code = _operation(request.operation_type, request.operation_code)
    definition = _definition(request.rule_definition_json, code)
    return await create_rule_object(
        backend,
        rid=uuid.uuid4(),
        name=name,
        description=request.description,
        code=code,
        definition=definition,
        is_default=request.is_default,
    )


async def create_rule_object(
    backend: Backend,
    *,
    rid: uuid.UUID,
    name: str,
    description: str,
    code: OperationCode,
    definition: RuleDefinition,
    is_default: bool,
) -> uuid.UUID:
    """The OperationRule for a checked rule, with the v1 id `rid`."""
    rules = await _all_rules(backend)
    if is_default:
        taken = _default_for(rules, code)
        if taken:
            other = taken[0]
            raise AlreadyExists(
                f"rule {rule_message(other).name!r} (id {rule_id_of(other)}) is already the "
                f"default for {code.value}; create this rule without is_default, then call "
                "SetRuleAsDefault to switch"
            )
    taken_names = {r["metadata"]["name"] for r in rules}
    obj_name = object_name(name)
    if obj_name in taken_names:
        obj_name = f"{obj_name}-{rid.hex[:6]}"
    spec: Json = {"operation": code.value, "isDefault": is_default, "priority": 0}
    if description:
        spec["description"] = description
    if not is_default:
        spec["rackSelector"] = _selector(obj_name, code)
        spec["priority"] = MAX_PRIORITY
    spec["definition"] = definition.to_crd()
    _check_spec(spec)
    metadata: Json = {"name": obj_name}
    body: Json = {
        "apiVersion": API_VERSION,
        "kind": "OperationRule",
        "metadata": {
            **metadata,
            "labels": {LABEL_RULE_ID: str(rid)},
            "annotations": {ANNOTATION_RULE_NAME: name, ANNOTATION_UPDATED_AT: _now()},
        },
        "spec": spec,
    }
    for attempt in range(2):
        try:
            await retrying(lambda: backend.kube.create(RULES, body))
            return rid
        except Conflict:
            if attempt:
                break
            # created by someone else in the meantime: draw a suffix
            obj_name = f"{object_name(name)}-{uuid.uuid4().hex[:6]}"
            body["metadata"] = {**body["metadata"], "name": obj_name}
            if "rackSelector" in spec:
                spec["rackSelector"] = _selector(obj_name, code)
        except Invalid as exc:
            raise InvalidArgument(f"Kubernetes refused the OperationRule: {exc.message}") from None
    raise AlreadyExists(f"could not find a free object name for rule {name!r}; retry")


async def update_rule(backend: Backend, request: pb.UpdateOperationRuleRequest) -> None:
    rid = parse_uuid(request.rule_id if request.HasField("rule_id") else None, "rule_id")
    body = await _find(backend, rid)
    code = _code_of(body)
    annotations: dict[str, str] = {ANNOTATION_UPDATED_AT: _now()}
    patch: Json = {"metadata": {"annotations": annotations}, "spec": {}}
    if request.HasField("name"):
        annotations[ANNOTATION_RULE_NAME] = _name(request.name)
    if request.HasField("description"):
        patch["spec"]["description"] = request.description or None
    if request.HasField("rule_definition_json"):
        patch["spec"]["definition"] = _definition(request.rule_definition_json, code).to_crd()
    await _patch_rule(backend, body["metadata"]["name"], patch)


async def _patch_rule(backend: Backend, name: str, patch: Json) -> Json:
    try:
        return dict(await retrying(lambda: backend.kube.patch(RULES, name, patch)))
    except KubeNotFound:
        raise NotFound(f"operation rule {name} was deleted meanwhile") from None
    except Invalid as exc:
        raise InvalidArgument(f"Kubernetes refused the change: {exc.message}") from None


async def get_rule(backend: Backend, request: pb.GetOperationRuleRequest) -> pb.OperationRule:
    rid = parse_uuid(request.rule_id if request.HasField("rule_id") else None, "rule_id")
    return rule_message(await _find(backend, rid))


async def list_rules(
    backend: Backend, request: pb.ListOperationRulesRequest
) -> tuple[list[pb.OperationRule], int]:
    offset = request.offset if request.HasField("offset") else 0
    limit = request.limit if request.HasField("limit") else DEFAULT_LIMIT
    if offset < 0:
        raise InvalidArgument(f"offset is {offset}; it must be 0 or more")
    if limit <= 0:
        raise InvalidArgument(f"limit is {limit}; it must be greater than 0 (default 100)")
    wanted_type: OperationType | None = None
    if request.HasField("operation_type"):
        wanted_type = _API_TYPES.get(request.operation_type)
        if wanted_type is None:
            raise InvalidArgument(
                f"operation_type {request.operation_type} is not a rule type; use "
                "OPERATION_TYPE_POWER_CONTROL or OPERATION_TYPE_FIRMWARE_CONTROL"
            )
    found = []
    for body in await _all_rules(backend):
        try:
            code = _code_of(body)
        except ValueError:
            continue
        if wanted_type is not None and code.operation_type is not wanted_type:
            continue
        if request.HasField("is_default") and bool(
            (body.get("spec") or {}).get("isDefault")
        ) != bool(request.is_default):
            continue
        found.append(body)
    found.sort(key=lambda b: (b["metadata"].get("creationTimestamp") or "", b["metadata"]["name"]))
    return [rule_message(b) for b in found[offset : offset + limit]], len(found)


async def delete_rule(backend: Backend, request: pb.DeleteOperationRuleRequest) -> None:
    rid = parse_uuid(request.rule_id if request.HasField("rule_id") else None, "rule_id")
    body = await _find(backend, rid)
    name, code = body["metadata"]["name"], _code_of(body)
    # associations go with the rule, as the original's cascade did
    selector = f"{association_label(code)}={name}"
    for rack in await retrying(lambda: backend.kube.list(RACKS, label_selector=selector)):
        await _set_association(backend, rack["metadata"]["name"], code, None)
    try:
        await retrying(lambda: backend.kube.delete(RULES, name))
    except KubeNotFound:
        raise NotFound(f"operation rule {rid} not found") from None


async def set_default(backend: Backend, request: pb.SetRuleAsDefaultRequest) -> None:
    rid = parse_uuid(request.rule_id if request.HasField("rule_id") else None, "rule_id")
    body = await _find(backend, rid)
    name, code = body["metadata"]["name"], _code_of(body)
    for other in _default_for(await _all_rules(backend), code, but=name):
        oname = other["metadata"]["name"]
        await _patch_rule(
            backend,
            oname,
            {
                "metadata": {"annotations": {ANNOTATION_UPDATED_AT: _now()}},
                "spec": {
                    "isDefault": False,
                    "rackSelector": _selector(oname, code),
                    "priority": MAX_PRIORITY,
                },
            },
        )
    await _patch_rule(
        backend,
        name,
        {
            "metadata": {"annotations": {ANNOTATION_UPDATED_AT: _now()}},
            "spec": {"isDefault": True, "rackSelector": None},
        },
    )


# --- associations ---------------------------------------------------------------------------


async def _rack_name(backend: Backend, rack_id: uuid.UUID) -> str:
    async with backend.sessions() as session:
        row = await session.scalar(select(Rack).where(Rack.id == rack_id))
    if row is None or row.deleted_at is not None:
        raise NotFound(f"rack {rack_id} not found")
    return row.name


async def _rack_object(backend: Backend, name: str) -> Json:
    try:
        return dict(await retrying(lambda: backend.kube.get(RACKS, name)))
    except KubeNotFound:
        raise NotFound(f"rack {name} has no Rack object in Kubernetes") from None


def _associations(rack: Json) -> dict[str, Json]:
    raw = (rack["metadata"].get("annotations") or {}).get(ANNOTATION_ASSOCIATIONS) or "{}"
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def _set_association(
    backend: Backend, rack_name: str, code: OperationCode, rule: Json | None
) -> None:
    """Label (or unlabel) the Rack object and mirror the change at once."""
    rack = await _rack_object(backend, rack_name)
    stamps = _associations(rack)
    now = _now()
    if rule is None:
        stamps.pop(code.value, None)
        label: str | None = None
    else:
        label = rule["metadata"]["name"]
        old = stamps.get(code.value) or {}
        stamps[code.value] = {
            "ruleId": str(rule_id_of(rule)),
            "createdAt": old.get("createdAt") if old.get("ruleId") else now,
            "updatedAt": now,
        }
        stamps[code.value]["createdAt"] = stamps[code.value]["createdAt"] or now
    patch = {
        "metadata": {
            "labels": {association_label(code): label},
            "annotations": {ANNOTATION_ASSOCIATIONS: json.dumps(stamps, sort_keys=True)},
        }
    }
    updated = await retrying(lambda: backend.kube.patch(RACKS, rack_name, patch))
    async with backend.sessions() as session, session.begin():
        await mirror.upsert_rack(session, updated)


def _code_request(type_number: pb.OperationType.ValueType, code_text: str) -> OperationCode:
    return _operation(type_number, code_text)


async def associate(backend: Backend, request: pb.AssociateRuleWithRackRequest) -> None:
    rack_id = parse_uuid(request.rack_id if request.HasField("rack_id") else None, "rack_id")
    rid = parse_uuid(request.rule_id if request.HasField("rule_id") else None, "rule_id")
    rule = await _find(backend, rid)
    code, name = _code_of(rule), rule["metadata"]["name"]
    spec = rule.get("spec") or {}
    if not spec.get("isDefault") and spec.get("rackSelector") != _selector(name, code):
        if spec.get("rackSelector"):
            raise FailedPrecondition(
                f"rule {name} has its own rackSelector; label the Rack to match it instead "
                "of associating"
            )
        await _patch_rule(
            backend,
            name,
            {"spec": {"rackSelector": _selector(name, code), "priority": MAX_PRIORITY}},
        )
    await _set_association(backend, await _rack_name(backend, rack_id), code, rule)


async def disassociate(backend: Backend, request: pb.DisassociateRuleFromRackRequest) -> None:
    rack_id = parse_uuid(request.rack_id if request.HasField("rack_id") else None, "rack_id")
    code = _code_request(request.operation_type, request.operation_code)
    rack_name = await _rack_name(backend, rack_id)
    rack = await _rack_object(backend, rack_name)
    if association_label(code) not in (rack["metadata"].get("labels") or {}):
        raise NotFound(f"rack {rack_id} has no rule associated for {code.value}")
    await _set_association(backend, rack_name, code, None)


async def _rule_by_name(backend: Backend, name: str) -> Json | None:
    try:
        return dict(await retrying(lambda: backend.kube.get(RULES, name)))
    except KubeNotFound:
        return None


async def get_association(backend: Backend, request: pb.GetRackRuleAssociationRequest) -> pb.UUID:
    rack_id = parse_uuid(request.rack_id if request.HasField("rack_id") else None, "rack_id")
    code = _code_request(request.operation_type, request.operation_code)
    rack = await _rack_object(backend, await _rack_name(backend, rack_id))
    name = (rack["metadata"].get("labels") or {}).get(association_label(code))
    rule = await _rule_by_name(backend, name) if name else None
    return pb.UUID(id=str(rule_id_of(rule)) if rule is not None else NIL_UUID)


async def list_associations(
    backend: Backend, request: pb.ListRackRuleAssociationsRequest
) -> list[pb.RackRuleAssociation]:
    rack_id = parse_uuid(request.rack_id if request.HasField("rack_id") else None, "rack_id")
    rack = await _rack_object(backend, await _rack_name(backend, rack_id))
    stamps = _associations(rack)
    out = []
    for key, name in sorted((rack["metadata"].get("labels") or {}).items()):
        if not key.startswith(ASSOCIATION_PREFIX):
            continue
        try:
            code = OperationCode(key.removeprefix(ASSOCIATION_PREFIX))
        except ValueError:
            continue
        rule = await _rule_by_name(backend, name)
        if rule is None:
            continue
        stamp = stamps.get(code.value) or {}
        created = stamp.get("createdAt") or rack["metadata"].get("creationTimestamp")
        out.append(
            pb.RackRuleAssociation(
                rack_id=pb.UUID(id=str(rack_id)),
                operation_type=_TYPE_NUMBERS.get(code.operation_type, pb.OPERATION_TYPE_UNKNOWN),
                operation_code=code.value,
                rule_id=pb.UUID(id=str(rule_id_of(rule))),
                created_at=_ts(created),
                updated_at=_ts(stamp.get("updatedAt") or created),
            )
        )
    return out
