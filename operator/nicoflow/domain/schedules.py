"""When a TaskSchedule fires: pure time arithmetic, no I/O.

Three kinds of schedule:

- cron: a five-field expression (or @macro) read as wall-clock time in an IANA
  zone. Each wall-clock time fires at most once:
  * spring forward: a time that does not exist that day (02:30 when clocks jump
    from 02:00 to 03:00) is moved forward by the length of the gap (02:30 EST
    -> 03:30 EDT), which is how zoneinfo resolves a non-existent local time
    (PEP 495, fold=0). If that lands on a time the expression also names, it
    fires once.
  * fall back: a repeated wall-clock time fires once, at its first occurrence
    (the daylight-saving one); the second pass of the repeated hour fires
    nothing. (croniter alone fires such a time twice, hence our own mapping.)
- interval: fires at creation + k*interval (k >= 1), whatever the latency of
  earlier firings, so it never drifts. Intervals are whole seconds.
- at: fires once at the given instant.

`due` decides what one evaluation does, like a CronJob: of the scheduled times
that passed since the last one handled, only the most recent may fire, and only
within the starting deadline; older ones are reported as missed. It never
returns more than one time to fire.

Every fire time has a deterministic TaskSpec name: creating it twice (an
operator restart between create and status write) is answered by the apiserver
with AlreadyExists, which is what makes firing idempotent."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from nicoflow.domain.durations import parse_duration

NAME_MAX = 63  # a TaskSpec name is also a label value on its Tasks
MISSED_KEPT = 5
# Missed times are counted one by one up to _SCAN_STEPS; past that, the latest
# ones are found in a window before now that widens eight-fold until a
# scheduled time shows up, so a long outage costs a bounded number of steps.
_SCAN_STEPS = 1000
_FIRST_WINDOW = timedelta(hours=1)
_WIDEN = 8
# Candidate wall-clock times looked at before giving up: enough to walk a
# minute-by-minute expression through a whole repeated hour.
_CRON_STEPS = 1500


@dataclass(frozen=True)
class CronSchedule:
    expr: str
    zone: ZoneInfo
    created: datetime


@dataclass(frozen=True)
class IntervalSchedule:
    every: timedelta
    created: datetime


@dataclass(frozen=True)
class OneTimeSchedule:
    at: datetime
    created: datetime


Schedule = CronSchedule | IntervalSchedule | OneTimeSchedule


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must carry a time zone")
    return value.astimezone(UTC)


def cron(expr: str, zone: str = "UTC", *, created: datetime) -> CronSchedule:
    if not croniter.is_valid(expr):
        raise ValueError(f"invalid cron expression {expr!r}")
    return CronSchedule(expr.strip(), ZoneInfo(zone), _aware(created, "created"))


def interval(every: timedelta | float, *, created: datetime) -> IntervalSchedule:
    seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
    # whole seconds: fire times must survive the second-precision timestamps in status
    whole = round(seconds)
    if whole < 1:
        raise ValueError("interval must be at least one second")
    return IntervalSchedule(timedelta(seconds=whole), _aware(created, "created"))


def one_time(at: datetime, *, created: datetime) -> OneTimeSchedule:
    return OneTimeSchedule(_aware(at, "at"), _aware(created, "created"))


def parse_timestamp(text: str) -> datetime:
    """RFC 3339 as the apiserver writes it ('Z' or an offset)."""
    return _aware(datetime.fromisoformat(text.replace("Z", "+00:00")), text)


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_spec(schedule: Mapping[str, Any], created: datetime) -> Schedule:
    """The `spec.schedule` of a TaskSchedule (camelCase, as stored)."""
    if schedule.get("cron"):
        return cron(str(schedule["cron"]), str(schedule.get("timeZone") or "UTC"), created=created)
    if schedule.get("interval"):
        return interval(parse_duration(str(schedule["interval"])), created=created)
    if schedule.get("at"):
        at = schedule["at"]
        return one_time(
            at if isinstance(at, datetime) else parse_timestamp(str(at)), created=created
        )
    raise ValueError("set exactly one of schedule.cron, schedule.interval or schedule.at")


def next_after(schedule: Schedule, after: datetime) -> datetime | None:
    """The first fire time strictly after `after` (UTC), or None if there is none."""
    after = _aware(after, "after")
    if isinstance(schedule, CronSchedule):
        return _cron_next(schedule, after)
    if isinstance(schedule, IntervalSchedule):
        if after < schedule.created:
            return schedule.created + schedule.every
        steps = (after - schedule.created) // schedule.every + 1
        return schedule.created + steps * schedule.every
    return schedule.at if schedule.at > after else None


def _cron_next(schedule: CronSchedule, after: datetime) -> datetime | None:
    # croniter walks naive wall-clock times; zoneinfo maps each to an instant.
    # A candidate that maps to or before `after` (the second pass of a repeated
    # hour, or a gap time moved onto one already fired) is stepped over.
    start = after.astimezone(schedule.zone).replace(tzinfo=None, fold=0)
    try:
        walker = croniter(schedule.expr, start)
        for _ in range(_CRON_STEPS):
            wall: datetime = walker.get_next(datetime)
            instant = wall.replace(tzinfo=schedule.zone, fold=0).astimezone(UTC)
            if instant > after:
                return instant
    except CroniterBadDateError:  # an expression that never matches, e.g. 31 February
        return None
    return None


@dataclass(frozen=True)
class Due:
    """What one evaluation at `now` should do."""

    fire: datetime | None
    """The scheduled time to fire now, if any."""
    missed: tuple[datetime, ...]
    """Scheduled times that passed and will not fire (oldest first, the latest few)."""
    missed_count: int
    missed_more: bool
    """True when the outage was too long to count: missed_count is a lower bound."""
    next_time: datetime | None
    """The first scheduled time after now."""

    @property
    def handled(self) -> datetime | None:
        """The latest scheduled time this evaluation consumes (fired or missed)."""
        if self.fire is not None:
            return self.fire
        return self.missed[-1] if self.missed else None


def due(
    schedule: Schedule,
    last_scheduled: datetime | None,
    now: datetime,
    starting_deadline: float | None = None,
) -> Due:
    """Scheduled times in (last_scheduled, now]: the most recent fires if it is
    no older than `starting_deadline` seconds, every other one is missed.

    Without `last_scheduled`, cron and interval schedules count from their
    creation; a one-time schedule is due whenever its time has come."""
    now = _aware(now, "now")
    cursor = _aware(last_scheduled, "last_scheduled") if last_scheduled is not None else None
    if cursor is None and not isinstance(schedule, OneTimeSchedule):
        cursor = schedule.created
    recent, count, more = _scan(schedule, cursor, now)
    next_time = next_after(schedule, now)
    if not recent:
        return Due(None, (), 0, False, next_time)
    latest = recent[-1]
    late = (now - latest).total_seconds()
    if starting_deadline is not None and late > starting_deadline:
        return Due(None, tuple(recent)[-MISSED_KEPT:], count, more, next_time)
    earlier = tuple(recent)[:-1]
    return Due(latest, earlier[-MISSED_KEPT:], count - 1, more, next_time)


def _scan(
    schedule: Schedule, cursor: datetime | None, now: datetime
) -> tuple[deque[datetime], int, bool]:
    """The last few scheduled times in (cursor, now], how many there were, and
    whether the scan started after the cursor (so there may be more)."""
    if isinstance(schedule, OneTimeSchedule):
        hit = (cursor is None or schedule.at > cursor) and schedule.at <= now
        return (deque([schedule.at]) if hit else deque()), int(hit), False
    assert cursor is not None
    # exact for an ordinary outage: walk forward from the cursor
    recent: deque[datetime] = deque(maxlen=MISSED_KEPT + 1)
    count = 0
    t = next_after(schedule, cursor)
    while t is not None and t <= now and count < _SCAN_STEPS:
        recent.append(t)
        count += 1
        t = next_after(schedule, t)
    if t is None or t > now:
        return recent, count, False
    # a long one: look back from now in widening windows for the latest times
    window = _FIRST_WINDOW
    while True:
        start = max(cursor, now - window)
        recent.clear()
        found = 0
        t = next_after(schedule, start)
        while t is not None and t <= now:
            recent.append(t)
            found += 1
            t = next_after(schedule, t)
        if found or start == cursor:
            return recent, max(count, found), True
        window *= _WIDEN


def _shorten(base: str, suffix: str) -> str:
    # schedule names are DNS subdomains already; only their length needs care
    name = f"{base}-{suffix}"
    if len(name) <= NAME_MAX:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    room = NAME_MAX - len(suffix) - len(digest) - 2
    return f"{base[:room].rstrip('-.')}-{digest}-{suffix}"


def taskspec_name(schedule_name: str, scheduled: datetime) -> str:
    """`<schedule>-<unix seconds>`; a long schedule name is cut and a hash of it
    keeps names of different schedules apart."""
    seconds = int(_aware(scheduled, "scheduled").timestamp())
    return _shorten(schedule_name, str(seconds))


def trigger_name(schedule_name: str, token: str) -> str:
    """TaskSpec of a manual trigger: `<schedule>-manual-<hash of token>`, so a
    token handled twice (restart before status was written) creates one TaskSpec."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:10]
    return _shorten(schedule_name, f"manual-{digest}")


def label_value(schedule_name: str) -> str:
    """A schedule name as a label value (at most 63 characters)."""
    if len(schedule_name) <= NAME_MAX:
        return schedule_name
    digest = hashlib.sha256(schedule_name.encode()).hexdigest()[:8]
    return f"{schedule_name[: NAME_MAX - 9].rstrip('-.')}-{digest}"
