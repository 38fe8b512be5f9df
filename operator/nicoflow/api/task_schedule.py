"""TaskSchedule: creates a TaskSpec from a template on a cron schedule (in a time
zone), at a fixed interval, or once at a given time (namespaced, like a
CronJob)."""

from __future__ import annotations

import re
import zoneinfo
from enum import StrEnum
from typing import Annotated

from croniter import croniter
from pydantic import AfterValidator, ConfigDict, Field, model_validator

from nicoflow.api.common import (
    AGE_COLUMN,
    LABEL_VALUE_MAX,
    TEMPLATE_MARKER,
    Conditions,
    CrdInfo,
    CrdModel,
    ObjectReference,
    PrinterColumn,
    Timestamp,
    cel,
    validations,
)
from nicoflow.api.task_spec import TaskSpecSpec
from nicoflow.domain.durations import Duration, parse_duration

MIN_INTERVAL = "1m"
MAX_HISTORY = 100
MAX_ACTIVE = 32

# Five space-separated fields, or one of the @-macros croniter understands.
# No backslashes: the pattern is also used inside a CEL string literal.
CRON_PATTERN = (
    "^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+)$"
)
CRON_MESSAGE = (
    "cron must have five space-separated fields (minute hour day-of-month month day-of-week), "
    "e.g. '0 2 * * *', or be a macro such as @daily"
)
# "UTC" or an Area/Location name; abbreviations like PST or EST are ambiguous.
TIME_ZONE_PATTERN = r"^(UTC|[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)+)$"
TIME_ZONE_MESSAGE = (
    "timeZone must be an IANA zone name such as UTC, Europe/Berlin or America/Los_Angeles "
    "(abbreviations like PST or EST are not accepted)"
)


def _check_cron(value: str) -> str:
    value = value.strip()
    if not re.match(CRON_PATTERN, value) or not croniter.is_valid(value):
        raise ValueError(f"invalid cron expression {value!r}: {CRON_MESSAGE}")
    return value


def _check_time_zone(value: str) -> str:
    if not re.match(TIME_ZONE_PATTERN, value):
        raise ValueError(TIME_ZONE_MESSAGE)
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; {TIME_ZONE_MESSAGE}") from None
    return value


def _check_interval(value: str) -> str:
    if parse_duration(value) < parse_duration(MIN_INTERVAL):
        raise ValueError(f"interval must be at least {MIN_INTERVAL}")
    return value


_ONE_KIND = "[has(self.cron), has(self.interval), has(self.at)].filter(x, x).size() == 1"


class Schedule(CrdModel):
    """When to fire: exactly one of cron, interval or at."""

    cron: Annotated[str, AfterValidator(_check_cron)] | None = Field(
        None,
        max_length=128,
        description="Five-field cron expression, e.g. '0 2 * * *', evaluated in timeZone.",
        json_schema_extra=validations(cel(f"self.matches('{CRON_PATTERN}')", CRON_MESSAGE)),
    )
    time_zone: Annotated[str, AfterValidator(_check_time_zone)] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="IANA time zone of cron (default UTC).",
        json_schema_extra=validations(
            cel(f"self.matches('{TIME_ZONE_PATTERN}')", TIME_ZONE_MESSAGE)
        ),
    )
    interval: Annotated[Duration, AfterValidator(_check_interval)] | None = Field(
        None,
        description="Fire every interval, e.g. 6h; the first firing is one interval after "
        "creation.",
        json_schema_extra=validations(
            cel(
                f"duration(self) >= duration('{MIN_INTERVAL}')",
                f"interval must be at least {MIN_INTERVAL}",
            )
        ),
    )
    at: Timestamp | None = Field(None, description="Fire once at this time (RFC 3339).")

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(_ONE_KIND, "set exactly one of schedule.cron, schedule.interval or schedule.at"),
            cel(
                "!has(self.timeZone) || has(self.cron)",
                "timeZone applies only to cron schedules",
                field_path=".timeZone",
            ),
        )
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        kinds = [k for k in (self.cron, self.interval, self.at) if k is not None]
        if len(kinds) != 1:
            raise ValueError("set exactly one of schedule.cron, schedule.interval or schedule.at")
        if self.time_zone is not None and self.cron is None:
            raise ValueError("timeZone applies only to cron schedules")
        return self

    def describe(self) -> str:
        """Short text for people: 'cron 0 2 * * * Europe/Berlin', 'every 6h', 'at ...'."""
        if self.cron is not None:
            return f"cron {self.cron} {self.time_zone or 'UTC'}"
        if self.interval is not None:
            return f"every {self.interval}"
        assert self.at is not None
        return f"at {self.at.isoformat()}"


class OverlapPolicy(StrEnum):
    """What a firing does when the previous TaskSpec of the schedule is unfinished."""

    SKIP = "Skip"  # leave out racks still busy with an earlier firing; conflict strategy Reject
    QUEUE = "Queue"  # fire anyway; its Tasks queue behind the running ones


class TemplateMetadata(CrdModel):
    labels: dict[str, Annotated[str, Field(max_length=LABEL_VALUE_MAX)]] | None = Field(
        None, max_length=64
    )
    annotations: dict[str, Annotated[str, Field(max_length=4096)]] | None = Field(
        None, max_length=64
    )


class TaskSpecTemplate(CrdModel):
    """The TaskSpec each firing creates."""

    metadata: TemplateMetadata | None = None
    spec: TaskSpecSpec = Field(json_schema_extra={TEMPLATE_MARKER: True})


class TaskScheduleSpec(CrdModel):
    schedule: Schedule
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    suspend: bool = Field(False, description="Stop firing; TaskSpecs already created go on.")
    starting_deadline_seconds: int | None = Field(
        None,
        ge=0,
        le=86400,
        description="A firing missed by more than this (e.g. operator down) is skipped.",
    )
    successful_history_limit: int = Field(
        3, ge=0, le=MAX_HISTORY, description="Finished successful TaskSpecs to keep."
    )
    failed_history_limit: int = Field(
        1, ge=0, le=MAX_HISTORY, description="Finished failed TaskSpecs to keep."
    )
    task_spec_template: TaskSpecTemplate


class TaskScheduleStatus(CrdModel):
    """Conditions: Ready (schedule valid and armed), Suspended, Completed (a one-time
    schedule has fired, or was triggered), Missed (the latest due time passed its starting
    deadline, or passed while the schedule was suspended: resuming never runs it), Skipped
    (overlap policy Skip left the latest due time, or some of its racks, out because a
    previous Task was unfinished)."""

    observed_generation: int | None = Field(None, ge=0)
    last_schedule_time: Timestamp | None = Field(
        None, description="Scheduled time of the latest TaskSpec created on schedule."
    )
    last_skipped_time: Timestamp | None = Field(
        None,
        description="Latest scheduled time that passed without a TaskSpec (missed its "
        "starting deadline, or skipped by the overlap policy).",
    )
    next_schedule_time: Timestamp | None = None
    last_successful_time: Timestamp | None = None
    last_trigger_token: str | None = Field(
        None,
        max_length=256,
        description="Value of the flow.nico.io/trigger-now annotation handled last; each new "
        "value fires once.",
    )
    last_trigger_time: Timestamp | None = Field(
        None,
        description="When a trigger (flow.nico.io/trigger-now or the API) last created a "
        "TaskSpec. A triggered one-time schedule is complete.",
    )
    active: list[ObjectReference] | None = Field(
        None, max_length=MAX_ACTIVE, description="TaskSpecs created by the schedule, unfinished."
    )
    conditions: Conditions | None = None


CRD = CrdInfo(
    kind="TaskSchedule",
    plural="taskschedules",
    singular="taskschedule",
    scope="Namespaced",
    spec=TaskScheduleSpec,
    status=TaskScheduleStatus,
    description="Creates a TaskSpec from a template on a cron schedule, at an interval, or once.",
    short_names=("tsched",),
    printer_columns=(
        # a union: exactly one of the three is set
        PrinterColumn("Schedule", "string", ".spec.schedule['cron','interval','at']"),
        PrinterColumn("Suspend", "boolean", ".spec.suspend"),
        PrinterColumn("Last", "date", ".status.lastScheduleTime"),
        PrinterColumn("Next", "date", ".status.nextScheduleTime"),
        AGE_COLUMN,
        PrinterColumn("TimeZone", "string", ".spec.schedule.timeZone", priority=1),
        PrinterColumn("Operation", "string", ".spec.taskSpecTemplate.spec.operation", priority=1),
    ),
)
