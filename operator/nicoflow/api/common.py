"""Pieces shared by the custom resources of group flow.nico.io: the model base,
timestamps, conditions, label selectors, references and the CRD descriptor
that `crdgen` renders.

Models here describe `spec` and `status` only; object metadata stays a plain
mapping because the apiserver owns its schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator
from pydantic.alias_generators import to_camel

GROUP = "flow.nico.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "flow"

# Bounds shared by many fields. CEL cost estimates multiply list and string
# sizes, so every list and string carries a maximum.
NAME_MAX = 253
LABEL_VALUE_MAX = 63
SHORT_TEXT_MAX = 256
MESSAGE_MAX = 1024
DESCRIPTION_MAX = 1024
MAX_CONDITIONS = 16

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class CrdModel(BaseModel):
    """Base of every spec/status model: camelCase on the wire, snake_case in Python,
    unknown fields rejected (the structural schema prunes them server-side anyway)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )

    def to_k8s(self) -> dict[str, Any]:
        """The object as the apiserver stores it: camelCase, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Timestamp = Annotated[datetime, PlainSerializer(_rfc3339, return_type=str, when_used="json")]
"""A point in time, written as RFC 3339 UTC with second precision like metav1.Time."""

ObjectName = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=DNS_SUBDOMAIN)]
LabelName = Annotated[str, Field(min_length=1, max_length=LABEL_VALUE_MAX, pattern=DNS_LABEL)]
ShortText = Annotated[str, Field(max_length=SHORT_TEXT_MAX)]
Message = Annotated[str, Field(max_length=MESSAGE_MAX)]


def cel(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


def validations(*rules: dict[str, Any]) -> dict[str, Any]:
    """json_schema_extra carrying CEL rules."""
    return {"x-kubernetes-validations": list(rules)}


LIST_MAP_BY_TYPE: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}

# A schema node marked with this key has its transition rules (those using
# oldSelf) removed by crdgen: used where a spec is embedded as a template that
# people edit freely, as a TaskSchedule's TaskSpec template.
TEMPLATE_MARKER = "x-nicoflow-template"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(CrdModel):
    """An observation about the object, shaped like metav1.Condition."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="CamelCase condition type, e.g. Succeeded.",
    )
    status: ConditionStatus
    observed_generation: int | None = Field(
        None, ge=0, description="metadata.generation the condition was computed from."
    )
    last_transition_time: Timestamp = Field(description="When status last changed.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase reason for the last transition.",
    )
    message: str = Field("", max_length=32768, description="Human-readable detail.")


Conditions = Annotated[
    list[Condition],
    Field(max_length=MAX_CONDITIONS, json_schema_extra=LIST_MAP_BY_TYPE),
]


class LabelSelectorRequirement(CrdModel):
    key: str = Field(min_length=1, max_length=317)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[Annotated[str, Field(max_length=LABEL_VALUE_MAX)]] | None = Field(
        None, max_length=64
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0)"
                " : (!has(self.values) || size(self.values) == 0)",
                "values must be non-empty for operators In and NotIn, and empty for Exists"
                " and DoesNotExist",
            )
        )
    )

    @model_validator(mode="after")
    def _check_values(self) -> LabelSelectorRequirement:
        needs_values = self.operator in ("In", "NotIn")
        if needs_values != bool(self.values):
            raise ValueError(
                "values must be non-empty for operators In and NotIn, and empty for Exists"
                " and DoesNotExist"
            )
        return self


class LabelSelector(CrdModel):
    """Selects objects by labels, as metav1.LabelSelector; all terms must match."""

    match_labels: dict[str, Annotated[str, Field(max_length=LABEL_VALUE_MAX)]] | None = Field(
        None, max_length=64
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(None, max_length=16)

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether an object with `labels` is selected (an empty selector selects all)."""
        for key, wanted in (self.match_labels or {}).items():
            if labels.get(key) != wanted:
                return False
        for req in self.match_expressions or []:
            present = req.key in labels
            value = labels.get(req.key)
            values = req.values or []
            if req.operator == "In" and value not in values:
                return False
            if req.operator == "NotIn" and present and value in values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


class LocalObjectReference(CrdModel):
    """Names an object of the kind the field documents, in the same namespace or cluster-wide."""

    name: ObjectName


class ObjectReference(CrdModel):
    """Names a namespaced object."""

    name: ObjectName
    namespace: LabelName | None = None
    uid: str | None = Field(None, max_length=64)


class SecretReference(CrdModel):
    """Names a Secret; without namespace, the operator's own namespace."""

    name: ObjectName
    namespace: LabelName | None = None


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str = ""
    priority: int = 0


AGE_COLUMN = PrinterColumn("Age", "date", ".metadata.creationTimestamp")


@dataclass(frozen=True)
class CrdInfo:
    """Everything crdgen needs to render one kind."""

    kind: str
    plural: str
    singular: str
    scope: Literal["Namespaced", "Cluster"]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    short_names: tuple[str, ...] = ()
    printer_columns: tuple[PrinterColumn, ...] = ()
    # CEL rules on the whole object (they may read metadata.name)
    object_validations: tuple[dict[str, Any], ...] = ()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"
