"""Who may call which RPC of the Flow API.

A client is known by its verified certificate (mTLS): its SPIFFE id, URI and
DNS names, e-mail addresses and common name, written as identity strings —
`spiffe://example.org/ns/ops/sa/bot`, `https://...` (other URIs),
`dns:bot.example.org`, `email:ops@example.org`, `cn:alice`. A roles file maps
identity patterns (shell-style globs) to one of three roles, each holding the
rights of the ones below it:

    viewer    read RPCs (racks, components, tasks, rules, schedules, NVL domains)
    operator  + operations (power, firmware, bring-up, ingest), cancelling tasks,
              firing a schedule now
    admin     + inventory writes, rules, schedules, NVL domains

    # flow serve --roles FILE
    defaultRole: none            # a verified client no pattern names: none|viewer|...
    roles:
      admin: ["spiffe://example.org/ns/platform/sa/flow-admin"]
      operator: ["spiffe://example.org/ns/ops/*", "dns:ops-bot.example.org"]
      viewer: ["cn:*"]

Every RPC of v1.Flow is in METHOD_ROLES; one missing from it needs admin."""

from __future__ import annotations

import contextvars
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import yaml

from nicoflow.api.admission import vouch


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role | None:
        """A role name; "none" is None."""
        key = str(text).strip().lower()
        if key == "none":
            return None
        for role in cls:
            if role.label == key:
                return role
        raise ValueError(f"unknown role {text!r}: use viewer, operator, admin or none")


V, OP, A = Role.VIEWER, Role.OPERATOR, Role.ADMIN
METHOD_ROLES: dict[str, Role] = {
    "Version": V,
    # inventory
    "CreateExpectedRack": A,
    "GetRackInfoByID": V,
    "GetRackInfoBySerial": V,
    "GetListOfRacks": V,
    "PatchRack": A,
    "DeleteRack": A,
    "PurgeRack": A,
    "GetComponentInfoByID": V,
    "GetComponentInfoBySerial": V,
    "GetComponents": V,
    "ValidateComponents": V,
    "AddComponent": A,
    "PatchComponent": A,
    "DeleteComponent": A,
    "PurgeComponent": A,
    "CreateNVLDomain": A,
    "AttachRacksToNVLDomain": A,
    "DetachRacksFromNVLDomain": A,
    "GetListOfNVLDomains": V,
    "GetRacksForNVLDomain": V,
    # operations and tasks
    "UpgradeFirmware": OP,
    "BringUpRack": OP,
    "IngestRack": OP,
    "PowerOnRack": OP,
    "PowerOffRack": OP,
    "PowerResetRack": OP,
    "ListTasks": V,
    "GetTasksByIDs": V,
    "CancelTask": OP,
    # rules
    "CreateOperationRule": A,
    "UpdateOperationRule": A,
    "DeleteOperationRule": A,
    "GetOperationRule": V,
    "ListOperationRules": V,
    "SetRuleAsDefault": A,
    "AssociateRuleWithRack": A,
    "DisassociateRuleFromRack": A,
    "GetRackRuleAssociation": V,
    "ListRackRuleAssociations": V,
    # schedules: changing them is admin; firing one now is an operation
    "CreateTaskSchedule": A,
    "GetTaskSchedule": V,
    "ListTaskSchedules": V,
    "UpdateTaskSchedule": A,
    "PauseTaskSchedule": A,
    "ResumeTaskSchedule": A,
    "DeleteTaskSchedule": A,
    "TriggerTaskSchedule": OP,
    "AddTaskScheduleScope": A,
    "RemoveTaskScheduleScope": A,
    "UpdateTaskScheduleScope": A,
    "ListTaskScheduleScopes": V,
    "CheckScheduleConflicts": V,
    # operation runs
    "CreateOperationRun": OP,
    "GetOperationRun": V,
    "ListOperationRuns": V,
    "ListOperationRunTargets": V,
    "PauseOperationRun": OP,
    "ResumeOperationRun": OP,
    "CancelOperationRun": OP,
}


def required_role(method: str) -> Role:
    return METHOD_ROLES.get(method, Role.ADMIN)


@dataclass(frozen=True)
class Identity:
    """A caller as its verified certificate names it."""

    names: tuple[str, ...]

    @property
    def display(self) -> str:
        """The one name that stands for the caller (audit, logs): its SPIFFE id,
        else a URI, a DNS name, the common name, an e-mail address."""
        return self.names[0] if self.names else "unknown"


def identity_from(auth_context: Mapping[str, Sequence[bytes]]) -> Identity | None:
    """The identity in a gRPC auth context, names in the order `display` prefers;
    None without a verified client certificate."""

    def values(key: str) -> list[str]:
        return [v.decode(errors="replace") for v in auth_context.get(key) or ()]

    if values("transport_security_type") != ["ssl"] or not auth_context.get("x509_pem_cert"):
        return None
    names: list[str] = []
    names += values("peer_spiffe_id")
    names += [u for u in values("peer_uri") if u not in names]
    names += [f"dns:{d}" for d in values("peer_dns")]
    names += [f"cn:{c}" for c in values("x509_common_name")]
    names += [f"email:{e}" for e in values("peer_email")]
    return Identity(tuple(names))


class RolesError(ValueError):
    """The roles file is unreadable or wrong; the message says what to fix."""


@dataclass(frozen=True)
class RolesConfig:
    rules: tuple[tuple[Role, tuple[str, ...]], ...] = ()
    default: Role | None = None
    source: str = "built-in"

    def role_of(self, identity: Identity) -> Role | None:
        best = self.default
        for role, patterns in self.rules:
            if any(fnmatch.fnmatchcase(n, p) for n in identity.names for p in patterns):
                best = role if best is None else max(best, role)
        return best


def roles_from(doc: Any, source: str) -> RolesConfig:
    if not isinstance(doc, Mapping):
        raise RolesError(f"{source}: expected a mapping with `roles` (and `defaultRole`)")
    unknown = set(doc) - {"roles", "defaultRole"}
    if unknown:
        raise RolesError(f"{source}: unknown keys {', '.join(sorted(unknown))}")
    try:
        default = Role.parse(str(doc.get("defaultRole", "none")))
    except ValueError as exc:
        raise RolesError(f"{source}: defaultRole: {exc}") from None
    rules: list[tuple[Role, tuple[str, ...]]] = []
    roles = doc.get("roles") or {}
    if not isinstance(roles, Mapping):
        raise RolesError(f"{source}: roles must map a role to a list of identity patterns")
    for name, patterns in roles.items():
        try:
            role = Role.parse(str(name))
        except ValueError as exc:
            raise RolesError(f"{source}: roles: {exc}") from None
        if role is None:
            raise RolesError(f"{source}: roles: `none` needs no list; leave such clients out")
        if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
            raise RolesError(f"{source}: roles.{name} must be a list of identity patterns")
        rules.append((role, tuple(patterns)))
    return RolesConfig(tuple(rules), default, source)


def load_roles(path: str | Path) -> RolesConfig:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise RolesError(f"cannot read roles file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise RolesError(f"roles file {path} is not YAML: {exc}") from None
    return roles_from(doc or {}, str(path))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    identity: str
    role: Role | None
    needed: Role
    message: str = ""


@dataclass(frozen=True)
class Authorizer:
    """Decides per call. `roles` None: no roles file, so every caller gets
    `fallback` (plaintext gRPC, or development without a roles file)."""

    roles: RolesConfig | None
    fallback: Role | None = Role.ADMIN

    def describe(self) -> str:
        if self.roles is not None:
            return f"roles from {self.roles.source}"
        return f"every caller {self.fallback.label if self.fallback else 'refused'}"

    def decide(self, method: str, identity: Identity | None) -> Decision:
        needed = required_role(method)
        who = identity.display if identity is not None else "anonymous"
        if self.roles is None or identity is None:
            role = self.fallback
            how = "the server's default"
        else:
            role = self.roles.role_of(identity)
            how = f"roles file {self.roles.source}"
        if role is not None and role >= needed:
            return Decision(True, who, role, needed)
        has = f"has role {role.label}" if role is not None else "has no role"
        message = (
            f"{method} needs role {needed.label}; {who} {has} ({how}): ask an administrator "
            f"to add it to the {needed.label} list"
        )
        return Decision(False, who, role, needed, message)


# The verified caller of the RPC being served, for what the handlers write
# (a TaskSpec's flow.nico.io/on-behalf-of).
CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("flow_caller", default=None)


def stamp_caller(body: dict[str, Any]) -> dict[str, Any]:
    """Name the RPC's verified caller on an object the API creates for it; with no
    identity (plaintext) the object names only the API's own ServiceAccount."""
    meta = body.setdefault("metadata", {})
    meta["annotations"] = vouch(dict(meta.get("annotations") or {}), CALLER.get())
    return body
