"""OperationRule: how one operation runs, as stages of steps (cluster-scoped,
like a StorageClass).

Resolution for a Task, strongest first: the TaskSpec's ruleRef; the rules for
the operation whose rackSelector matches the rack (highest priority, then
name); the rule marked isDefault; the built-in rule."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from nicoflow.api.common import (
    AGE_COLUMN,
    DESCRIPTION_MAX,
    Conditions,
    CrdInfo,
    CrdModel,
    LabelSelector,
    PrinterColumn,
    cel,
    validations,
)
from nicoflow.api.rule_schema import (
    CYCLES_VERIFIED_MESSAGE,
    FIRMWARE_IN_POWER_RULE_MESSAGE,
    INHERITED_FORCE_AFTER_MESSAGE,
    cycles_verified,
    inherited_power_op_allows_force_after,
    operation_needs_explicit_power_ops,
    power_rule_has_no_firmware,
)
from nicoflow.domain.rules import RuleDefinition, rule_problems_for_operation
from nicoflow.domain.types import OperationCode, OperationType

MAX_PRIORITY = 1000


class OperationRuleSpec(CrdModel):
    """A rule for one operation, optionally limited to racks matching a selector."""

    operation: OperationCode = Field(description="The operation this rule carries out.")
    description: str | None = Field(None, max_length=DESCRIPTION_MAX)
    is_default: bool = Field(
        False,
        description="Use for every rack the operation targets, unless a rule with a matching "
        "rackSelector or the TaskSpec's ruleRef takes precedence. One default per operation.",
    )
    priority: int = Field(
        0,
        ge=0,
        le=MAX_PRIORITY,
        description="Among rules whose rackSelector matches a rack, the highest priority wins "
        "(ties: alphabetical name).",
    )
    rack_selector: LabelSelector | None = Field(
        None, description="Racks (by label) this rule applies to."
    )
    definition: RuleDefinition

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!(self.isDefault && has(self.rackSelector))",
                "a default rule applies to every rack: remove rackSelector or set isDefault "
                "to false",
            ),
            cel(
                operation_needs_explicit_power_ops("self.operation"),
                "every PowerControl action must set parameters.operation when the rule is "
                "not for a power operation",
                field_path=".definition",
            ),
            cel(
                power_rule_has_no_firmware("self.operation"),
                FIRMWARE_IN_POWER_RULE_MESSAGE,
                field_path=".definition",
            ),
            cel(
                inherited_power_op_allows_force_after("self.operation"),
                INHERITED_FORCE_AFTER_MESSAGE,
                field_path=".definition",
            ),
            cel(
                cycles_verified("self.operation"),
                CYCLES_VERIFIED_MESSAGE,
                field_path=".definition",
            ),
        )
    )

    @model_validator(mode="after")
    def _check(self) -> OperationRuleSpec:
        if self.is_default and self.rack_selector is not None:
            raise ValueError(
                "a default rule applies to every rack: remove rackSelector or set isDefault "
                "to false"
            )
        problems = rule_problems_for_operation(self.definition, self.operation)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def operation_type(self) -> OperationType:
        return self.operation.operation_type


class OperationRuleStatus(CrdModel):
    """Conditions: Valid (the definition passed every check, including those only the
    operator can run), Accepted (the rule is in use: False when another default rule for
    the same operation was there first)."""

    observed_generation: int | None = Field(None, ge=0)
    operation_type: OperationType | None = Field(
        None, description="Type of the operation, derived from spec.operation."
    )
    conditions: Conditions | None = None


CRD = CrdInfo(
    kind="OperationRule",
    plural="operationrules",
    singular="operationrule",
    scope="Cluster",
    spec=OperationRuleSpec,
    status=OperationRuleStatus,
    description="Stages of steps that carry out one operation on a rack, optionally for racks "
    "matching a label selector. Built-in rules exist for every operation.",
    short_names=("oprule", "oprules"),
    printer_columns=(
        PrinterColumn("Operation", "string", ".spec.operation"),
        PrinterColumn("Default", "boolean", ".spec.isDefault"),
        PrinterColumn("Priority", "integer", ".spec.priority"),
        AGE_COLUMN,
        PrinterColumn(
            "Valid", "string", '.status.conditions[?(@.type=="Valid")].status', priority=1
        ),
        PrinterColumn("Description", "string", ".spec.description", priority=1),
    ),
)
