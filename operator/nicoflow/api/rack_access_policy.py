"""RackAccessPolicy: which namespaces may run which operations on which racks
(cluster-scoped, written by platform administrators).

The operator checks every TaskSpec against these grants when it resolves the
targets, and every Task again before it starts: a TaskSpec that targets a
rack its namespace is not granted for the operation is refused as a whole,
naming the racks. Grants only add. With no RackAccessPolicy in the cluster,
only the operator's own (platform) namespace may operate."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from nicoflow.api.common import (
    AGE_COLUMN,
    DESCRIPTION_MAX,
    Conditions,
    CrdInfo,
    CrdModel,
    LabelName,
    LabelSelector,
    PrinterColumn,
    cel,
    validations,
)
from nicoflow.api.task_spec import MAX_RACK_TARGETS
from nicoflow.domain.tenancy import OperationGrant

MAX_NAMESPACES = 256


class RackAccessPolicySpec(CrdModel):
    """Namespaces (by name or selector) may run `operations` on racks (by name or
    selector). An empty selector ({}) selects everything."""

    description: str | None = Field(None, max_length=DESCRIPTION_MAX)
    namespaces: list[LabelName] | None = Field(
        None,
        max_length=MAX_NAMESPACES,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Namespaces granted, by name.",
    )
    namespace_selector: LabelSelector | None = Field(
        None, description="Namespaces granted, by label; {} selects every namespace."
    )
    racks: list[LabelName] | None = Field(
        None,
        max_length=MAX_RACK_TARGETS,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Racks granted, by name.",
    )
    rack_selector: LabelSelector | None = Field(
        None, description="Racks granted, by label; {} selects every rack."
    )
    operations: list[OperationGrant] = Field(
        min_length=1,
        max_length=len(OperationGrant),
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="power (on, off, restart, resets, forced or not), firmware (upgrade, "
        "downgrade, rollback), bring_up, ingest.",
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "(has(self.namespaces) && size(self.namespaces) > 0) || "
                "has(self.namespaceSelector)",
                "name the granted namespaces in namespaces or select them with "
                "namespaceSelector ({} selects every namespace)",
            ),
            cel(
                "(has(self.racks) && size(self.racks) > 0) || has(self.rackSelector)",
                "name the granted racks in racks or select them with rackSelector "
                "({} selects every rack)",
            ),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> RackAccessPolicySpec:
        if not self.namespaces and self.namespace_selector is None:
            raise ValueError("name the granted namespaces or select them with namespaceSelector")
        if not self.racks and self.rack_selector is None:
            raise ValueError("name the granted racks or select them with rackSelector")
        return self


class RackAccessPolicyStatus(CrdModel):
    """Conditions: Accepted (the operator has read this generation and applies it;
    the message says what it grants)."""

    observed_generation: int | None = Field(None, ge=0)
    conditions: Conditions | None = None


CRD = CrdInfo(
    kind="RackAccessPolicy",
    plural="rackaccesspolicies",
    singular="rackaccesspolicy",
    scope="Cluster",
    spec=RackAccessPolicySpec,
    status=RackAccessPolicyStatus,
    description="Grants namespaces the right to run operations (power, firmware, bring_up, "
    "ingest) on racks; TaskSpecs targeting racks outside their namespace's grants are refused.",
    short_names=("rap", "raps"),
    printer_columns=(
        PrinterColumn("Operations", "string", ".spec.operations"),
        PrinterColumn("Namespaces", "string", ".spec.namespaces"),
        PrinterColumn("Racks", "string", ".spec.racks"),
        AGE_COLUMN,
        PrinterColumn(
            "Accepted", "string", '.status.conditions[?(@.type=="Accepted")].status', priority=1
        ),
        PrinterColumn("Description", "string", ".spec.description", priority=1),
    ),
)
